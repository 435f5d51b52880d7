"""Client-side rate limits that model each vendor's throttle, as pure functions over state.

The state is a small JSON document kept per destination in the database
(`delivery_destinations.limiter`), so every worker process draws on one budget. Models:

- leaky bucket (Shopify REST 40 leaking 2/s, Gorgias 40 per 20 s): each request adds 1;
- cost bucket (Shopify GraphQL: 2,000 points restoring 100/s by plan): each request takes its
  cost; the vendor's own `throttleStatus.currentlyAvailable` corrects our estimate;
- fixed windows (HubSpot 100/10 s, Zendesk per minute, Klaviyo 75/s and 700/min, LoyaltyLion
  20/s): windows aligned to multiples of their length; a request must fit every window.

A 429 from the vendor pauses the whole destination until its Retry-After (`pause`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

State = dict[str, Any]


@dataclass(frozen=True)
class Limit:
    model: str  # leaky_bucket | cost_bucket | fixed_windows | none
    capacity: float = 40.0
    rate: float = 2.0
    cost: float = 1.0
    windows: tuple[tuple[int, float], ...] = field(default_factory=tuple)


# The vendors' documented limits (vendors.md §2), at the plan most retailers start on.
VENDOR_LIMITS: dict[str, Limit] = {
    "shopify": Limit("cost_bucket", capacity=2000, rate=100, cost=10),
    "hubspot": Limit("fixed_windows", windows=((100, 10.0),)),
    "zendesk": Limit("fixed_windows", windows=((200, 60.0),)),
    "klaviyo": Limit("fixed_windows", windows=((75, 1.0), (700, 60.0))),
    "loyaltylion": Limit("fixed_windows", windows=((20, 1.0),)),
    "gorgias": Limit("leaky_bucket", capacity=40, rate=2),
    "webhook": Limit("none"),
}


def take(limit: Limit, state: State, now: float, amount: float = 1.0) -> float:
    """Take one request's worth from the budget: 0.0 when it may go now (and `state` is
    updated), else the seconds until it would fit (and `state` is unchanged)."""
    paused = float(state.get("paused_until", 0.0))
    if paused > now:
        return paused - now
    if limit.model in ("leaky_bucket", "cost_bucket"):
        return _bucket(limit, state, now, amount * limit.cost)
    if limit.model == "fixed_windows":
        return _windows(limit, state, now)
    return 0.0


def _bucket(limit: Limit, state: State, now: float, cost: float) -> float:
    level = float(state.get("level", 0.0))
    at = float(state.get("at", now))
    level = max(0.0, level - limit.rate * max(0.0, now - at))
    if level + cost > limit.capacity + 1e-9:
        return (level + cost - limit.capacity) / limit.rate
    state["level"], state["at"] = level + cost, now
    return 0.0


def _windows(limit: Limit, state: State, now: float) -> float:
    counts: dict[str, list[float]] = state.setdefault("windows", {})
    wait = 0.0
    current: dict[str, tuple[float, int]] = {}
    for max_count, length in limit.windows:
        key = f"{max_count}/{length}"
        start = math.floor(now / length) * length
        seen_start, seen = counts.get(key, [start, 0])
        used = int(seen) if seen_start == start else 0
        current[key] = (start, used)
        if used + 1 > max_count:
            wait = max(wait, start + length - now)
    if wait > 0:
        return wait
    for key, (start, used) in current.items():
        counts[key] = [start, used + 1]
    return 0.0


def observe_available(limit: Limit, state: State, now: float, available: float) -> None:
    """The vendor told us what is left (Shopify's throttleStatus): believe it."""
    if limit.model in ("leaky_bucket", "cost_bucket"):
        state["level"] = max(0.0, limit.capacity - available)
        state["at"] = now


def pause(state: State, until: float) -> None:
    state["paused_until"] = max(float(state.get("paused_until", 0.0)), until)
