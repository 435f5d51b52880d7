"""Projections folded from entries, as of any instant: balance, pending, spend, tier and VIP.

Everything here reads entries only (plus the CRM's manual flags and the platform's recorded log,
kept apart), so a store can recompute any customer's state from its rows, at any time, without
the events. Tier windows and downgrade holds are evaluated at the instant asked for.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from handoff.domain.ledger.entries import AttributeChange, Entry, EntryKind, RecordedPoints, VipFlag
from handoff.domain.ledger.program import Program
from handoff.domain.money import from_minor

if TYPE_CHECKING:
    from handoff.domain.ledger.engine import Ledger

TIER_ATTRIBUTE = "tier"
VIP_ATTRIBUTE = "is_vip"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Projection:
    """A customer's expected loyalty state at `as_of`."""

    as_of: datetime
    balance: int  # available points
    pending: int  # points inside the return window; they count for nothing yet
    lifetime_spend: int  # minor units, refunds deducted, pending orders included
    tier_spend: int  # vested spend inside the tier window
    tier_points: int  # vested points earned (net of reversals) inside the tier window
    tier: str | None
    tier_reason: str
    vip: bool
    vip_reason: str
    manual_vip: bool | None  # the CRM's latest manual flag, whatever the program does with it
    recorded_points: int  # Σ of the platform's own recorded deltas (its view, not ours)
    recorded_balance: int | None  # the balance the platform last reported
    held: int = 0  # refunds/cancellations waiting for their order


@dataclass(frozen=True, slots=True)
class StatementLine:
    entry: Entry
    balance: int
    pending: int
    lifetime_spend: int


# --- time windows -----------------------------------------------------------------------------


def _shift_years(at: datetime, years: int) -> datetime:
    try:
        return at.replace(year=at.year + years)
    except ValueError:  # 29 February
        return at.replace(year=at.year + years, day=28)


def _in_window(program: Program, qualifies_at: datetime, at: datetime) -> bool:
    if program.tier_window == "lifetime":
        return True
    if program.tier_window == "calendar_year":
        return qualifies_at.astimezone(UTC).year == at.astimezone(UTC).year
    return qualifies_at > _shift_years(at, -1)


def _leaves_window(program: Program, qualifies_at: datetime) -> datetime | None:
    """The instant a line stops counting in the tier window (None: never)."""
    if program.tier_window == "lifetime":
        return None
    q = qualifies_at.astimezone(UTC)
    if program.tier_window == "calendar_year":
        return datetime(q.year + 1, 1, 1, tzinfo=UTC)
    if q.month == 2 and q.day == 29:
        return datetime(q.year + 1, 3, 1, tzinfo=UTC)
    return _shift_years(q, 1)


# --- folding ----------------------------------------------------------------------------------


def _counts_for_tier(entry: Entry) -> bool:
    return not entry.pending and entry.kind not in (EntryKind.EXPIRE, EntryKind.REDEEM)


def _tier_value(program: Program, entries: Sequence[Entry], at: datetime) -> tuple[int, int]:
    spend = points = 0
    for entry in entries:
        if entry.effective_at > at or not _counts_for_tier(entry):
            continue
        if _in_window(program, entry.qualifies_at, at):
            spend += entry.spend
            points += entry.tier_points
    return spend, points


def _tier_index(program: Program, spend: int, points: int) -> int:
    value = spend if program.tier_basis == "spend" else points
    index = -1
    for position, (_, threshold) in enumerate(program.tier_thresholds()):
        if value >= threshold:
            index = position
    return index


def _tier(
    program: Program, entries: Sequence[Entry], at: datetime, spend: int, points: int
) -> tuple[str | None, str]:
    thresholds = program.tier_thresholds()
    if not thresholds:
        return None, "the program has no tiers"
    unit = "spend" if program.tier_basis == "spend" else "points"
    value = spend if program.tier_basis == "spend" else points
    shown = from_minor(value, program.currency) if unit == "spend" else str(value)
    window = program.tier_window.replace("_", " ")
    now_index = _tier_index(program, spend, points)
    index = now_index
    held_text = ""
    if program.tier_downgrade != "immediate":
        start = None
        if program.tier_downgrade == "after_days":
            start = at - timedelta(days=program.tier_downgrade_days)
        moments = {at} if start is None else {at, start}
        moments.update(
            e.effective_at
            for e in entries
            if e.effective_at <= at and (start is None or e.effective_at > start)
        )
        for moment in moments:
            index = max(index, _tier_index(program, *_tier_value(program, entries, moment)))
        if index > now_index:
            kept = (
                "tiers are never downgraded"
                if start is None
                else f"a tier is kept {program.tier_downgrade_days} days after it last qualified"
            )
            held_text = f"; {thresholds[index][0]} kept: {kept}"
    if index < 0:
        first_name, first_threshold = thresholds[0]
        needed = (
            from_minor(first_threshold, program.currency) if unit == "spend" else first_threshold
        )
        return None, f"{unit} {shown} ({window}) is below {first_name} ({needed})"
    name = thresholds[index][0]
    return name, f"{unit} {shown} ({window}){held_text}"


def fold(
    program: Program,
    entries: Iterable[Entry],
    *,
    as_of: datetime,
    flags: Iterable[VipFlag] = (),
    recorded: Iterable[RecordedPoints] = (),
    held: int = 0,
) -> Projection:
    """Recompute a customer's state as of `as_of` from entries alone."""
    lines = sorted((e for e in entries if e.effective_at <= as_of), key=lambda e: e.sort_key)
    balance = pending = pending_spend = vested_spend = 0
    for entry in lines:
        if entry.kind is EntryKind.VEST:
            pending -= entry.points
            pending_spend -= entry.spend
            balance += entry.points
            vested_spend += entry.spend
        elif entry.pending:
            pending += entry.points
            pending_spend += entry.spend
        else:
            balance += entry.points
            vested_spend += entry.spend
    tier_spend, tier_points = _tier_value(program, lines, as_of)
    tier, tier_reason = _tier(program, lines, as_of, tier_spend, tier_points)
    manual = _latest_flag(flags, as_of)
    vip, vip_reason = _vip(program, tier, tier_spend, manual)
    seen = [r for r in recorded if r.occurred_at <= as_of]
    reported = [r for r in seen if r.balance is not None]
    last = max(reported, key=lambda r: (r.occurred_at, r.event_id)) if reported else None
    return Projection(
        as_of=as_of,
        balance=balance,
        pending=pending,
        lifetime_spend=vested_spend + pending_spend,
        tier_spend=tier_spend,
        tier_points=tier_points,
        tier=tier,
        tier_reason=tier_reason,
        vip=vip,
        vip_reason=vip_reason,
        manual_vip=None if manual is None else manual.value,
        recorded_points=sum(r.delta for r in seen),
        recorded_balance=None if last is None else last.balance,
        held=held,
    )


def _latest_flag(flags: Iterable[VipFlag], as_of: datetime) -> VipFlag | None:
    known = [f for f in flags if f.effective_at <= as_of]
    return max(known, key=lambda f: f.order_key) if known else None


def _vip(
    program: Program, tier: str | None, tier_spend: int, manual: VipFlag | None
) -> tuple[bool, str]:
    if program.vip_manual_override and manual is not None and manual.value is not None:
        when = manual.effective_at.strftime("%Y-%m-%d %H:%M:%SZ")
        return manual.value, f"manual flag {manual.value} from {manual.source} at {when} overrides"
    if tier is not None and tier in program.vip_tiers:
        return True, f"tier {tier} is a VIP tier"
    threshold = program.vip_min_spend_minor()
    if threshold is not None and tier_spend >= threshold:
        spent = from_minor(tier_spend, program.currency)
        return True, f"spend {spent} reaches vip_min_spend {program.vip_min_spend}"
    reasons = [f"tier {tier} is not a VIP tier" if tier else "no tier"]
    if threshold is not None:
        reasons.append(f"spend below vip_min_spend {program.vip_min_spend}")
    return False, "; ".join(reasons)


def project(ledger: Ledger, *, as_of: datetime) -> Projection:
    """A ledger's state at any instant; beyond its horizon, scheduled vesting/expiry is counted."""
    lines = (*ledger.entries, *(e for e in ledger.scheduled if e.effective_at <= as_of))
    return fold(
        ledger.program,
        lines,
        as_of=as_of,
        flags=ledger.flags,
        recorded=ledger.recorded,
        held=sum(1 for h in ledger.held if h.occurred_at <= as_of),
    )


def statement(entries: Iterable[Entry], *, as_of: datetime) -> tuple[StatementLine, ...]:
    """Every line up to `as_of` with the running balance, pending points and spend after it."""
    balance = pending = spend = 0
    lines: list[StatementLine] = []
    for entry in sorted((e for e in entries if e.effective_at <= as_of), key=lambda e: e.sort_key):
        if entry.kind is EntryKind.VEST:
            balance += entry.points
            pending -= entry.points
        elif entry.pending:
            pending += entry.points
            spend += entry.spend
        else:
            balance += entry.points
            spend += entry.spend
        lines.append(StatementLine(entry, balance, pending, spend))
    return tuple(lines)


def format_statement(lines: Sequence[StatementLine], currency: str) -> str:
    """A plain-text statement: one row per line, the rule that produced it on the right."""
    rows = ["when                  kind      points  pending  balance  spend       rule"]
    for line in lines:
        e = line.entry
        rows.append(
            f"{e.effective_at.strftime('%Y-%m-%d %H:%M:%S')}   {e.kind.value:<8} "
            f"{e.points:>7}{'p' if e.pending else ' '} {line.pending:>7}  {line.balance:>7}  "
            f"{from_minor(line.lifetime_spend, currency):>10}  {e.rule}"
        )
    return "\n".join(rows)


# --- attribute changes and wake-ups -----------------------------------------------------------


def version_of(at: datetime) -> str:
    """A state version for delivery: microseconds since the epoch (compare as integers)."""
    return str((at - _EPOCH) // timedelta(microseconds=1))


def attribute_changes(before: Projection | None, after: Projection) -> tuple[AttributeChange, ...]:
    """Tier and VIP values that differ between two projections (all of them if before is None)."""
    changes: list[AttributeChange] = []
    version = version_of(after.as_of)
    if before is None or before.tier != after.tier:
        changes.append(
            AttributeChange(
                attribute=TIER_ATTRIBUTE,
                value=after.tier,
                previous=None if before is None else before.tier,
                effective_at=after.as_of,
                version=version,
                reason=after.tier_reason,
            )
        )
    if before is None or before.vip != after.vip:
        changes.append(
            AttributeChange(
                attribute=VIP_ATTRIBUTE,
                value=after.vip,
                previous=None if before is None else before.vip,
                effective_at=after.as_of,
                version=version,
                reason=after.vip_reason,
            )
        )
    return tuple(changes)


def _moments(ledger: Ledger) -> set[datetime]:
    """Every instant at which the state can change: lines, window exits, holds ending, flags."""
    program = ledger.program
    moments: set[datetime] = set()
    for entry in (*ledger.entries, *ledger.scheduled):
        moments.add(entry.effective_at)
        if not _counts_for_tier(entry):
            continue
        leaves = _leaves_window(program, entry.qualifies_at)
        if leaves is not None:
            moments.add(leaves)
        if program.tier_downgrade == "after_days":
            moments.add(entry.effective_at + timedelta(days=program.tier_downgrade_days))
    moments.update(flag.effective_at for flag in ledger.flags)
    return moments


def next_change_at(ledger: Ledger, *, after: datetime) -> datetime | None:
    """The next instant after `after` when this customer's state can change without a new event.

    A scheduler wakes the customer then (`advance`): vesting, expiry, a purchase leaving a rolling
    window, a new calendar year, a downgrade hold running out, a future-dated flag or entry.
    """
    later = [moment for moment in _moments(ledger) if moment > after]
    return min(later) if later else None


def attribute_history(ledger: Ledger, *, until: datetime) -> tuple[AttributeChange, ...]:
    """Every tier and VIP change up to `until`, at the instant it happened (for audits, recon)."""
    history: list[AttributeChange] = []
    previous: Projection | None = None
    for moment in sorted(m for m in _moments(ledger) if m <= until):
        current = project(ledger, as_of=moment)
        history.extend(attribute_changes(previous, current))
        previous = current
    return tuple(history)
