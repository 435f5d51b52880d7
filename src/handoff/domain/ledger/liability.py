"""The loyalty liability report finance asks for (ASC 606 / IFRS 15 deferred revenue).

Outstanding points are a separate performance obligation: report how many there are, what they
are worth at the program's point value, how many are expected never to be redeemed (breakage) and
how old they are. Ages follow the points: a reversal takes back its own order's points, every
other debit (redemption, expiry, negative adjustment) consumes the oldest points first.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from handoff.domain.ledger.entries import Entry, EntryKind
from handoff.domain.ledger.program import Program
from handoff.domain.ledger.rules import divide, ratio
from handoff.domain.money import exponent

DEFAULT_AGE_BUCKETS = (90, 180, 365)


@dataclass(frozen=True, slots=True)
class AgeBucket:
    label: str
    min_days: int
    max_days: int | None  # exclusive; None = no upper bound
    points: int


@dataclass(frozen=True, slots=True)
class LiabilityReport:
    as_of: datetime
    currency: str
    customers: int
    outstanding_points: int  # Σ of positive available balances
    pending_points: int  # inside return windows: likely, not yet, an obligation
    negative_points: int  # Σ of negative balances (allowed by the program), as a positive number
    point_value: str  # major units per point, from the program
    outstanding_value: int  # minor units, rounded half up once over the total
    pending_value: int
    breakage_rate_bp: int  # basis points (1/100 of a percent)
    breakage_source: str  # "configured", "history" (expired ÷ (expired + redeemed)) or "none"
    breakage_points: int
    breakage_value: int
    net_liability: int  # outstanding_value - breakage_value
    redeemed_points: int  # history used for the estimate
    expired_points: int
    by_age: tuple[AgeBucket, ...]


@dataclass(slots=True)
class _Lot:
    born: datetime
    points: int
    order_id: str | None


def _age_lots(entries: Sequence[Entry]) -> tuple[list[_Lot], int]:
    """Available points as dated lots, and any debt beyond them (a negative balance)."""
    earned_at: dict[str, datetime] = {
        e.order_id: e.effective_at for e in entries if e.kind is EntryKind.EARN and e.order_id
    }
    lots: deque[_Lot] = deque()
    debt = 0
    for entry in sorted(entries, key=lambda e: e.sort_key):
        if entry.pending:
            continue
        if entry.points > 0:
            born = earned_at.get(entry.order_id or "", entry.effective_at)
            take = min(debt, entry.points)  # repay a negative balance first
            debt -= take
            if entry.points > take:
                lots.append(_Lot(born, entry.points - take, entry.order_id))
            continue
        owed = -entry.points
        if entry.kind is EntryKind.REVERSE and entry.order_id is not None:
            for lot in lots:
                if owed and lot.order_id == entry.order_id:
                    take = min(owed, lot.points)
                    lot.points -= take
                    owed -= take
        while owed and lots:
            lot = lots[0]
            take = min(owed, lot.points)
            lot.points -= take
            owed -= take
            if lot.points == 0:
                lots.popleft()
        debt += owed
    return [lot for lot in lots if lot.points > 0], debt


def _value(points: int, program: Program) -> int:
    numerator, denominator = ratio(program.point_value)
    return divide(points * numerator * 10 ** exponent(program.currency), denominator, "half_up")


def liability_report(
    program: Program,
    customers: Iterable[Sequence[Entry]],
    *,
    as_of: datetime,
    age_buckets: Sequence[int] = DEFAULT_AGE_BUCKETS,
) -> LiabilityReport:
    """Aggregate every customer's entries (as of `as_of`) into the finance report."""
    bounds = sorted(set(age_buckets))
    if any(b <= 0 for b in bounds):
        raise ValueError("age bucket bounds must be positive numbers of days")
    edges = [0, *bounds]
    ages = [0] * len(edges)
    count = outstanding = pending = negative = redeemed = expired = 0
    for entries in customers:
        count += 1
        lines = [e for e in entries if e.effective_at <= as_of]
        balance = sum(e.points for e in lines if not e.pending)
        pending += sum(
            -e.points if e.kind is EntryKind.VEST else e.points
            for e in lines
            if e.pending or e.kind is EntryKind.VEST
        )
        redeemed += -sum(e.points for e in lines if e.kind is EntryKind.REDEEM)
        expired += -sum(e.points for e in lines if e.kind is EntryKind.EXPIRE)
        if balance < 0:
            negative += -balance
            continue
        outstanding += balance
        lots, _ = _age_lots(lines)
        for lot in lots:
            days = (as_of - lot.born).days
            slot = max(i for i, edge in enumerate(edges) if days >= edge)
            ages[slot] += lot.points
    if program.breakage_rate is not None:
        rate_n, rate_d = ratio(program.breakage_rate)
        source = "configured"
    elif expired + redeemed > 0:
        rate_n, rate_d = expired, expired + redeemed
        source = "history"
    else:
        rate_n, rate_d = 0, 1
        source = "none"
    breakage_points = (outstanding * rate_n) // rate_d
    outstanding_value = _value(outstanding, program)
    breakage_value = _value(breakage_points, program)
    buckets = []
    for i, low in enumerate(edges):
        high = edges[i + 1] if i + 1 < len(edges) else None
        label = f"{low}-{high - 1} days" if high is not None else f"{low}+ days"
        buckets.append(AgeBucket(label, low, high, ages[i]))
    return LiabilityReport(
        as_of=as_of,
        currency=program.currency,
        customers=count,
        outstanding_points=outstanding,
        pending_points=pending,
        negative_points=negative,
        point_value=str(program.point_value),
        outstanding_value=outstanding_value,
        pending_value=_value(pending, program),
        breakage_rate_bp=(rate_n * 10000) // rate_d,
        breakage_source=source,
        breakage_points=breakage_points,
        breakage_value=breakage_value,
        net_liability=outstanding_value - breakage_value,
        redeemed_points=redeemed,
        expired_points=expired,
        by_age=tuple(buckets),
    )
