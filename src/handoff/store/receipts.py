"""The receive log: every signed webhook, stored durably and once, and its processing state."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Connection, bindparam, func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from handoff.store.tables import quarantine, receipts

STATUSES = ("pending", "processed", "skipped", "quarantined")


@dataclass(frozen=True, slots=True)
class NewReceipt:
    source: str
    vendor: str
    delivery_id: str
    received_at: datetime
    headers: Mapping[str, str]
    body: bytes
    body_sha256: str
    quarantine_reason: str | None = None  # signed but unusable at the door


@dataclass(frozen=True, slots=True)
class Stored:
    receipt_id: int | None  # None: a duplicate of a delivery already in the log
    duplicate: bool


def _insert(conn: Connection) -> Any:
    return pg_insert if conn.dialect.name == "postgresql" else sqlite_insert


def insert_batch(conn: Connection, batch: Sequence[NewReceipt], now: datetime) -> list[Stored]:
    """Store a batch in one statement; a delivery id already stored (or repeated within the batch)
    is reported as a duplicate and not stored again."""
    first_index: dict[tuple[str, str], int] = {}
    for i, item in enumerate(batch):
        first_index.setdefault((item.source, item.delivery_id), i)
    unique = [batch[i] for i in sorted(first_index.values())]
    rows = [
        {
            "source": r.source,
            "vendor": r.vendor,
            "delivery_id": r.delivery_id,
            "received_at": r.received_at,
            "headers": dict(r.headers),
            "body": r.body,
            "body_sha256": r.body_sha256,
            "status": "quarantined" if r.quarantine_reason else "pending",
            "status_reason": r.quarantine_reason,
        }
        for r in unique
    ]
    if conn.dialect.name == "postgresql":
        inserted = _insert_unnest(conn, rows)
    else:
        # executemany: SQLAlchemy batches it into multi-row INSERTs with one cached compilation
        stmt = (
            _insert(conn)(receipts)
            .on_conflict_do_nothing(index_elements=["source", "delivery_id"])
            .returning(receipts.c.id, receipts.c.source, receipts.c.delivery_id)
        )
        inserted = {(row.source, row.delivery_id): row.id for row in conn.execute(stmt, rows)}
    quarantined = [
        {
            "receipt_id": inserted[(r.source, r.delivery_id)],
            "stage": "gateway",
            "reason": r.quarantine_reason,
            "quarantined_at": now,
        }
        for r in unique
        if r.quarantine_reason and (r.source, r.delivery_id) in inserted
    ]
    if quarantined:
        conn.execute(quarantine.insert(), quarantined)
    results: list[Stored] = []
    for i, item in enumerate(batch):
        key = (item.source, item.delivery_id)
        rid = inserted.get(key)
        if rid is not None and first_index[key] == i:
            results.append(Stored(receipt_id=rid, duplicate=False))
        else:
            results.append(Stored(receipt_id=None, duplicate=True))
    return results


# One statement text whatever the batch size: PostgreSQL prepares it once per connection, and
# neither SQLAlchemy nor psycopg rebuilds a many-row VALUES list for every group commit (that
# rebuilding was a third of the gateway's CPU on PostgreSQL, bench/RESULTS.md).
_UNNEST_INSERT = text(
    "INSERT INTO receipts (source, vendor, delivery_id, received_at, headers, body, body_sha256,"
    " status, status_reason)"
    " SELECT s, v, d, r, h::jsonb, b, sha, st, why FROM unnest("
    "CAST(:source AS text[]), CAST(:vendor AS text[]), CAST(:delivery_id AS text[]),"
    " CAST(:received_at AS timestamptz[]), CAST(:headers AS text[]), CAST(:body AS bytea[]),"
    " CAST(:body_sha256 AS text[]), CAST(:status AS text[]), CAST(:status_reason AS text[])"
    ") AS t(s, v, d, r, h, b, sha, st, why)"
    " ON CONFLICT (source, delivery_id) DO NOTHING RETURNING id, source, delivery_id"
)


def _insert_unnest(conn: Connection, rows: Sequence[dict[str, Any]]) -> dict[tuple[str, str], int]:
    """The PostgreSQL path of insert_batch: every row as one array per column, one statement."""
    columns = {name: [row[name] for row in rows] for name in _UNNEST_COLUMNS}
    columns["headers"] = [orjson.dumps(h).decode() for h in columns["headers"]]
    if any(moment.tzinfo is None for moment in columns["received_at"]):
        raise ValueError("naive datetime given to a UTC column")
    result = conn.execute(_UNNEST_INSERT, columns)
    return {(row.source, row.delivery_id): row.id for row in result}


_UNNEST_COLUMNS = (
    "source",
    "vendor",
    "delivery_id",
    "received_at",
    "headers",
    "body",
    "body_sha256",
    "status",
    "status_reason",
)


@dataclass(frozen=True, slots=True)
class ReceiptRow:
    id: int
    source: str
    vendor: str
    delivery_id: str
    received_at: datetime
    headers: dict[str, str]
    body: bytes
    status: str
    status_reason: str | None
    processed_at: datetime | None
    attempts: int
    event_count: int


_COLUMNS = (
    receipts.c.id,
    receipts.c.source,
    receipts.c.vendor,
    receipts.c.delivery_id,
    receipts.c.received_at,
    receipts.c.headers,
    receipts.c.body,
    receipts.c.status,
    receipts.c.status_reason,
    receipts.c.processed_at,
    receipts.c.attempts,
    receipts.c.event_count,
)


def _row(r: Any) -> ReceiptRow:
    return ReceiptRow(
        id=r.id,
        source=r.source,
        vendor=r.vendor,
        delivery_id=r.delivery_id,
        received_at=r.received_at,
        headers=r.headers,
        body=bytes(r.body),
        status=r.status,
        status_reason=r.status_reason,
        processed_at=r.processed_at,
        attempts=r.attempts,
        event_count=r.event_count,
    )


def claim_pending(conn: Connection, limit: int) -> list[ReceiptRow]:
    """Lock the oldest pending receipts for this transaction.

    PostgreSQL: FOR UPDATE SKIP LOCKED, so concurrent workers take disjoint sets. SQLite: the
    caller's BEGIN IMMEDIATE already holds the database's single write lock (SQLAlchemy would
    silently drop FOR UPDATE there), so a plain select is exclusive.
    """
    stmt = (
        select(*_COLUMNS).where(receipts.c.status == "pending").order_by(receipts.c.id).limit(limit)
    )
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    rows = [_row(r) for r in conn.execute(stmt)]
    if rows:
        conn.execute(
            update(receipts)
            .where(receipts.c.id.in_([r.id for r in rows]))
            .values(attempts=receipts.c.attempts + 1)
        )
    return rows


@dataclass(frozen=True, slots=True)
class Outcome:
    """How the processor left one receipt."""

    receipt_id: int
    status: str
    reason: str | None = None
    event_count: int = 0


def mark_many(conn: Connection, outcomes: Sequence[Outcome], *, now: datetime) -> None:
    """Record a batch's outcomes in one executemany; quarantined ones also get a history row."""
    if not outcomes:
        return
    assert all(o.status in STATUSES for o in outcomes)
    stmt = (
        update(receipts)
        .where(receipts.c.id == bindparam("rid"))
        .values(
            status=bindparam("st"),
            status_reason=bindparam("why"),
            processed_at=bindparam("at"),
            event_count=bindparam("n"),
        )
    )
    conn.execute(
        stmt,
        [
            {"rid": o.receipt_id, "st": o.status, "why": o.reason, "at": now, "n": o.event_count}
            for o in outcomes
        ],
    )
    held = [
        {
            "receipt_id": o.receipt_id,
            "stage": "processor",
            "reason": o.reason or "",
            "quarantined_at": now,
        }
        for o in outcomes
        if o.status == "quarantined"
    ]
    if held:
        conn.execute(quarantine.insert(), held)


def get(conn: Connection, receipt_id: int) -> ReceiptRow | None:
    row = conn.execute(select(*_COLUMNS).where(receipts.c.id == receipt_id)).first()
    return _row(row) if row else None


@dataclass(frozen=True, slots=True)
class ReceiptFilter:
    source: str | None = None
    status: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    before_id: int | None = None  # keyset pagination: newest first


def list_receipts(conn: Connection, flt: ReceiptFilter, limit: int = 50) -> list[ReceiptRow]:
    stmt = select(*_COLUMNS).order_by(receipts.c.id.desc()).limit(limit)
    if flt.source:
        stmt = stmt.where(receipts.c.source == flt.source)
    if flt.status:
        stmt = stmt.where(receipts.c.status == flt.status)
    if flt.since:
        stmt = stmt.where(receipts.c.received_at >= flt.since)
    if flt.until:
        stmt = stmt.where(receipts.c.received_at < flt.until)
    if flt.before_id:
        stmt = stmt.where(receipts.c.id < flt.before_id)
    return [_row(r) for r in conn.execute(stmt)]


def counts_by_source_status(conn: Connection) -> list[tuple[str, str, int]]:
    stmt = (
        select(receipts.c.source, receipts.c.status, func.count())
        .group_by(receipts.c.source, receipts.c.status)
        .order_by(receipts.c.source, receipts.c.status)
    )
    return [(r[0], r[1], r[2]) for r in conn.execute(stmt)]


def count_pending(conn: Connection) -> int:
    stmt = select(func.count()).select_from(receipts).where(receipts.c.status == "pending")
    return int(conn.execute(stmt).scalar_one())


def oldest_pending_at(conn: Connection) -> datetime | None:
    """When the oldest receipt still waiting for the processor arrived (None: none waits)."""
    stmt = select(func.min(receipts.c.received_at)).where(receipts.c.status == "pending")
    value: datetime | None = conn.execute(stmt).scalar_one()
    return value


@dataclass(frozen=True, slots=True)
class QuarantineRow:
    id: int
    receipt_id: int
    source: str
    stage: str
    reason: str
    quarantined_at: datetime
    resolved_at: datetime | None
    resolution: str | None


def list_quarantine(
    conn: Connection,
    *,
    source: str | None = None,
    include_resolved: bool = False,
    limit: int = 100,
) -> list[QuarantineRow]:
    stmt = (
        select(
            quarantine.c.id,
            quarantine.c.receipt_id,
            receipts.c.source,
            quarantine.c.stage,
            quarantine.c.reason,
            quarantine.c.quarantined_at,
            quarantine.c.resolved_at,
            quarantine.c.resolution,
        )
        .join(receipts, receipts.c.id == quarantine.c.receipt_id)
        .order_by(quarantine.c.id.desc())
        .limit(limit)
    )
    if source:
        stmt = stmt.where(receipts.c.source == source)
    if not include_resolved:
        stmt = stmt.where(quarantine.c.resolved_at.is_(None))
    return [QuarantineRow(*r) for r in conn.execute(stmt)]


def requeue_quarantined(
    conn: Connection,
    *,
    now: datetime,
    receipt_ids: Sequence[int] | None = None,
    source: str | None = None,
) -> list[int]:
    """Put quarantined receipts back in the processing queue (after a mapping fix)."""
    stmt = select(receipts.c.id).where(receipts.c.status == "quarantined")
    if receipt_ids is not None:
        stmt = stmt.where(receipts.c.id.in_(list(receipt_ids)))
    if source:
        stmt = stmt.where(receipts.c.source == source)
    ids = [r[0] for r in conn.execute(stmt)]
    if ids:
        conn.execute(
            update(receipts)
            .where(receipts.c.id.in_(ids))
            .values(status="pending", status_reason=None, processed_at=None)
        )
        conn.execute(
            update(quarantine)
            .where(quarantine.c.receipt_id.in_(ids), quarantine.c.resolved_at.is_(None))
            .values(resolved_at=now, resolution="retried")
        )
    return ids
