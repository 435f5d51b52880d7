"""The processor on both databases: batch fast path, per-receipt isolation when a stage fails."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import Connection

from handoff.hub import Hub
from handoff.pipeline.processor import Processor, StageBatch
from handoff.store import events as es
from handoff.store import receipts as rs
from tests.test_gateway import ORDER

NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)


def seed(hub: Hub, bodies: dict[str, bytes], topic: str = "orders/paid") -> None:
    with hub.db.write() as conn:
        rs.insert_batch(
            conn,
            [
                rs.NewReceipt(
                    "shop", "shopify", key, NOW, {"x-shopify-topic": topic}, body, "0" * 64
                )
                for key, body in bodies.items()
            ],
            NOW,
        )


class Recorder:
    """A downstream stage that sees each new event once; it refuses order 13."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def handle(self, conn: Connection, batch: StageBatch) -> None:
        for event in batch.events:
            if event.body_json().get("order_id") == "13":
                raise RuntimeError("stage refuses order 13")
        self.seen += [e.event_id for e in batch.events]


def test_stage_failure_isolates_one_receipt(hub_factory: Callable[..., Hub]) -> None:
    hub = hub_factory()
    bodies = {f"w{i}": json.dumps(ORDER | {"id": i}).encode() for i in range(10, 16)}
    bodies["dup"] = bodies["w10"]  # the same fact under a second delivery id
    bodies["bad"] = b'{"id": "x"}'
    seed(hub, bodies)
    stage = Recorder()
    result = Processor(hub, stages=[stage], batch_size=50).drain()
    assert (result.processed, result.quarantined, result.events) == (6, 2, 5)
    with hub.db.read() as conn:
        rows = {r.delivery_id: r for r in rs.list_receipts(conn, rs.ReceiptFilter(), 100)}
        events = es.list_events(conn, es.EventFilter(), 100)
        quarantined = rs.list_quarantine(conn)
    assert rows["w13"].status == "quarantined"
    assert "stage refuses order 13" in (rows["w13"].status_reason or "")
    assert rows["bad"].status == "quarantined"
    assert all(rows[k].status == "processed" for k in ("w10", "w11", "w12", "w14", "w15", "dup"))
    assert sorted(e.order_id or "" for e in events) == ["10", "11", "12", "14", "15"]
    assert sorted(stage.seen) == sorted(e.event_id for e in events)  # each new event once
    assert {q.receipt_id for q in quarantined} == {rows["w13"].id, rows["bad"].id}


def test_skipped_and_unknown_sources(hub_factory: Callable[..., Hub]) -> None:
    hub = hub_factory()
    seed(hub, {"t": b'{"id": 1}'}, topic="products/update")
    with hub.db.write() as conn:
        rs.insert_batch(
            conn, [rs.NewReceipt("gone", "shopify", "g", NOW, {}, b"{}", "0" * 64)], NOW
        )
    result = Processor(hub).drain()
    assert (result.skipped, result.quarantined) == (1, 1)
    with hub.db.read() as conn:
        rows = {r.delivery_id: r for r in rs.list_receipts(conn, rs.ReceiptFilter(), 10)}
    assert rows["t"].status == "skipped" and "products/update" in (rows["t"].status_reason or "")
    assert rows["g"].status_reason == "source 'gone' is no longer configured"
