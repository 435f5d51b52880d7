"""The append path in the pipeline stage, on both databases: events in time order append to the
worker's last derivation instead of re-deriving; the stored result equals a re-derivation from
the events; a rolled-back batch leaves the worker's cache ahead of the database, and the inputs
digest then sends the customer back to a full re-derivation."""

from __future__ import annotations

from datetime import timedelta

import pytest

from handoff.domain.events import CanonicalEvent
from handoff.domain.ledger import Program, fold, parse_program, rebuild
from handoff.pipeline.ledger_stage import LedgerStage
from handoff.pipeline.processor import StageBatch
from handoff.store import events as event_store
from handoff.store import ledger as ls
from handoff.store.db import Database
from tests.domain.ledger.factory import T0, order_event, refund_event
from tests.ledger.test_properties import CUSTOMER, END, _feed, _reset

PROGRAM = parse_program({"trigger": "paid"})


def _history(n: int) -> list[CanonicalEvent]:
    """n paid orders an hour apart; every third event also refunds part of the order before."""
    events: list[CanonicalEvent] = []
    for i in range(n):
        events.append(order_event("paid", f"A{i}", T0 + timedelta(hours=i), net=1_000 + 37 * i))
        if i % 3 == 2:
            when = T0 + timedelta(hours=i, minutes=30)
            events.append(refund_event(f"A{i - 1}", f"AR{i}", 400, when))
    return events


def _expected(program: Program, events: list[CanonicalEvent]) -> tuple[object, ...]:
    ledger = rebuild(program, events, now=END)
    p = fold(program, (*ledger.entries, *ledger.scheduled), as_of=END, flags=ledger.flags)
    ids = sorted(e.entry_id for e in (*ledger.entries, *ledger.scheduled))
    return (p.balance, p.pending, p.lifetime_spend, p.tier, p.vip, ids)


def _stored(database: Database) -> tuple[object, ...]:
    with database.read() as conn:
        p = ls.projection_of(conn, CUSTOMER)
        ids = sorted(e.entry_id for e in ls.entries_of(conn, CUSTOMER))
    assert p is not None
    return (p.balance, p.pending, p.lifetime_spend, p.tier, p.is_vip, ids)


def test_in_order_batches_append_and_equal_a_rederivation(database: Database) -> None:
    events = _history(12)
    receipt_id = _reset(database)
    stage = LedgerStage(program=PROGRAM)
    batches = [events[i : i + 3] for i in range(0, len(events), 3)]
    _feed(database, stage, receipt_id, batches, END)
    # the first batch derives the customer; every later one appends to it
    assert stage.tally == {"appended": len(batches) - 1, "rederived": 1}
    assert _stored(database) == _expected(PROGRAM, events)


def test_an_event_earlier_than_the_replay_rederives(database: Database) -> None:
    events = _history(6)
    receipt_id = _reset(database)
    stage = LedgerStage(program=PROGRAM)
    late = order_event("paid", "EARLY", T0 - timedelta(days=3), net=5_000)
    _feed(database, stage, receipt_id, [events, [late]], END)
    assert stage.tally == {"appended": 0, "rederived": 2}
    assert _stored(database) == _expected(PROGRAM, [*events, late])


def test_a_rolled_back_batch_does_not_leave_the_cache_trusted(database: Database) -> None:
    events = _history(9)
    first, lost, last = events[:4], events[4:8], events[8:]
    receipt_id = _reset(database)
    stage = LedgerStage(program=PROGRAM)
    _feed(database, stage, receipt_id, [first], END)
    with pytest.raises(RuntimeError), database.write() as conn:
        event_store.insert_events(conn, [(receipt_id, e) for e in lost], END)
        stage.handle(conn, StageBatch(lost, END, customers={e.event_id: CUSTOMER for e in lost}))
        raise RuntimeError("the transaction fails after the stage ran")
    assert _stored(database) == _expected(PROGRAM, first)
    # the worker's cache now holds `first + lost`; the database holds `first`. Only `last`
    # arrives again: appending it to the cache would keep `lost`, which was never committed.
    _feed(database, stage, receipt_id, [last], END)
    assert _stored(database) == _expected(PROGRAM, first + last)
    # first derives; lost appends (to what was committed); last finds the digest changed back
    assert stage.tally == {"appended": 1, "rederived": 2}
