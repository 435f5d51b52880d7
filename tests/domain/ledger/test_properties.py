"""Properties over random customers and programs: order independence, idempotency, rebuild equals
live, the floor holds, reversals never exceed what was earned."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from handoff.domain.events import CanonicalEvent
from handoff.domain.ledger import (
    Adjustment,
    Entry,
    EntryKind,
    Ledger,
    Program,
    advance,
    apply,
    apply_adjustment,
    empty,
    fold,
    parse_program,
    project,
    rebuild,
    statement,
)

from .factory import T0, order_event, refund_event, vip_flag

END = T0 + timedelta(days=900)
Item = CanonicalEvent | Adjustment


def hours(n: int) -> datetime:
    return T0 + timedelta(hours=n)


@st.composite
def programs(draw: st.DrawFn, **fixed: Any) -> Program:
    table: dict[str, Any] = {
        "trigger": draw(st.sampled_from(["paid", "fulfilled"])),
        "pending_days": draw(st.sampled_from([0, 0, 14, 30])),
        "partial_refunds": draw(st.sampled_from(["proportional", "all_or_nothing"])),
        "reversal_rate": draw(st.sampled_from(["original", "current"])),
        "negative_balance": draw(st.sampled_from(["floor", "allow"])),
        "expiry": draw(st.sampled_from(["never", "inactivity"])),
        "expiry_days": 120,
        "rounding": draw(st.sampled_from(["floor", "half_up", "ceil"])),
        "points_per_unit": draw(st.sampled_from(["1", "1.5", "0.1", "3"])),
        "tier_window": draw(st.sampled_from(["lifetime", "rolling_12_months", "calendar_year"])),
        "tier_downgrade": draw(st.sampled_from(["immediate", "never", "after_days"])),
        "tier_downgrade_days": 60,
        "include_tax": draw(st.booleans()),
        "rate_changes": draw(
            st.sampled_from([[], [{"effective_from": hours(24 * 100), "points_per_unit": 2}]])
        ),
    }
    table.update(fixed)
    return parse_program(table)


@st.composite
def customers(draw: st.DrawFn) -> list[Item]:
    """A few orders with their lives (some steps missing), refunds, flags and redemptions."""
    items: list[Item] = []
    for n in range(draw(st.integers(1, 4))):
        order = f"O{n}"
        net = draw(st.integers(0, 300_000))
        tax = draw(st.integers(0, 5_000))
        start = draw(st.integers(0, 24 * 500))
        for kind in ("placed", "paid", "fulfilled", "cancelled"):
            if draw(st.booleans()) if kind != "paid" else draw(st.integers(0, 4)) > 0:
                when = hours(start + draw(st.integers(0, 24 * 40)))
                items.append(order_event(kind, order, when, net=net, tax=tax))
        for r in range(draw(st.integers(0, 3))):
            amount = draw(st.integers(0, net + 2_000))
            when = hours(start + draw(st.integers(0, 24 * 90)))
            items.append(refund_event(order, f"{order}-R{r}", amount, when))
    for f in range(draw(st.integers(0, 2))):
        value = draw(st.sampled_from([True, False, None]))
        items.append(vip_flag(value, hours(draw(st.integers(0, 24 * 600))), version=str(f)))
    for r in range(draw(st.integers(0, 2))):
        when = hours(draw(st.integers(0, 24 * 600)))
        items.append(
            Adjustment(f"X{r}", EntryKind.REDEEM, -draw(st.integers(0, 3_000)), when, "reward")
        )
    return items


def split(items: list[Item]) -> tuple[list[CanonicalEvent], list[Adjustment]]:
    events = [i for i in items if isinstance(i, CanonicalEvent)]
    adjustments = [i for i in items if isinstance(i, Adjustment)]
    return events, adjustments


def live(
    program: Program, items: list[Item], arrivals: list[int]
) -> tuple[Ledger, dict[str, Entry]]:
    """Apply one item at a time at increasing 'now', as the pipeline would; mirror a store table."""
    ledger = empty(program, now=T0)
    table: dict[str, Entry] = {}
    for item, arrival in zip(items, sorted(arrivals), strict=True):
        now = hours(arrival)
        if isinstance(item, Adjustment):
            result = apply_adjustment(ledger, item, now=now)
        else:
            result = apply(ledger, item, now=now)
        for entry in result.retracted:
            del table[entry.entry_id]
        for entry in result.added:
            table[entry.entry_id] = entry
        ledger = result.ledger
    result = advance(ledger, now=END)
    for entry in result.retracted:
        del table[entry.entry_id]
    for entry in result.added:
        table[entry.entry_id] = entry
    return result.ledger, table


PROBES = [hours(24 * d) for d in (0, 30, 100, 200, 365, 500, 700, 900)]


@settings(max_examples=60, deadline=None)
@given(
    program=programs(),
    items=customers(),
    data=st.data(),
)
def test_any_arrival_order_gives_the_rebuilt_ledger(
    program: Program, items: list[Item], data: st.DataObject
) -> None:
    events, adjustments = split(items)
    rebuilt = rebuild(program, events, now=END, adjustments=adjustments)
    order = data.draw(st.permutations(items))
    arrivals = data.draw(
        st.lists(st.integers(0, 24 * 900), min_size=len(items), max_size=len(items))
    )
    ledger, table = live(program, order, arrivals)
    assert ledger.entries == rebuilt.entries
    assert ledger.held == rebuilt.held and ledger.flags == rebuilt.flags
    assert sorted(table.values(), key=lambda e: e.sort_key) == list(rebuilt.entries)
    for when in PROBES:
        assert project(ledger, as_of=when) == project(rebuilt, as_of=when)
        # Projections recomputed from the entries alone (what a store keeps) agree too.
        assert fold(
            program,
            table.values(),
            as_of=when,
            flags=rebuilt.flags,
            recorded=rebuilt.recorded,
            held=project(rebuilt, as_of=when).held,
        ) == project(rebuilt, as_of=when)


@settings(max_examples=40, deadline=None)
@given(program=programs(), items=customers(), data=st.data())
def test_applying_an_event_twice_changes_nothing(
    program: Program, items: list[Item], data: st.DataObject
) -> None:
    events, adjustments = split(items)
    ledger = rebuild(program, events, now=END, adjustments=adjustments)
    if events:
        again = apply(ledger, data.draw(st.sampled_from(events)), now=END)
        assert again.duplicate and again.ledger is ledger
        assert again.added == again.retracted == again.changes == ()
    doubled = rebuild(program, events + events, now=END, adjustments=adjustments * 2)
    assert doubled == ledger


@settings(max_examples=60, deadline=None)
@given(program=programs(negative_balance="floor"), items=customers())
def test_balance_never_below_zero_under_the_floor(program: Program, items: list[Item]) -> None:
    events, adjustments = split(items)
    ledger = rebuild(program, events, now=END, adjustments=adjustments)
    for line in statement(ledger.entries, as_of=END):
        assert line.balance >= 0, line.entry.rule
        assert line.pending >= 0, line.entry.rule
    for when in PROBES:
        state = project(ledger, as_of=when)
        assert state.balance >= 0 and state.pending >= 0


@settings(max_examples=60, deadline=None)
@given(
    program=programs(reversal_rate="original", negative_balance="allow"),
    items=customers(),
)
def test_reversals_never_exceed_what_was_earned(program: Program, items: list[Item]) -> None:
    events, adjustments = split(items)
    ledger = rebuild(program, events, now=END, adjustments=adjustments)
    earned: dict[str, int] = defaultdict(int)
    reversed_: dict[str, int] = defaultdict(int)
    spend: dict[str, int] = defaultdict(int)
    for entry in ledger.entries:
        assert entry.order_id is not None or entry.kind in (EntryKind.REDEEM, EntryKind.EXPIRE)
        if entry.kind is EntryKind.EARN:
            earned[entry.order_id or ""] += entry.points
        elif entry.kind is EntryKind.REVERSE:
            assert entry.points <= 0
            reversed_[entry.order_id or ""] += -entry.points
        if entry.kind is not EntryKind.VEST:
            spend[entry.order_id or ""] += entry.spend
    for order, points in reversed_.items():
        assert points <= earned[order]
    assert all(value >= 0 for value in spend.values())


@settings(max_examples=40, deadline=None)
@given(program=programs(), items=customers())
def test_statement_and_fold_agree(program: Program, items: list[Item]) -> None:
    events, adjustments = split(items)
    ledger = rebuild(program, events, now=END, adjustments=adjustments)
    lines = statement(ledger.entries, as_of=END)
    state = project(ledger, as_of=END)
    if lines:
        assert (lines[-1].balance, lines[-1].pending, lines[-1].lifetime_spend) == (
            state.balance,
            state.pending,
            state.lifetime_spend,
        )
    assert len({e.entry_id for e in ledger.entries}) == len(ledger.entries)
