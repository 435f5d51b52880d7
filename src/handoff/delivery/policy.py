"""What to do after an attempt: delivered, try again when, or give up with a reason.

The rules are the Standard Webhooks ones (docs/delivery.md §Retries): only 2xx with the
vendor's confirmation counts; 3xx is a failure; 4xx is permanent except 408, 409, 425 and 429;
a timeout or 429 waits at least `throttle_floor_seconds`; `Retry-After` (seconds or an HTTP
date) is honoured; each delay gets ±`jitter` so a recovered destination is not hit by every
retry at once. A 429 does not use up an attempt: it is the destination pacing us.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum

RETRYABLE_4XX = frozenset({408, 409, 425, 429})


class Outcome(StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"  # a failure that counts as an attempt
    THROTTLED = "throttled"  # the destination asked us to slow down: no attempt used
    PERMANENT = "permanent"  # never going to work as is: dead-letter it at once
    TIMEOUT = "timeout"  # counts, and waits at least the throttle floor


@dataclass(frozen=True)
class Schedule:
    delays: tuple[float, ...]  # delays[n]: wait before attempt n+1 (delays[0] = first try)
    jitter: float = 0.2
    throttle_floor: float = 60.0

    @property
    def max_attempts(self) -> int:
        return len(self.delays)


def classify_status(status: int) -> Outcome:
    if 200 <= status < 300:
        return Outcome.DELIVERED
    if status == 429:
        return Outcome.THROTTLED
    if 400 <= status < 500 and status not in RETRYABLE_4XX:
        return Outcome.PERMANENT
    return Outcome.RETRY  # 3xx, 408/409/425, 5xx, anything odd


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After header: delay-seconds or an HTTP date."""
    if not value:
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def retry_after_from(headers: Mapping[str, str], now: datetime) -> float | None:
    for name in ("retry-after", "Retry-After"):
        if name in headers:
            return parse_retry_after(headers[name], now)
    return None


def jittered(seconds: float, jitter: float, rng: random.Random) -> float:
    return seconds * rng.uniform(1 - jitter, 1 + jitter) if seconds > 0 else 0.0


def next_delay(
    outcome: Outcome,
    attempts: int,
    schedule: Schedule,
    *,
    retry_after: float | None,
    rng: random.Random,
) -> float | None:
    """Seconds until the next try after a failed one, or None when the delivery is dead.

    `attempts` counts the failures that used an attempt, this one included."""
    if outcome is Outcome.PERMANENT:
        return None
    if outcome is Outcome.THROTTLED:
        return max(schedule.throttle_floor, retry_after or 0.0)
    if attempts >= schedule.max_attempts:
        return None
    delay = jittered(schedule.delays[attempts], schedule.jitter, rng)
    if outcome is Outcome.TIMEOUT:
        delay = max(delay, schedule.throttle_floor)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay
