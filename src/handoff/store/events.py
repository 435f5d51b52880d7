"""Canonical events as stored: written once by the processor, read by the API and later stages."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from handoff.domain.events import CanonicalEvent
from handoff.store.tables import events


def insert_events(
    conn: Connection, batch: Sequence[tuple[int, CanonicalEvent]], now: datetime
) -> set[str]:
    """Insert (receipt id, event) pairs; an event_id already present is skipped.

    Returns the ids newly stored. One executemany with a statement compiled once: SQLAlchemy
    turns it into multi-row INSERTs, so a whole batch of receipts costs a few round trips."""
    if not batch:
        return set()
    rows = []
    for receipt_id, e in batch:
        body = e.body_json()
        rows.append(
            {
                "event_id": e.event_id,
                "receipt_id": receipt_id,
                "source": e.source,
                "source_event_id": e.source_event_id,
                "type": str(e.type),
                "occurred_at": e.occurred_at,
                "received_at": e.received_at,
                "processed_at": now,
                "customer_system": e.customer.system if e.customer else None,
                "customer_external_id": e.customer.external_id if e.customer else None,
                "order_id": body.get("order_id"),
                "customer": e.customer.model_dump(mode="json") if e.customer else None,
                "body": body,
            }
        )
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    stmt = (
        insert(events)
        .on_conflict_do_nothing(index_elements=["event_id"])
        .returning(events.c.event_id)
    )
    return {r[0] for r in conn.execute(stmt, rows)}


@dataclass(frozen=True, slots=True)
class EventRow:
    id: int
    event_id: str
    receipt_id: int
    source: str
    source_event_id: str
    type: str
    occurred_at: datetime
    received_at: datetime
    processed_at: datetime
    customer_system: str | None
    customer_external_id: str | None
    order_id: str | None
    customer: dict[str, Any] | None
    body: dict[str, Any]
    customer_id: int | None = None  # the golden customer, once identity resolved it


@dataclass(frozen=True, slots=True)
class EventFilter:
    source: str | None = None
    type: str | None = None
    order_id: str | None = None
    customer_external_id: str | None = None
    receipt_id: int | None = None
    since: datetime | None = None
    until: datetime | None = None
    before_id: int | None = None
    customer_id: int | None = None


def list_events(conn: Connection, flt: EventFilter, limit: int = 50) -> list[EventRow]:
    stmt = select(*events.c).order_by(events.c.id.desc()).limit(limit)
    conditions = {
        events.c.source: flt.source,
        events.c.type: flt.type,
        events.c.order_id: flt.order_id,
        events.c.customer_external_id: flt.customer_external_id,
        events.c.receipt_id: flt.receipt_id,
        events.c.customer_id: flt.customer_id,
    }
    for column, value in conditions.items():
        if value is not None:
            stmt = stmt.where(column == value)
    if flt.since:
        stmt = stmt.where(events.c.occurred_at >= flt.since)
    if flt.until:
        stmt = stmt.where(events.c.occurred_at < flt.until)
    if flt.before_id:
        stmt = stmt.where(events.c.id < flt.before_id)
    return [EventRow(**r._mapping) for r in conn.execute(stmt)]


def count_events(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(events)).scalar_one())


def counts_by_type(conn: Connection) -> list[tuple[str, str, int]]:
    stmt = (
        select(events.c.source, events.c.type, func.count())
        .group_by(events.c.source, events.c.type)
        .order_by(events.c.source, events.c.type)
    )
    return [(r[0], r[1], r[2]) for r in conn.execute(stmt)]


def set_customers(conn: Connection, customers: Mapping[str, int]) -> None:
    """Record the golden customer identity resolved each event to (event id -> customer id)."""
    if not customers:
        return
    stmt = (
        update(events)
        .where(events.c.event_id == bindparam("eid"))
        .values(customer_id=bindparam("cid"))
    )
    conn.execute(stmt, [{"eid": e, "cid": c} for e, c in customers.items()])
