"""The append path (`extend`) against a full re-derivation (`rebuild`): whatever the program,
the events and the order and batching they arrive in, appending where possible and rebuilding
where `extend` declines gives, after every batch, exactly the ledger a rebuild gives."""

from __future__ import annotations

from datetime import timedelta
from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from handoff.domain.events import CanonicalEvent
from handoff.domain.ledger import Ledger, Program, extend, parse_program, rebuild
from tests.domain.ledger.factory import T0, order_event, refund_event
from tests.domain.ledger.test_properties import Item, customers, programs, split

END = T0 + timedelta(days=900)


def _same(got: Ledger, want: Ledger) -> None:
    assert got == want  # every field: events, entries, scheduled, held, notes, flags, recorded
    assert got.cursor is not None


@st.composite
def batches(draw: st.DrawFn, items: list[CanonicalEvent]) -> list[list[CanonicalEvent]]:
    """An arrival order (often close to time order, sometimes shuffled) cut into batches."""
    if draw(st.booleans()):
        order = sorted(items, key=lambda e: (e.occurred_at, e.event_id))
        swaps = draw(st.lists(st.integers(0, max(len(order) - 2, 0)), max_size=2))
        for i in swaps:
            if i + 1 < len(order):
                order[i], order[i + 1] = order[i + 1], order[i]
    else:
        order = list(draw(st.permutations(items)))
    cuts = sorted(draw(st.lists(st.integers(0, len(order)), max_size=4)))
    return [order[a:b] for a, b in pairwise([0, *cuts, len(order)]) if b > a]


@settings(max_examples=300, deadline=None)
@given(program=programs(), items=customers(), data=st.data())
def test_append_equals_a_full_rederivation(
    program: Program, items: list[Item], data: st.DataObject
) -> None:
    events, adjustments = split(items)
    arrivals = data.draw(batches(events))
    seen: list[CanonicalEvent] = []
    now = T0
    ledger = rebuild(program, (), now=now, adjustments=adjustments)
    for step, batch in enumerate(arrivals, start=1):
        seen += batch
        now = T0 + timedelta(days=step * 37)
        want = rebuild(program, seen, now=now, adjustments=adjustments)
        appended = extend(ledger, seen, now=now)
        if appended is not None:
            _same(appended, want)
            # the old ledger was not changed by appending to it: appending again gives the same
            twice = extend(ledger, seen, now=now)
            assert twice is not None
            _same(twice, want)
        ledger = appended or want
        # a repeat of the same events is a no-op append
        again = extend(ledger, seen, now=now)
        assert again is not None
        _same(again, want)
    _same(ledger, rebuild(program, events, now=now, adjustments=adjustments))


def _paid(n: int, hours: int, net: int) -> CanonicalEvent:
    return order_event("paid", f"O{n}", T0 + timedelta(hours=hours), net=net)


@given(
    pending_days=st.sampled_from([0, 14]),
    expiry=st.sampled_from(["never", "inactivity"]),
    nets=st.lists(st.integers(100, 90_000), min_size=1, max_size=12),
)
@settings(max_examples=60, deadline=None)
def test_events_in_time_order_always_take_the_append_path(
    pending_days: int, expiry: str, nets: list[int]
) -> None:
    """Paid orders, each followed by a partial refund of the previous one, in time order: every
    event appends (none falls back), and the result equals the rebuild."""
    program = parse_program(
        {"trigger": "paid", "pending_days": pending_days, "expiry": expiry, "expiry_days": 120}
    )
    ledger = rebuild(program, (), now=T0)
    seen: list[CanonicalEvent] = []
    for n, net in enumerate(nets):
        seen.append(_paid(n, 100 * n, net))
        if n:
            when = T0 + timedelta(hours=100 * n + 1)
            seen.append(refund_event(f"O{n - 1}", f"R{n}", net // 3, when))
        appended = extend(ledger, seen, now=END)
        assert appended is not None, f"event {n} fell back to a rebuild"
        _same(appended, rebuild(program, seen, now=END))
        ledger = appended


def test_out_of_order_and_held_events_fall_back() -> None:
    program = parse_program({"trigger": "paid"})
    first = _paid(1, 100, 5_000)
    ledger = rebuild(program, [first], now=END)
    # an order paid before the last event replayed: earlier in time, so not appended
    assert extend(ledger, [first, _paid(2, 50, 1_000)], now=END) is None
    # a refund of an order not yet paid is held: that needs history
    refund = refund_event("O3", "R3", 500, T0 + timedelta(hours=200))
    assert extend(ledger, [first, refund], now=END) is None
    # an event the ledger knows is missing from the set: not an append
    assert extend(ledger, [_paid(4, 300, 100)], now=END) is None
    # a later order appends
    later = extend(ledger, [first, _paid(5, 300, 100)], now=END)
    assert later is not None and [e.points for e in later.entries] == [50, 1]
