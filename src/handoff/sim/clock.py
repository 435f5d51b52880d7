"""The simulator's clock: hours of retry schedules and a quarter of history in seconds.

`SimClock` implements `handoff.clock.Clock`, so the same object is handed to the hub
(`Hub.build(..., clock=clock)`) and to every look-alike and sender. Both sides then agree on
"now": signed timestamps (Standard Webhooks, HubSpot v3) verify, rate-limit windows and retry
schedules line up, and nothing depends on the wall clock.

Two modes, combinable:
- manual (speed 0): time moves only through `advance` / `advance_to`. The `Scheduler` jumps
  straight to the next due action, so a 24-hour retry schedule costs no waiting at all.
- flowing (speed > 0): simulated time also runs at `speed` x wall time, for a watchable demo.

Vendor timeouts are real seconds: `real_seconds` converts a simulated duration into the wall
time to wait (divided by the speed factor when one is set).
"""

from __future__ import annotations

import asyncio
import heapq
import inspect
import itertools
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

Action = Callable[[], Awaitable[None] | None]


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("SimClock needs timezone-aware datetimes")
    return moment.astimezone(UTC)


def _seconds(delta: timedelta | float) -> float:
    return delta.total_seconds() if isinstance(delta, timedelta) else float(delta)


class SimClock:
    """A thread-safe `Clock` that starts at `start` and moves when told (or at `speed`)."""

    def __init__(
        self,
        start: datetime,
        *,
        speed: float = 0.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if speed < 0:
            raise ValueError("speed must be >= 0")
        self._start = _utc(start)
        self._offset = 0.0  # simulated seconds added by advance()
        self._speed = speed
        self._monotonic = monotonic
        self._wall0 = monotonic()
        self._lock = threading.Lock()

    # --- Clock protocol ----------------------------------------------------------------------

    def now(self) -> datetime:
        return self._start + timedelta(seconds=self.elapsed())

    # --- the simulator's controls ------------------------------------------------------------

    @property
    def start(self) -> datetime:
        return self._start

    @property
    def speed(self) -> float:
        return self._speed

    def elapsed(self) -> float:
        """Simulated seconds since `start`."""
        with self._lock:
            return self._elapsed_locked()

    def _elapsed_locked(self) -> float:
        flowing = self._speed * (self._monotonic() - self._wall0) if self._speed else 0.0
        return self._offset + flowing

    def advance(self, delta: timedelta | float) -> datetime:
        """Move forward by `delta` (seconds or a timedelta); time never runs backwards."""
        seconds = _seconds(delta)
        if seconds < 0:
            raise ValueError("a SimClock never goes backwards")
        with self._lock:
            self._offset += seconds
            return self._start + timedelta(seconds=self._elapsed_locked())

    def advance_to(self, when: datetime) -> datetime:
        """Move forward to `when`; a moment already past is a no-op."""
        target = (_utc(when) - self._start).total_seconds()
        with self._lock:
            current = self._elapsed_locked()
            if target > current:
                self._offset += target - current
            return self._start + timedelta(seconds=self._elapsed_locked())

    def set_speed(self, speed: float) -> None:
        """Change the flow rate without a jump in simulated time."""
        if speed < 0:
            raise ValueError("speed must be >= 0")
        with self._lock:
            self._offset = self._elapsed_locked()
            self._wall0 = self._monotonic()
            self._speed = speed

    def real_seconds(self, simulated: timedelta | float) -> float:
        """Wall seconds that correspond to a simulated duration (vendor timeouts, waits)."""
        seconds = _seconds(simulated)
        return seconds / self._speed if self._speed else seconds

    async def sleep(self, delta: timedelta | float) -> None:
        """Let `delta` of simulated time pass: wait it out when flowing, jump when manual."""
        seconds = _seconds(delta)
        if seconds <= 0:
            return
        if self._speed:
            await asyncio.sleep(seconds / self._speed)
        else:
            self.advance(seconds)


@dataclass(order=True)
class _Item:
    due: datetime
    seq: int
    action: Action = field(compare=False)
    label: str = field(compare=False, default="")


class Scheduler:
    """A discrete-event queue under a SimClock: actions run in (due time, insertion) order.

    In manual mode the clock jumps to each due time, so simulated hours cost nothing. Actions
    due within `batch_window` simulated seconds of the earliest one run concurrently (up to
    `concurrency`), with the clock set to the earliest due time; everything else is sequential
    and therefore deterministic. An action may schedule further actions (retries).
    """

    def __init__(self, clock: SimClock, *, concurrency: int = 1, batch_window: float = 0.0):
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        self.clock = clock
        self.concurrency = concurrency
        self.batch_window = batch_window
        self._queue: list[_Item] = []
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._queue)

    def at(self, when: datetime, action: Action, label: str = "") -> None:
        heapq.heappush(self._queue, _Item(_utc(when), next(self._seq), action, label))

    def after(self, delay: timedelta | float, action: Action, label: str = "") -> None:
        self.at(self.clock.now() + timedelta(seconds=_seconds(delay)), action, label)

    def next_due(self) -> datetime | None:
        return self._queue[0].due if self._queue else None

    async def run(self, until: datetime | None = None) -> int:
        """Run actions until the queue is empty (or the next one is after `until`).

        Returns the number of actions run. With `until`, the clock ends at `until`."""
        done = 0
        while self._queue:
            first = self._queue[0].due
            if until is not None and first > until:
                break
            await self._wait_until(first)
            horizon = first + timedelta(seconds=self.batch_window)
            batch: list[_Item] = []
            while self._queue and self._queue[0].due <= horizon and len(batch) < self.concurrency:
                batch.append(heapq.heappop(self._queue))
            if len(batch) == 1:
                await _call(batch[0].action)
            else:
                await asyncio.gather(*(_call(item.action) for item in batch))
            done += len(batch)
        if until is not None:
            await self._wait_until(until)
        return done

    async def _wait_until(self, when: datetime) -> None:
        now = self.clock.now()
        if when <= now:
            return
        if self.clock.speed:
            await asyncio.sleep(self.clock.real_seconds(when - now))
        self.clock.advance_to(when)


async def _call(action: Action) -> None:
    result = action()
    if inspect.isawaitable(result):
        await result
