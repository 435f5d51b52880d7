"""The delivery outbox in SQL: enqueue with coalescing, leased claims, outcomes, DLQ and replay.

Claims: PostgreSQL locks due rows with FOR UPDATE SKIP LOCKED inside one UPDATE … RETURNING, so
any number of worker processes take disjoint rows; SQLite runs the same statement inside the
caller's BEGIN IMMEDIATE (the database's single write lock makes it exclusive). A claimed row
is `inflight` with a lease; if its worker dies the lease runs out and the row is due again.

Per-customer order: a row is due only when no earlier row for the same destination and customer
is still pending or in flight, so one customer's changes reach a destination one at a time and
in the order they were made (a row waiting for a retry holds the later ones back).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    bindparam,
    case,
    func,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError

from handoff.store.delivery_tables import (
    delivery_attempts,
    delivery_destinations,
    delivery_outbox,
    delivery_sent_adjustments,
)

T = delivery_outbox
ACTIVE = ("pending", "inflight")
STATUSES = ("pending", "inflight", "delivered", "dead", "superseded")
STATEFUL = ("attribute", "profile")  # kinds where the latest version is all that matters


def _insert(conn: Connection) -> Any:
    return pg_insert if conn.dialect.name == "postgresql" else sqlite_insert


@dataclass(frozen=True, slots=True)
class NewRow:
    destination: str
    kind: str
    customer_id: int
    field: str
    version: int
    payload: Mapping[str, Any]
    idem_key: str
    cause: str
    change_at: datetime


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    destination: str
    kind: str
    customer_id: int
    field: str
    version: int
    payload: dict[str, Any]
    idem_key: str
    status: str
    attempts: int
    throttled: int
    next_attempt_at: datetime
    lease_owner: str | None
    lease_until: datetime | None
    cause: str
    change_at: datetime
    created_at: datetime
    updated_at: datetime
    delivered_at: datetime | None
    last_status: int | None
    last_error: str | None


_COLUMNS = tuple(getattr(T.c, name) for name in OutboxRow.__dataclass_fields__)


def _row(r: Any) -> OutboxRow:
    """A result row of `_COLUMNS` (same order as the fields): positional, it is the claim's
    hot path."""
    return OutboxRow(*r)


# --- enqueue --------------------------------------------------------------------------------


def add(conn: Connection, rows: Sequence[NewRow], now: datetime) -> int:
    """Store rows in the caller's transaction; returns how many were written or coalesced.

    State rows (attributes, profiles) whose version is not newer than one already enqueued for
    the same destination, customer and field are dropped; a newer one replaces the value of a
    row still pending for that key instead of adding a row. Points rows are kept in order; a key
    already stored for the destination is not stored twice."""
    if not rows:
        return 0
    latest: dict[tuple[str, int, str], NewRow] = {}
    ordered: list[NewRow] = []
    for r in rows:
        if r.kind in STATEFUL:
            key = (r.destination, r.customer_id, r.field)
            if key not in latest or r.version > latest[key].version:
                latest[key] = r
        else:
            ordered.append(r)
    written = 0
    inserts: list[NewRow] = []
    if latest:
        known = _max_versions(conn, list(latest))
        for key, r in latest.items():
            version, pending = known.get(key, (-1, False))
            if version >= r.version:
                continue
            # a savepoint and an UPDATE only where a pending row may take the new value
            if pending and _coalesce(conn, r, now):
                written += 1
            else:
                inserts.append(r)
    inserts += ordered
    if inserts:
        values = [
            {
                "destination": r.destination,
                "kind": r.kind,
                "customer_id": r.customer_id,
                "field": r.field,
                "version": r.version,
                "payload": dict(r.payload),
                "idem_key": r.idem_key,
                "status": "pending",
                "attempts": 0,
                "throttled": 0,
                "next_attempt_at": now,
                "cause": r.cause,
                "change_at": r.change_at,
                "created_at": now,
                "updated_at": now,
            }
            for r in inserts
        ]
        stmt = (
            _insert(conn)(T)
            .on_conflict_do_nothing(index_elements=["destination", "idem_key"])
            .returning(T.c.id)
        )
        written += len(conn.execute(stmt, values).all())
    return written


def _max_versions(
    conn: Connection, keys: Sequence[tuple[str, int, str]]
) -> dict[tuple[str, int, str], tuple[int, bool]]:
    """Per key: the newest version enqueued, and whether a row of the key is still pending."""
    customers = sorted({k[1] for k in keys})
    wanted = set(keys)
    out: dict[tuple[str, int, str], tuple[int, bool]] = {}
    pending = func.max(case((T.c.status == "pending", 1), else_=0))
    for start in range(0, len(customers), 500):
        stmt = (
            select(T.c.destination, T.c.customer_id, T.c.field, func.max(T.c.version), pending)
            .where(T.c.destination.in_(sorted({k[0] for k in keys})))
            .where(T.c.customer_id.in_(customers[start : start + 500]))
            .where(T.c.kind.in_(STATEFUL))
            .group_by(T.c.destination, T.c.customer_id, T.c.field)
        )
        for dest, cust, field, version, has_pending in conn.execute(stmt):
            if (dest, cust, field) in wanted:
                out[(dest, cust, field)] = (int(version), bool(has_pending))
    return out


def _coalesce(conn: Connection, r: NewRow, now: datetime) -> bool:
    """Put a newer value into the row still pending for its key, if there is one.

    Only the newest such row: after a lease expires or a replay, an older row can be pending
    beside it, and giving both the new idempotency key would break its uniqueness. If another
    transaction stored this very version meanwhile, the key exists already: nothing to do."""
    newest = (
        select(func.max(T.c.id))
        .where(
            T.c.destination == r.destination,
            T.c.customer_id == r.customer_id,
            T.c.field == r.field,
            T.c.kind == r.kind,
            T.c.status == "pending",
            T.c.version < r.version,
        )
        .scalar_subquery()
    )
    stmt = (
        update(T)
        .where(T.c.id == newest, T.c.status == "pending", T.c.version < r.version)
        .values(
            version=r.version,
            payload=dict(r.payload),
            idem_key=r.idem_key,
            cause=r.cause,
            change_at=r.change_at,
            updated_at=now,
        )
        .returning(T.c.id)
    )
    try:
        with conn.begin_nested():
            return conn.execute(stmt).first() is not None
    except IntegrityError:
        return True  # (destination, idem_key) is stored already: this version is enqueued


# --- claims ----------------------------------------------------------------------------------


def _at_head() -> Any:
    """The row is the earliest still pending or in flight for its destination and customer.

    A correlated scalar subquery on purpose: it is always run per candidate as one probe of the
    partial index, where an anti-join can be planned as a scan of every active row per row when
    the table's statistics are stale (a freshly filled outbox)."""
    earlier = T.alias("earlier")
    first = (
        select(func.min(earlier.c.id))
        .where(
            earlier.c.destination == T.c.destination,
            earlier.c.customer_id == T.c.customer_id,
            earlier.c.status.in_(ACTIVE),
        )
        .scalar_subquery()
    )
    return T.c.id == first


def claim(
    conn: Connection,
    *,
    owner: str,
    now: datetime,
    lease_until: datetime,
    limit: int,
    destinations: Sequence[str],
) -> list[OutboxRow]:
    """Lease up to `limit` due rows; rows whose lease ran out are due again first.

    Due rows are read in (next_attempt_at, id) order straight from the index, so a claim costs
    the rows it takes (plus any it skips because an earlier row of the customer is active),
    however long the queue."""
    conn.execute(
        update(T)
        .where(T.c.status == "inflight", T.c.lease_until < now)
        .values(status="pending", updated_at=now)
    )
    pick = (
        select(T.c.id)
        .where(
            T.c.status == "pending",
            T.c.next_attempt_at <= now,
            T.c.destination.in_(list(destinations)),
            _at_head(),
        )
        .order_by(T.c.next_attempt_at, T.c.id)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        pick = pick.with_for_update(skip_locked=True, of=T)
    stmt = (
        update(T)
        .where(T.c.id.in_(pick.scalar_subquery()))
        .values(status="inflight", lease_owner=owner, lease_until=lease_until, updated_at=now)
        .returning(*_COLUMNS)
    )
    rows = [_row(r) for r in conn.execute(stmt)]
    rows.sort(key=lambda r: r.id)
    return rows


def delivered_versions(
    conn: Connection, rows: Sequence[OutboxRow]
) -> dict[tuple[str, int, str], int]:
    """The newest version already delivered for each state row's key."""
    keys = {(r.destination, r.customer_id, r.field) for r in rows if r.kind in STATEFUL}
    if not keys:
        return {}
    stmt = (
        select(T.c.destination, T.c.customer_id, T.c.field, func.max(T.c.version))
        .where(T.c.destination.in_(sorted({k[0] for k in keys})))
        .where(T.c.customer_id.in_(sorted({k[1] for k in keys})))
        .where(T.c.status == "delivered", T.c.kind.in_(STATEFUL))
        .group_by(T.c.destination, T.c.customer_id, T.c.field)
    )
    return {(d, c, f): int(v) for d, c, f, v in conn.execute(stmt) if (d, c, f) in keys}


@dataclass(frozen=True, slots=True)
class Finish:
    """What became of one leased row after an attempt (or a wait)."""

    id: int
    status: str  # pending | delivered | dead | superseded
    attempts: int
    throttled: int
    next_attempt_at: datetime
    delivered_at: datetime | None = None
    last_status: int | None = None
    last_error: str | None = None


def finish(conn: Connection, owner: str, outcomes: Sequence[Finish], now: datetime) -> None:
    """Write outcomes, only for rows this worker still holds (a row whose lease ran out and was
    taken by another worker is that worker's now).

    One small UPDATE sent with every row's values as an executemany: the driver converts the
    statement once and sends the rows in one go (psycopg pipelines them), where an `id IN (…)`
    per group renders a new statement of hundreds of parameters every round."""
    if not outcomes:
        return
    stmt = (
        update(T)
        .where(T.c.id == bindparam("b_id"), T.c.lease_owner == owner, T.c.status == "inflight")
        .values(
            status=bindparam("b_status"),
            attempts=bindparam("b_attempts"),
            throttled=bindparam("b_throttled"),
            next_attempt_at=bindparam("b_next", type_=T.c.next_attempt_at.type),
            delivered_at=bindparam("b_delivered", type_=T.c.delivered_at.type),
            last_status=bindparam("b_code"),
            last_error=bindparam("b_error"),
            lease_owner=None,
            lease_until=None,
            updated_at=now,
        )
    )
    conn.execute(
        stmt,
        [
            {
                "b_id": o.id,
                "b_status": o.status,
                "b_attempts": o.attempts,
                "b_throttled": o.throttled,
                "b_next": o.next_attempt_at,
                "b_delivered": o.delivered_at,
                "b_code": o.last_status,
                "b_error": o.last_error,
            }
            for o in sorted(outcomes, key=lambda o: o.id)  # one lock order for every worker
        ],
    )


_ATTEMPT_COLUMNS = tuple(c for c in delivery_attempts.c if c.name != "id")
_INSERTS: dict[str, tuple[str, tuple[str, ...], dict[str, Any]]] = {}


def record_attempts(conn: Connection, attempts: Sequence[Mapping[str, Any]]) -> None:
    """Insert attempt rows with the driver's executemany of Core's one-row INSERT.

    Core's multi-row INSERT renders ~10 parameters per row, a statement the driver parses
    afresh every round (psycopg caches statements of at most 50 parameters); the one-row
    statement is parsed once and psycopg pipelines the rows in one round trip. The columns'
    bind processing (UTC datetimes) is applied here as Core would."""
    if not attempts:
        return
    sql, order, procs = _attempt_insert(conn.dialect)
    rows = [tuple(procs[k](a.get(k)) if k in procs else a.get(k) for k in order) for a in attempts]
    if conn.dialect.paramstyle in ("qmark", "format", "numeric"):
        conn.exec_driver_sql(sql, rows)
    else:
        conn.exec_driver_sql(sql, [dict(zip(order, r, strict=True)) for r in rows])


def _attempt_insert(dialect: Any) -> tuple[str, tuple[str, ...], dict[str, Any]]:
    """Core's one-row INSERT of attempts compiled for the dialect, its parameter order and the
    columns' bind processors (cached per dialect)."""
    cached = _INSERTS.get(dialect.name)
    if cached is None:
        keys = [c.name for c in _ATTEMPT_COLUMNS]
        compiled = delivery_attempts.insert().inline().compile(dialect=dialect, column_keys=keys)
        order = tuple(compiled.positiontup or keys)
        procs = {
            c.name: proc
            for c in _ATTEMPT_COLUMNS
            if (proc := c.type.dialect_impl(dialect).bind_processor(dialect)) is not None
        }
        cached = _INSERTS[dialect.name] = (str(compiled), order, procs)
    return cached


# --- destination state (shared limiter and breaker) -------------------------------------------


def lock_states(
    conn: Connection, names: Iterable[str], now: datetime
) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """The limiter and breaker state of each destination, locked for this transaction."""
    wanted = sorted(set(names))
    if not wanted:
        return {}
    conn.execute(
        _insert(conn)(delivery_destinations).on_conflict_do_nothing(index_elements=["name"]),
        [{"name": n, "limiter": {}, "breaker": {}, "updated_at": now} for n in wanted],
    )
    stmt = (
        select(delivery_destinations)
        .where(delivery_destinations.c.name.in_(wanted))
        .order_by(delivery_destinations.c.name)
    )
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    return {r.name: (dict(r.limiter), dict(r.breaker)) for r in conn.execute(stmt)}


def save_states(
    conn: Connection, states: Mapping[str, tuple[dict[str, Any], dict[str, Any]]], now: datetime
) -> None:
    if not states:
        return
    stmt = (
        update(delivery_destinations)
        .where(delivery_destinations.c.name == bindparam("b_name"))
        .values(limiter=bindparam("b_limiter"), breaker=bindparam("b_breaker"), updated_at=now)
    )
    conn.execute(
        stmt,
        [{"b_name": n, "b_limiter": lim, "b_breaker": br} for n, (lim, br) in states.items()],
    )


def mark_disabled(
    conn: Connection, disabled: Mapping[str, str], enabled: Iterable[str], now: datetime
) -> None:
    """Record why destinations cannot run (in their breaker state, key `disabled`) and clear the
    mark of those that can: what `deliveries destinations`, the API and the metrics show."""
    states = lock_states(conn, set(disabled) | set(enabled), now)
    changed = {}
    for name, (limiter, state) in states.items():
        reason = disabled.get(name)
        if state.get("disabled") != reason:
            if reason:
                state["disabled"] = reason
            else:
                state.pop("disabled", None)
            changed[name] = (limiter, state)
    save_states(conn, changed, now)


def read_states(conn: Connection) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    return {
        r.name: (dict(r.limiter), dict(r.breaker))
        for r in conn.execute(select(delivery_destinations))
    }


# --- the ledger of sent points adjustments --------------------------------------------------


def mark_sent(conn: Connection, destination: str, key: str, outbox_id: int, now: datetime) -> bool:
    """Note that an adjustment is about to be sent; False if an earlier attempt already was."""
    stmt = (
        _insert(conn)(delivery_sent_adjustments)
        .on_conflict_do_nothing(index_elements=["destination", "idem_key"])
        .returning(delivery_sent_adjustments.c.idem_key)
    )
    values = {"destination": destination, "idem_key": key, "outbox_id": outbox_id, "sent_at": now}
    return conn.execute(stmt, values).first() is not None


def confirm_sent(conn: Connection, destination: str, keys: Sequence[str], now: datetime) -> None:
    if keys:
        conn.execute(
            update(delivery_sent_adjustments)
            .where(
                delivery_sent_adjustments.c.destination == destination,
                delivery_sent_adjustments.c.idem_key.in_(list(keys)),
            )
            .values(confirmed_at=now)
        )


# --- DLQ, listing, replay, statistics --------------------------------------------------------


@dataclass(frozen=True)
class DeliveryFilter:
    destination: str | None = None
    customer_id: int | None = None
    statuses: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None

    def clauses(self) -> list[Any]:
        out: list[Any] = []
        if self.destination:
            out.append(T.c.destination == self.destination)
        if self.customer_id is not None:
            out.append(T.c.customer_id == self.customer_id)
        if self.statuses:
            out.append(T.c.status.in_(list(self.statuses)))
        if self.since is not None:
            out.append(T.c.created_at >= self.since)
        if self.until is not None:
            out.append(T.c.created_at < self.until)
        return out


def list_rows(
    conn: Connection, flt: DeliveryFilter, limit: int, before_id: int | None = None
) -> list[OutboxRow]:
    stmt = select(*_COLUMNS).where(*flt.clauses())
    if before_id is not None:
        stmt = stmt.where(T.c.id < before_id)
    return [_row(r) for r in conn.execute(stmt.order_by(T.c.id.desc()).limit(limit))]


def count(conn: Connection, flt: DeliveryFilter) -> int:
    return int(conn.execute(select(func.count()).select_from(T).where(*flt.clauses())).scalar_one())


def get(conn: Connection, outbox_id: int) -> OutboxRow | None:
    r = conn.execute(select(*_COLUMNS).where(T.c.id == outbox_id)).first()
    return _row(r) if r else None


def attempts_of(conn: Connection, outbox_id: int) -> list[dict[str, Any]]:
    stmt = (
        select(delivery_attempts)
        .where(delivery_attempts.c.outbox_id == outbox_id)
        .order_by(delivery_attempts.c.id)
    )
    return [dict(r._mapping) for r in conn.execute(stmt)]


REPLAYABLE = ("dead", "delivered", "superseded")


def _again(now: datetime) -> dict[str, Any]:
    return {
        "status": "pending",
        "attempts": 0,
        "throttled": 0,
        "next_attempt_at": now,
        "delivered_at": None,
        "lease_owner": None,
        "lease_until": None,
        "updated_at": now,
    }


def replay(conn: Connection, flt: DeliveryFilter, now: datetime) -> int:
    """Send matching finished rows again, keeping their idempotency keys; attempts restart."""
    statuses = [s for s in (flt.statuses or ("dead",)) if s in REPLAYABLE]
    stmt = (
        update(T)
        .where(
            *DeliveryFilter(flt.destination, flt.customer_id, (), flt.since, flt.until).clauses()
        )
        .where(T.c.status.in_(statuses))
        .values(**_again(now))
    )
    return conn.execute(stmt).rowcount or 0


def replay_one(conn: Connection, outbox_id: int, now: datetime) -> bool:
    """Send one finished row again (the dashboard's replay button); False if it is not finished."""
    stmt = (
        update(T).where(T.c.id == outbox_id, T.c.status.in_(list(REPLAYABLE))).values(**_again(now))
    )
    return bool(conn.execute(stmt).rowcount)


def replay_count(conn: Connection, flt: DeliveryFilter) -> int:
    statuses = tuple(s for s in (flt.statuses or ("dead",)) if s in REPLAYABLE)
    return count(
        conn, DeliveryFilter(flt.destination, flt.customer_id, statuses, flt.since, flt.until)
    )


@dataclass(frozen=True)
class DestinationStats:
    destination: str
    by_status: dict[str, int]
    oldest_pending: datetime | None


def stats(conn: Connection) -> list[DestinationStats]:
    counts: dict[str, dict[str, int]] = {}
    stmt = select(T.c.destination, T.c.status, func.count()).group_by(T.c.destination, T.c.status)
    for dest, status, n in conn.execute(stmt):
        counts.setdefault(dest, {})[status] = int(n)
    oldest = dict(
        conn.execute(
            select(T.c.destination, func.min(T.c.created_at))
            .where(T.c.status.in_(ACTIVE))
            .group_by(T.c.destination)
        ).all()
    )
    return [DestinationStats(d, counts[d], oldest.get(d)) for d in sorted(counts)]


def overview(conn: Connection) -> list[tuple[DestinationStats, dict[str, Any]]]:
    """Each destination's counts with its breaker state, including destinations that have a
    state but no deliveries yet (a disabled one, say)."""
    by_name = {s.destination: s for s in stats(conn)}
    states = read_states(conn)
    return [
        (by_name.get(n) or DestinationStats(n, {}, None), states.get(n, ({}, {}))[1])
        for n in sorted(set(by_name) | set(states))
    ]


def next_due(conn: Connection) -> datetime | None:
    """When the earliest row at the head of its line may go (or a lease runs out)."""
    pending = (
        select(func.min(T.c.next_attempt_at))
        .where(T.c.status == "pending", _at_head())
        .scalar_subquery()
    )
    leased = select(func.min(T.c.lease_until)).where(T.c.status == "inflight").scalar_subquery()
    row = conn.execute(select(pending, leased)).one()
    found = [v for v in row if v is not None]
    value: datetime | None = min(found) if found else None
    return value
