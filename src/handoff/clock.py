"""Where "now" comes from. The simulator swaps in a faster clock; everything else asks here."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


system_clock = SystemClock()
