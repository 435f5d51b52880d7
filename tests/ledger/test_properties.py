"""Properties of the stored ledger, through LedgerStage on both databases: any arrival order,
any batching and any duplication of a customer's events gives the projection the pure engine
computes; reversals never exceed what was earned; the set-based rebuild equals live."""

from __future__ import annotations

import hashlib
import uuid
from collections import defaultdict
from datetime import timedelta
from itertools import pairwise
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete

from handoff.domain.events import CanonicalEvent, EventType
from handoff.domain.ledger import EntryKind, Program, fold, rebuild
from handoff.pipeline.ledger_stage import LedgerStage
from handoff.pipeline.processor import StageBatch
from handoff.store import events as event_store
from handoff.store import ledger as ls
from handoff.store import ledger_rebuild as rb
from handoff.store import receipts as rs
from handoff.store.db import Database
from handoff.store.ledger_tables import metadata
from handoff.store.tables import events as events_table
from tests.domain.ledger.factory import T0
from tests.domain.ledger.test_properties import customers, programs, split

END = T0 + timedelta(days=900)
CUSTOMER = 41
LEDGER_TABLES = [t for name, t in metadata.tables.items() if name.startswith("ledger_")]
SETTINGS = settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _stored(items: list[Any]) -> list[CanonicalEvent]:
    """The factory's events with ids short enough for the events table (hub ids are 40)."""
    events, _ = split(items)
    return [
        e.model_copy(update={"event_id": hashlib.sha256(e.event_id.encode()).hexdigest()[:40]})
        for e in events
    ]


def _reset(database: Database) -> int:
    """Empty ledger and events; one receipt for the events to hang on. Returns its id."""
    ls.forget_events()  # examples reuse event ids for different facts
    with database.write() as conn:
        for table in (*LEDGER_TABLES, events_table):
            conn.execute(delete(table))
        [result] = rs.insert_batch(
            conn,
            [rs.NewReceipt("erp", "standard", f"p-{uuid.uuid4()}", T0, {}, b"{}", "0" * 64)],
            T0,
        )
        assert result.receipt_id is not None
        return result.receipt_id


def _feed(
    database: Database,
    stage: LedgerStage,
    receipt_id: int,
    batches: list[list[CanonicalEvent]],
    now: Any,
) -> None:
    """As the processor does: store the events, pass the new ones (here also repeats) on."""
    for batch in batches:
        with database.write() as conn:
            event_store.insert_events(conn, [(receipt_id, e) for e in batch], now)
            step = StageBatch(batch, now, customers={e.event_id: CUSTOMER for e in batch})
            stage.handle(conn, step)


@st.composite
def arrivals(draw: st.DrawFn, events: list[CanonicalEvent]) -> list[list[CanonicalEvent]]:
    """A permutation with some events repeated, cut into batches."""
    order = list(draw(st.permutations(events)))
    if events:
        order += draw(st.lists(st.sampled_from(events), max_size=3))
        order = list(draw(st.permutations(order)))
    cuts = sorted(draw(st.lists(st.integers(0, len(order)), max_size=3)))
    bounds = [0, *cuts, len(order)]
    return [order[a:b] for a, b in pairwise(bounds) if b > a]


@SETTINGS
@given(program=programs(tier_downgrade="immediate"), items=customers(), data=st.data())
def test_any_arrival_gives_the_engine_projection_and_rebuild_equals_live(
    database: Database, program: Program, items: list[Any], data: st.DataObject
) -> None:
    events = _stored(items)
    assume(any(e.type is not EventType.POINTS_RECORDED for e in events))
    receipt_id = _reset(database)
    stage = LedgerStage(program=program)
    _feed(database, stage, receipt_id, data.draw(arrivals(events)), END)
    expected_ledger = rebuild(program, events, now=END)
    expected = fold(
        program,
        (*expected_ledger.entries, *expected_ledger.scheduled),
        as_of=END,
        flags=expected_ledger.flags,
        held=len(expected_ledger.held),
    )
    with database.read() as conn:
        stored = ls.projection_of(conn, CUSTOMER)
        entries = ls.entries_of(conn, CUSTOMER)
        rows = rb.projection_rows(conn, program, END)
    assert stored is not None
    got = (stored.balance, stored.pending, stored.lifetime_spend, stored.tier, stored.is_vip)
    assert got == (
        expected.balance,
        expected.pending,
        expected.lifetime_spend,
        expected.tier,
        expected.vip,
    )
    assert (stored.tier_spend, stored.manual_vip, stored.held) == (
        expected.tier_spend,
        expected.manual_vip,
        expected.held,
    )
    assert {e.entry_id for e in entries} == {
        e.entry_id for e in (*expected_ledger.entries, *expected_ledger.scheduled)
    }
    # the set-based rebuild (one SQL aggregate) gives the same numbers as the live stage; a
    # customer whose events earned nothing is not listed and keeps the empty state
    empty = {"balance": 0, "pending": 0, "lifetime_spend": 0, "tier_spend": 0, "held": 0}
    nothing = fold(program, (), as_of=END)
    [row] = rows or [empty | {"tier": nothing.tier, "is_vip": nothing.vip}]
    assert (
        row["balance"],
        row["pending"],
        row["lifetime_spend"],
        row["tier_spend"],
        row["tier"],
        bool(row["is_vip"]),
        row["held"],
    ) == (
        stored.balance,
        stored.pending,
        stored.lifetime_spend,
        stored.tier_spend,
        stored.tier,
        stored.is_vip,
        stored.held,
    )


@SETTINGS
@given(
    program=programs(reversal_rate="original", negative_balance="allow"),
    items=customers(),
    data=st.data(),
)
def test_stored_reversals_never_exceed_what_was_earned(
    database: Database, program: Program, items: list[Any], data: st.DataObject
) -> None:
    events = _stored(items)
    receipt_id = _reset(database)
    _feed(database, LedgerStage(program=program), receipt_id, data.draw(arrivals(events)), END)
    with database.read() as conn:
        entries = ls.entries_of(conn, CUSTOMER)
    earned: dict[str, int] = defaultdict(int)
    taken: dict[str, int] = defaultdict(int)
    spent: dict[str, int] = defaultdict(int)
    refunded: dict[str, int] = defaultdict(int)
    for entry in entries:
        key = entry.order_id or ""
        if entry.kind is EntryKind.EARN:
            earned[key] += entry.points
            spent[key] += entry.spend
        elif entry.kind is EntryKind.REVERSE:
            taken[key] -= entry.points
            refunded[key] -= entry.spend
    for order_id in taken:
        assert 0 <= taken[order_id] <= earned[order_id], order_id
        assert 0 <= refunded[order_id] <= spent[order_id], order_id
