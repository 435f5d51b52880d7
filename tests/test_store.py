"""The receive log, events and tokens on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from handoff.domain.events import CustomerRef, EventDraft, EventType, ProfileBody
from handoff.store import events as event_store
from handoff.store import migrate, tokens
from handoff.store import receipts as rs
from handoff.store.db import Database
from handoff.store.tables import metadata

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def new(delivery_id: str, source: str = "shop", reason: str | None = None) -> rs.NewReceipt:
    return rs.NewReceipt(
        source=source,
        vendor="shopify",
        delivery_id=delivery_id,
        received_at=NOW,
        headers={"x-shopify-topic": "orders/paid"},
        body=b'{"id": 1}',
        body_sha256="0" * 64,
        quarantine_reason=reason,
    )


def test_migrations_match_tables(database: Database) -> None:
    assert migrate.is_current(database)
    with database.engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), metadata
        )
    assert diff == []


def test_insert_batch_stores_each_delivery_once(database: Database) -> None:
    with database.write() as conn:
        first = rs.insert_batch(conn, [new("a"), new("b"), new("a"), new("a", source="erp")], NOW)
    assert [r.duplicate for r in first] == [False, False, True, False]
    assert all(r.receipt_id for r in first if not r.duplicate)
    with database.write() as conn:
        again = rs.insert_batch(conn, [new("b"), new("c")], NOW)
    assert [r.duplicate for r in again] == [True, False]
    with database.read() as conn:
        rows = rs.list_receipts(conn, rs.ReceiptFilter(), 100)
    assert sorted((r.source, r.delivery_id) for r in rows) == [
        ("erp", "a"),
        ("shop", "a"),
        ("shop", "b"),
        ("shop", "c"),
    ]
    assert all(r.received_at == NOW and r.received_at.tzinfo is not None for r in rows)
    assert rows[0].headers == {"x-shopify-topic": "orders/paid"}
    assert rows[0].body == b'{"id": 1}'


def test_gateway_quarantine_is_recorded_with_reason(database: Database) -> None:
    with database.write() as conn:
        [stored] = rs.insert_batch(conn, [new("q", reason="body is not valid JSON")], NOW)
    with database.read() as conn:
        row = rs.get(conn, stored.receipt_id or 0)
        entries = rs.list_quarantine(conn)
    assert row is not None and row.status == "quarantined"
    assert row.status_reason == "body is not valid JSON"
    assert [(e.receipt_id, e.stage, e.reason) for e in entries] == [
        (stored.receipt_id, "gateway", "body is not valid JSON")
    ]


def test_claim_mark_and_requeue(database: Database) -> None:
    with database.write() as conn:
        rs.insert_batch(conn, [new(str(i)) for i in range(5)], NOW)
    with database.write() as conn:
        claimed = rs.claim_pending(conn, 3)
        assert [c.delivery_id for c in claimed] == ["0", "1", "2"]  # arrival order
        rs.mark_many(
            conn,
            [
                rs.Outcome(claimed[0].id, "processed", event_count=2),
                rs.Outcome(claimed[1].id, "quarantined", "bad"),
                rs.Outcome(claimed[2].id, "skipped", "nothing to map"),
            ],
            now=NOW,
        )
    with database.read() as conn:
        assert rs.count_pending(conn) == 2
        counts = dict(((s, st), n) for s, st, n in rs.counts_by_source_status(conn))
    assert counts == {
        ("shop", "pending"): 2,
        ("shop", "processed"): 1,
        ("shop", "quarantined"): 1,
        ("shop", "skipped"): 1,
    }
    with database.write() as conn:
        assert rs.requeue_quarantined(conn, now=NOW) == [claimed[1].id]
    with database.read() as conn:
        assert rs.count_pending(conn) == 3
        assert rs.list_quarantine(conn) == []
        [resolved] = rs.list_quarantine(conn, include_resolved=True)
        assert resolved.resolution == "retried"
        again = rs.get(conn, claimed[1].id)
    assert again is not None and again.attempts == 1 and again.status == "pending"


def test_list_filters_and_pagination(database: Database) -> None:
    with database.write() as conn:
        rs.insert_batch(
            conn, [new(str(i), source="shop" if i % 2 else "erp") for i in range(10)], NOW
        )
    with database.read() as conn:
        page1 = rs.list_receipts(conn, rs.ReceiptFilter(source="shop"), 3)
        page2 = rs.list_receipts(conn, rs.ReceiptFilter(source="shop", before_id=page1[-1].id), 3)
        later = rs.list_receipts(conn, rs.ReceiptFilter(since=NOW + timedelta(seconds=1)), 10)
    assert len(page1) == 3 and len(page2) == 2
    assert all(r.source == "shop" for r in page1 + page2)
    assert len({r.id for r in page1 + page2}) == 5
    assert later == []


def test_events_are_stored_once_by_event_id(database: Database) -> None:
    with database.write() as conn:
        [stored] = rs.insert_batch(conn, [new("e")], NOW)
    draft = EventDraft(
        source_event_id="customer:1",
        type=EventType.PROFILE_CAPTURED,
        occurred_at=NOW.astimezone(timezone(timedelta(hours=-5))),
        customer=CustomerRef(system="shop", external_id="1", email="a@example.com"),
        body=ProfileBody(email="a@example.com"),
    )
    event = draft.stamp(source="shop", received_at=NOW)
    rid = stored.receipt_id or 0
    with database.write() as conn:
        assert event_store.insert_events(conn, [(rid, event)], NOW) == {event.event_id}
        assert event_store.insert_events(conn, [(rid, event)], NOW) == set()
    with database.read() as conn:
        [row] = event_store.list_events(conn, event_store.EventFilter(customer_external_id="1"))
    assert row.occurred_at == NOW and row.type == "customer.profile.captured"
    assert row.body["email"] == "a@example.com"
    assert row.customer == event.customer.model_dump(mode="json") if event.customer else False


def test_tokens_are_hashed_and_revocable(database: Database) -> None:
    with database.write() as conn:
        row, token = tokens.create_token(conn, name="ops", role="operator", now=NOW)
    assert token.startswith("hnd_") and len(token) > 40
    with database.read() as conn:
        found = tokens.find_active(conn, token)
        assert tokens.find_active(conn, token + "x") is None
        stored_hashes = conn.exec_driver_sql("SELECT token_hash FROM api_tokens").scalars().all()
    assert found is not None and found.role == "operator"
    assert token not in stored_hashes
    with database.write() as conn:
        assert tokens.revoke(conn, row.id, NOW)
        assert not tokens.revoke(conn, row.id, NOW)
    with database.read() as conn:
        assert tokens.find_active(conn, token) is None
    with database.write() as conn, pytest.raises(ValueError, match="role"):
        tokens.create_token(conn, name="x", role="root", now=NOW)


def test_naive_datetimes_are_refused(database: Database) -> None:
    bad = rs.NewReceipt(
        source="shop",
        vendor="shopify",
        delivery_id="n",
        received_at=datetime(2026, 1, 1),
        headers={},
        body=b"{}",
        body_sha256="0" * 64,
    )
    with pytest.raises(Exception, match="naive"), database.write() as conn:
        rs.insert_batch(conn, [bad], NOW)
