"""Ledger lines and the other facts the engine derives, as plain frozen dataclasses.

An entry is one signed movement of points (and of spend, for tiers) with the rule that produced it
in words, so that a balance can always be explained line by line. Entries are derived, never
edited: their ids are deterministic, so deriving twice from the same events yields the same lines.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class EntryKind(StrEnum):
    EARN = "earn"
    VEST = "vest"
    REVERSE = "reverse"
    EXPIRE = "expire"
    ADJUST = "adjust"
    REDEEM = "redeem"


# Order of entries that share an instant: the engine processes them in this order, and folds,
# statements and reports sort by it too, so a running balance is the one the engine saw.
KIND_RANK: dict[EntryKind, int] = {
    EntryKind.EARN: 0,
    EntryKind.VEST: 1,
    EntryKind.REVERSE: 2,
    EntryKind.ADJUST: 3,
    EntryKind.REDEEM: 3,
    EntryKind.EXPIRE: 4,
}


@dataclass(frozen=True, slots=True)
class Entry:
    """One ledger line.

    `points` is the signed change of the bucket named by `pending` (pending or available), except
    for `vest`, which moves `points` from pending to available. `spend` is the signed change of
    the customer's spend in minor units, in the same bucket. `tier_points` is what the line adds
    to points-based tier progress (earned points net of reversals; never redemptions or expiry).
    `qualifies_at` is the instant whose tier window the line counts in: a refund counts against
    the period of the purchase it reverses, not the period of the refund.
    """

    entry_id: str
    kind: EntryKind
    points: int
    pending: bool
    spend: int
    tier_points: int
    effective_at: datetime
    qualifies_at: datetime
    rule: str
    event_id: str | None = None  # the canonical event (hub id) that produced the line
    order_id: str | None = None

    @property
    def sort_key(self) -> tuple[datetime, int, str]:
        return (self.effective_at, KIND_RANK[self.kind], self.entry_id)


@dataclass(frozen=True, slots=True)
class Adjustment:
    """A movement that no order explains: an operator's adjustment or a redemption.

    The hub cannot see redemptions in the purchase record; the caller decides which ones the
    expected ledger accepts (e.g. a redemption the loyalty platform recorded, or a correction).
    """

    adjustment_id: str
    kind: EntryKind
    points: int
    at: datetime
    reason: str
    counts_toward_tier: bool = False

    def __post_init__(self) -> None:
        if self.kind not in (EntryKind.ADJUST, EntryKind.REDEEM):
            raise ValueError(f"an adjustment is 'adjust' or 'redeem', not {self.kind!r}")
        if self.kind is EntryKind.REDEEM and self.points > 0:
            raise ValueError("a redemption takes points: its points must be zero or negative")
        if self.at.tzinfo is None or self.at.utcoffset() is None:
            raise ValueError("adjustment time must be timezone-aware")


@dataclass(frozen=True, slots=True)
class Held:
    """A refund or cancellation whose order has not (yet) earned: applied when it does."""

    event_id: str
    order_id: str
    type: str
    occurred_at: datetime
    reason: str


@dataclass(frozen=True, slots=True)
class Note:
    """An event that produced no line, and why (a duplicate trigger, a voided order…)."""

    event_id: str
    order_id: str | None
    text: str


@dataclass(frozen=True, slots=True)
class VipFlag:
    """A manual VIP flag set in the CRM. `value` None clears the override."""

    event_id: str
    source: str
    value: bool | None
    effective_at: datetime
    version: str | None

    @property
    def order_key(self) -> tuple[datetime, tuple[int, int, str], str]:
        """Latest wins: by time, then by version (numerically when both are numbers), then id."""
        version = self.version or ""
        numeric = (0, int(version), "") if version.isdigit() else (1, 0, version)
        return (self.effective_at, numeric, self.event_id)


@dataclass(frozen=True, slots=True)
class RecordedPoints:
    """What the loyalty platform itself says it recorded. Kept beside the entries, never mixed."""

    event_id: str
    source: str
    member_id: str
    delta: int
    balance: int | None
    pending: int | None
    reason: str | None
    order_ref: str | None
    occurred_at: datetime


@dataclass(frozen=True, slots=True)
class AttributeChange:
    """A tier or VIP value that changed: delivered state-based (latest value and version win)."""

    attribute: str
    value: str | bool | None
    previous: str | bool | None
    effective_at: datetime
    version: str
    reason: str
