"""Coalescing when an older row for the same field is pending again (a lease ran out or it was
replayed) beside a newer pending one: the newer value goes into the newest row only, and the
idempotency keys stay unique (found by the SIGKILL crash test on PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select, update

from handoff.store import outbox as store
from handoff.store.db import Database
from handoff.store.delivery_tables import delivery_outbox as T

NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)


def row(version: int) -> store.NewRow:
    return store.NewRow(
        "hook",
        "attribute",
        377,
        "is_vip",
        version,
        {"value": version % 2 == 0},
        f"attr:377:is_vip:v{version}",
        "test",
        NOW,
    )


def test_a_newer_value_goes_into_the_newest_pending_row(database: Database) -> None:
    with database.write() as conn:
        store.add(conn, [row(7)], NOW)
        conn.execute(update(T).values(status="inflight"))  # v7 is being sent …
        store.add(conn, [row(8)], NOW)  # … so v8 gets its own row
        conn.execute(update(T).where(T.c.version == 7).values(status="pending"))  # lease ran out
        assert store.add(conn, [row(9)], NOW) == 1
        rows = conn.execute(select(T.c.version, T.c.idem_key, T.c.status).order_by(T.c.id)).all()
    assert [(r.version, r.status) for r in rows] == [(7, "pending"), (9, "pending")]
    assert len({r.idem_key for r in rows}) == 2


def test_a_version_stored_meanwhile_is_not_stored_again(database: Database) -> None:
    with database.write() as conn:
        store.add(conn, [row(8)], NOW)
        conn.execute(update(T).values(status="inflight"))
        store.add(conn, [row(9)], NOW)
        conn.execute(update(T).where(T.c.version == 8).values(status="pending"))
        # v9 has a row already (another transaction stored it): coalescing it into the pending v8
        # row would duplicate its key, so nothing changes and the transaction goes on
        assert store._coalesce(conn, row(9), NOW) is True
        rows = conn.execute(select(T.c.version, T.c.idem_key).order_by(T.c.id)).all()
    assert [(r.version, r.idem_key) for r in rows] == [
        (8, "attr:377:is_vip:v8"),
        (9, "attr:377:is_vip:v9"),
    ]
