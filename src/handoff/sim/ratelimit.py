"""Vendor throttle models as pure objects under a clock (vendors.md §2).

Each limiter reads time only from the `Clock` it was given, so a `SimClock` makes it exactly
reproducible and property-testable: advance the clock, ask, check the invariant. No I/O, no
threads of its own; a lock makes one instance safe to share between server threads.

- `LeakyBucket`: Shopify REST (40 requests, leaking 2/s) and Gorgias. A request adds 1 (or n);
  the bucket drains continuously; over capacity → 429 with Retry-After.
- `CostBucket`: Shopify Admin GraphQL. The bucket holds points (maximumAvailable), restores
  `restore_rate` per second; a query is admitted if its *requested* cost fits, then the
  difference between requested and actual cost is refunded. Throttled → `errors[Throttled]`.
- `FixedWindow`: HubSpot (100 per 10 s), Zendesk (per minute), LoyaltyLion (20 per s);
  windows are aligned to multiples of their length since the epoch. `MultiWindow` stacks them
  (Klaviyo: 75 per second burst and 750 per minute steady; a request must fit every window).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from datetime import UTC, datetime

from handoff.clock import Clock


class _Elapsed:
    """Seconds since a base instant, exact to the microsecond (epoch floats are not)."""

    def __init__(self, clock: Clock, align: float | None = None) -> None:
        self.clock = clock
        base = clock.now()
        if align:
            aligned = math.floor(base.timestamp() / align) * align
            base = datetime.fromtimestamp(aligned, UTC)
        self.base = base

    def __call__(self) -> float:
        return (self.clock.now() - self.base).total_seconds()


def _up(seconds: float) -> float:
    """Round a wait up to whole microseconds: clocks (datetime) cannot express less."""
    return math.ceil(seconds * 1_000_000 - 1e-6) / 1_000_000


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer to one request: admitted or not, what is left, and when to come back."""

    allowed: bool
    limit: float
    remaining: float
    retry_after: float  # seconds until this request would fit; 0 when allowed
    reset_after: float  # seconds until the limiter is fully replenished / the window rolls

    @property
    def retry_after_header(self) -> str:
        """Retry-After as vendors send it: whole seconds, rounded up, at least 1."""
        return str(max(1, math.ceil(self.retry_after)))


class LeakyBucket:
    """Capacity `capacity`, draining `leak_rate` units per second."""

    def __init__(self, clock: Clock, *, capacity: float, leak_rate: float) -> None:
        if capacity <= 0 or leak_rate <= 0:
            raise ValueError("capacity and leak_rate must be positive")
        self.clock = clock
        self.capacity = capacity
        self.leak_rate = leak_rate
        self._level = 0.0
        self._t = _Elapsed(clock)
        self._at = 0.0
        self._lock = threading.Lock()

    def _drain(self) -> float:
        now = self._t()
        if now > self._at:
            self._level = max(0.0, self._level - (now - self._at) * self.leak_rate)
            self._at = now
        return self._level

    @property
    def level(self) -> float:
        with self._lock:
            return self._drain()

    def acquire(self, amount: float = 1.0) -> Decision:
        with self._lock:
            level = self._drain()
            if amount > self.capacity:
                return Decision(False, self.capacity, self.capacity - level, math.inf, 0.0)
            if level + amount <= self.capacity + 1e-6:
                self._level = min(self.capacity, level + amount)
                return Decision(
                    True,
                    self.capacity,
                    self.capacity - self._level,
                    0.0,
                    self._level / self.leak_rate,
                )
            wait = (level + amount - self.capacity) / self.leak_rate
            return Decision(
                False, self.capacity, self.capacity - level, wait, level / self.leak_rate
            )


@dataclass(frozen=True, slots=True)
class CostDecision:
    """Shopify's `throttleStatus` plus whether the query ran."""

    allowed: bool
    requested: int
    maximum_available: float
    currently_available: float
    restore_rate: float
    retry_after: float

    def throttle_status(self) -> dict[str, float]:
        return {
            "maximumAvailable": self.maximum_available,
            "currentlyAvailable": math.floor(self.currently_available),
            "restoreRate": self.restore_rate,
        }


class CostBucket:
    """Shopify's calculated-query-cost bucket: `maximum` points restoring `restore_rate`/s."""

    def __init__(self, clock: Clock, *, maximum: float = 2000.0, restore_rate: float = 100.0):
        if maximum <= 0 or restore_rate <= 0:
            raise ValueError("maximum and restore_rate must be positive")
        self.clock = clock
        self.maximum = maximum
        self.restore_rate = restore_rate
        self._available = maximum
        self._t = _Elapsed(clock)
        self._at = 0.0
        self._lock = threading.Lock()

    def _restore(self) -> float:
        now = self._t()
        if now > self._at:
            self._available = min(
                self.maximum, self._available + (now - self._at) * self.restore_rate
            )
            self._at = now
        return self._available

    @property
    def available(self) -> float:
        with self._lock:
            return self._restore()

    def spend(self, requested: int) -> CostDecision:
        """Admit a query whose requested cost fits the points available, and charge it."""
        with self._lock:
            available = self._restore()
            if requested <= available + 1e-6:
                self._available = max(0.0, available - requested)
                return CostDecision(
                    True, requested, self.maximum, self._available, self.restore_rate, 0.0
                )
            wait = (
                math.inf
                if requested > self.maximum
                else _up((requested - available) / self.restore_rate)
            )
            return CostDecision(False, requested, self.maximum, available, self.restore_rate, wait)

    def refund(self, points: float) -> float:
        """Give back requested-minus-actual cost after a query ran; returns points available."""
        with self._lock:
            self._available = min(self.maximum, self._restore() + max(0.0, points))
            return self._available


class FixedWindow:
    """At most `limit` requests per `window` seconds, windows aligned to the epoch."""

    def __init__(self, clock: Clock, *, limit: int, window: float, name: str = "") -> None:
        if limit <= 0 or window <= 0:
            raise ValueError("limit and window must be positive")
        self.clock = clock
        self.limit = limit
        self.window = window
        self.name = name
        self._window_start = -math.inf
        self._count = 0
        self._t = _Elapsed(clock, align=window)
        self._lock = threading.Lock()

    def _roll(self) -> float:
        now = self._t()
        start = math.floor(now / self.window) * self.window
        if start != self._window_start:
            self._window_start = start
            self._count = 0
        return now

    def peek(self) -> Decision:
        with self._lock:
            return self._decision(self._roll(), allowed=self._count < self.limit)

    def _decision(self, now: float, *, allowed: bool) -> Decision:
        reset = self._window_start + self.window - now
        return Decision(
            allowed,
            self.limit,
            max(0, self.limit - self._count),
            0.0 if allowed else reset,
            reset,
        )

    def acquire(self) -> Decision:
        with self._lock:
            now = self._roll()
            if self._count < self.limit:
                self._count += 1
                return self._decision(now, allowed=True)
            return self._decision(now, allowed=False)

    def _commit(self) -> None:
        with self._lock:
            self._roll()
            self._count += 1


class MultiWindow:
    """Several fixed windows at once (burst and steady); a request must fit all of them."""

    def __init__(self, windows: list[FixedWindow]) -> None:
        if not windows:
            raise ValueError("at least one window")
        self.windows = windows
        self._lock = threading.Lock()

    def acquire(self) -> Decision:
        with self._lock:
            looks = [w.peek() for w in self.windows]
            refused = [d for d in looks if not d.allowed]
            if refused:
                return max(refused, key=lambda d: d.retry_after)
            for w in self.windows:
                w._commit()
            tightest = min((w.peek() for w in self.windows), key=lambda d: d.remaining / d.limit)
            return Decision(True, tightest.limit, tightest.remaining, 0.0, tightest.reset_after)
