"""The expected ledger as stored: inputs, entries, held events, flags, projections, history.

Everything is batched: the pipeline stage loads the state of every customer a StageBatch touches
in a few statements and writes it back with executemany. The full rebuild is set-based: one
aggregate over `ledger_entries` computes every projection in the database, never a Python loop
per entry.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    Table,
    delete,
    func,
    insert,
    or_,
    select,
    text,
    tuple_,
    union,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from handoff.domain.events import CanonicalEvent
from handoff.domain.ledger import (
    Entry,
    EntryKind,
    Held,
    Ledger,
    LiabilityReport,
    Program,
    Projection,
    RecordedPoints,
    StatementLine,
    VipFlag,
    fold,
    liability_report,
    statement,
)
from handoff.store.ledger_tables import (
    ledger_attribute_history,
    ledger_entries,
    ledger_flags,
    ledger_held,
    ledger_inputs,
    ledger_projections,
    ledger_recorded,
)
from handoff.store.tables import events

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
CHUNK = 500  # ids per IN (...) list


def micros(at: datetime) -> int:
    """A version from an instant: microseconds since the epoch."""
    return (at - _EPOCH) // timedelta(microseconds=1)


def _chunks(ids: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def _insert_ignore(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    if not rows:
        return
    dialect_insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    conn.execute(dialect_insert(table).on_conflict_do_nothing(), list(rows))


# --- rows <-> domain --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InputRow:
    event_id: str
    customer_id: int
    type: str
    occurred_at: datetime
    order_id: str | None


@dataclass(frozen=True, slots=True)
class StoredProjection:
    customer_id: int
    balance: int
    pending: int
    lifetime_spend: int
    tier_spend: int
    tier_points: int
    tier: str | None
    is_vip: bool
    manual_vip: bool | None
    recorded_points: int
    recorded_balance: int | None
    held: int
    version: int
    as_of: datetime
    next_change_at: datetime | None
    inputs_digest: str | None
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class HistoryRow:
    customer_id: int
    attribute: str
    value: str | None
    previous: str | None
    version: int
    effective_at: datetime
    reason: str
    cause: str


def entry_row(customer_id: int, entry: Entry, now: datetime) -> dict[str, Any]:
    return {
        "customer_id": customer_id,
        "entry_id": entry.entry_id,
        "kind": entry.kind.value,
        "points": entry.points,
        "pending": entry.pending,
        "spend": entry.spend,
        "tier_points": entry.tier_points,
        "effective_at": entry.effective_at,
        "qualifies_at": entry.qualifies_at,
        "rule": entry.rule,
        "event_id": entry.event_id,
        "order_id": entry.order_id,
        "written_at": now,
    }


def _entry(row: Any) -> Entry:
    return Entry(
        entry_id=row.entry_id,
        kind=EntryKind(row.kind),
        points=int(row.points),
        pending=bool(row.pending),
        spend=int(row.spend),
        tier_points=int(row.tier_points),
        effective_at=row.effective_at,
        qualifies_at=row.qualifies_at,
        rule=row.rule,
        event_id=row.event_id,
        order_id=row.order_id,
    )


def flag_sort_key(flag: VipFlag) -> str:
    """A string that sorts like VipFlag.order_key, so SQL can pick the latest flag."""
    at, (kind, number, text), event_id = flag.order_key
    version = f"0{number:020d}" if kind == 0 else f"1{text}"
    return f"{at.astimezone(UTC):%Y%m%dT%H%M%S%f}|{version}|{event_id}"


def _flag(row: Any) -> VipFlag:
    return VipFlag(
        event_id=row.event_id,
        source=row.source,
        value=None if row.value is None else bool(row.value),
        effective_at=row.effective_at,
        version=row.version,
    )


def _recorded(row: Any) -> RecordedPoints:
    return RecordedPoints(
        event_id=row.event_id,
        source=row.source,
        member_id=row.member_id,
        delta=int(row.delta),
        balance=row.balance,
        pending=row.pending,
        reason=row.reason,
        order_ref=row.order_ref,
        occurred_at=row.occurred_at,
    )


def _event(row: Any) -> CanonicalEvent:
    return CanonicalEvent.model_validate(
        {
            "event_id": row.event_id,
            "source": row.source,
            "source_event_id": row.source_event_id,
            "type": row.type,
            "occurred_at": row.occurred_at,
            "received_at": row.received_at,
            "customer": row.customer,
            "body": row.body,
        }
    )


# --- the live path: inputs, orphans, merges ---------------------------------------------------


def add_inputs(conn: Connection, rows: Sequence[InputRow]) -> None:
    _insert_ignore(
        conn,
        ledger_inputs,
        [
            {
                "event_id": r.event_id,
                "customer_id": r.customer_id,
                "type": r.type,
                "occurred_at": r.occurred_at,
                "order_id": r.order_id,
            }
            for r in rows
        ],
    )


def add_recorded(conn: Connection, rows: Sequence[tuple[int, RecordedPoints]]) -> None:
    _insert_ignore(
        conn,
        ledger_recorded,
        [
            {
                "event_id": r.event_id,
                "customer_id": customer_id,
                "source": r.source,
                "member_id": r.member_id,
                "delta": r.delta,
                "balance": r.balance,
                "pending": r.pending,
                "reason": r.reason,
                "order_ref": r.order_ref,
                "occurred_at": r.occurred_at,
            }
            for customer_id, r in rows
        ],
    )


def hold_unresolved(
    conn: Connection, rows: Sequence[tuple[CanonicalEvent, str | None]], now: datetime
) -> None:
    """Events the ledger needs but no customer was resolved for: kept until one is."""
    _insert_ignore(
        conn,
        ledger_held,
        [
            {
                "event_id": e.event_id,
                "customer_id": None,
                "type": str(e.type),
                "order_id": order_id,
                "occurred_at": e.occurred_at,
                "reason": "no resolved customer: waiting for identity",
                "held_at": now,
            }
            for e, order_id in rows
        ],
    )


def customers_of_orders(conn: Connection, order_ids: Iterable[str]) -> dict[str, int]:
    """The customer each known order belongs to (its events' customer in the ledger)."""
    ids = sorted(set(order_ids))
    found: dict[str, int] = {}
    for part in _chunks(ids):
        stmt = select(ledger_inputs.c.order_id, ledger_inputs.c.customer_id).where(
            ledger_inputs.c.order_id.in_(part)
        )
        for order_id, customer_id in conn.execute(stmt):
            found.setdefault(order_id, int(customer_id))
    return found


def unresolved_for_orders(conn: Connection, order_ids: Iterable[str]) -> list[InputRow]:
    """Held events without a customer whose order has now been placed with one (to adopt)."""
    ids = sorted(set(order_ids))
    rows: list[InputRow] = []
    for part in _chunks(ids):
        stmt = select(ledger_held).where(
            ledger_held.c.customer_id.is_(None), ledger_held.c.order_id.in_(part)
        )
        rows += [
            InputRow(r.event_id, -1, r.type, r.occurred_at, r.order_id) for r in conn.execute(stmt)
        ]
    return rows


def unresolved_now_mapped(conn: Connection) -> list[InputRow]:
    """Held events without a customer that identity has since mapped (events.customer_id)."""
    if "customer_id" not in events.c:
        return []
    column = events.c["customer_id"]
    stmt = (
        select(ledger_held, column.label("mapped"))
        .join(events, events.c.event_id == ledger_held.c.event_id)
        .where(ledger_held.c.customer_id.is_(None), column.is_not(None))
    )
    return [
        InputRow(r.event_id, int(r.mapped), r.type, r.occurred_at, r.order_id)
        for r in conn.execute(stmt)
    ]


def load_events(conn: Connection, event_ids: Sequence[str]) -> list[CanonicalEvent]:
    found: list[CanonicalEvent] = []
    for part in _chunks(list(event_ids)):
        found += [
            _event(r) for r in conn.execute(select(events).where(events.c.event_id.in_(part)))
        ]
    return found


def release_unresolved(conn: Connection, event_ids: Sequence[str]) -> None:
    for part in _chunks(list(event_ids)):
        conn.execute(
            delete(ledger_held).where(
                ledger_held.c.event_id.in_(part), ledger_held.c.customer_id.is_(None)
            )
        )


def move_customer(conn: Connection, absorbed: int, survivor: int) -> None:
    """A merge: the absorbed customer's inputs, flags and recorded log go to the survivor, and
    its derived rows (entries, projection) are dropped; the caller recomputes the survivor."""
    for table in (ledger_inputs, ledger_flags, ledger_recorded, ledger_held):
        conn.execute(
            update(table).where(table.c.customer_id == absorbed).values(customer_id=survivor)
        )
    for table in (ledger_entries, ledger_projections):
        conn.execute(delete(table).where(table.c.customer_id == absorbed))


def remap_from_events(conn: Connection, customer_ids: Sequence[int]) -> set[int]:
    """Follow identity's events.customer_id (once it exists) for these customers' inputs.

    Returns every customer whose inputs changed (the given ones and those events moved to)."""
    if "customer_id" not in events.c or not customer_ids:
        return set()
    column = events.c["customer_id"]
    touched: set[int] = set()
    for part in _chunks(list(customer_ids)):
        stmt = (
            select(ledger_inputs.c.event_id, ledger_inputs.c.customer_id, column.label("mapped"))
            .join(events, events.c.event_id == ledger_inputs.c.event_id)
            .where(
                or_(ledger_inputs.c.customer_id.in_(part), column.in_(part)),
                column.is_not(None),
                column != ledger_inputs.c.customer_id,
            )
        )
        moves = [(r.event_id, int(r.customer_id), int(r.mapped)) for r in conn.execute(stmt)]
        for event_id, old, new in moves:
            conn.execute(
                update(ledger_inputs)
                .where(ledger_inputs.c.event_id == event_id)
                .values(customer_id=new)
            )
            for table in (ledger_flags, ledger_recorded):
                conn.execute(
                    update(table).where(table.c.event_id == event_id).values(customer_id=new)
                )
            touched.update((old, new))
    return touched


def due_customers(conn: Connection, now: datetime, limit: int) -> list[int]:
    """Customers whose state time alone has changed by now (vesting, expiry, window exits)."""
    stmt = (
        select(ledger_projections.c.customer_id)
        .where(ledger_projections.c.next_change_at <= now)
        .order_by(ledger_projections.c.next_change_at)
        .limit(limit)
    )
    return [int(r[0]) for r in conn.execute(stmt)]


# --- loading the state of a set of customers --------------------------------------------------


@dataclass
class CustomerState:
    events: list[CanonicalEvent]
    entries: dict[str, Entry]
    recorded: list[RecordedPoints]
    projection: StoredProjection | None
    # the ledger this worker last derived, when the stored rows are still exactly its output
    # (the projection carries its inputs digest): the stage appends new events to it
    ledger: Ledger | None = None


# Canonical events never change once stored (the id is derived from the fact), so a worker keeps
# the ones it parsed: re-deriving a customer then reads only its input ids, not every body again.
_EVENTS: OrderedDict[str, CanonicalEvent] = OrderedDict()
EVENT_CACHE_SIZE = 50_000


def remember(fresh: Iterable[CanonicalEvent]) -> None:
    for event in fresh:
        _EVENTS[event.event_id] = event
        _EVENTS.move_to_end(event.event_id)
    while len(_EVENTS) > EVENT_CACHE_SIZE:
        _EVENTS.popitem(last=False)


def forget_events() -> None:
    """Empty the caches (tests that reuse event ids for different facts across databases)."""
    _EVENTS.clear()
    _DERIVED.clear()


LOCK_CLASS = 6006  # advisory lock namespace of the ledger (two-key form: class, customer)


def lock_customers(conn: Connection, customer_ids: Sequence[int]) -> None:
    """Serialise re-derivations of the same customer across workers (PostgreSQL).

    Workers claim different receipts, which can belong to one customer; without this, two
    transactions would each re-derive it from what they see and the later upsert would win with
    the other's events missing. Locks are taken in id order (no deadlock) and released at commit;
    SQLite has one writer at a time already."""
    if conn.dialect.name != "postgresql" or not customer_ids:
        return
    keys = sorted({cid % 2_147_483_647 for cid in customer_ids})
    conn.execute(
        text(
            "SELECT pg_advisory_xact_lock(:cls, k) FROM "
            "(SELECT unnest(CAST(:keys AS integer[])) AS k ORDER BY 1) AS ordered"
        ),
        {"cls": LOCK_CLASS, "keys": keys},
    )


def inputs_digest(event_ids: Iterable[str]) -> str:
    """Names the set of events a customer's entries were derived from."""
    return hashlib.sha256("\n".join(sorted(event_ids)).encode()).hexdigest()


# The ledger a worker last derived and wrote per customer, by the digest of the inputs it came
# from. When the stored projection carries the same digest, the stored entries are exactly its
# entries (entries are a function of the input set), so they need not be read back, and new
# events can be appended to it (`domain.ledger.extend`). A rolled-back or concurrent write leaves
# another digest in the projection, and the entries are read from the table and re-derived.
_DERIVED: OrderedDict[int, tuple[str, dict[str, Entry], Ledger]] = OrderedDict()
DERIVED_CACHE_SIZE = 20_000


def remember_entries(
    customer_id: int, digest: str, entries: dict[str, Entry], ledger: Ledger
) -> None:
    _DERIVED[customer_id] = (digest, entries, ledger)
    _DERIVED.move_to_end(customer_id)
    while len(_DERIVED) > DERIVED_CACHE_SIZE:
        _DERIVED.popitem(last=False)


def load_states(
    conn: Connection, customer_ids: Iterable[int], *, trust_cache: bool = True
) -> dict[int, CustomerState]:
    """Everything needed to re-derive these customers, in a handful of statements."""
    ids = sorted(set(customer_ids))
    states = {cid: CustomerState([], {}, [], None) for cid in ids}
    for part in _chunks(ids):
        owners: dict[str, int] = {
            r.event_id: int(r.customer_id)
            for r in conn.execute(
                select(ledger_inputs.c.event_id, ledger_inputs.c.customer_id).where(
                    ledger_inputs.c.customer_id.in_(part)
                )
            )
        }
        missing = [event_id for event_id in owners if event_id not in _EVENTS]
        remember(load_events(conn, missing))
        for event_id, customer_id in owners.items():
            states[customer_id].events.append(_EVENTS[event_id])
        for row in conn.execute(
            select(ledger_projections).where(ledger_projections.c.customer_id.in_(part))
        ):
            states[int(row.customer_id)].projection = StoredProjection(**row._mapping)
        unknown = []
        for customer_id in part:
            stored = states[customer_id].projection
            cached = _DERIVED.get(customer_id)
            if (
                trust_cache
                and stored is not None
                and cached is not None
                and stored.inputs_digest == cached[0]
            ):
                states[customer_id].entries = cached[1]
                states[customer_id].ledger = cached[2]
            else:
                unknown.append(customer_id)
        if unknown:
            for row in conn.execute(
                select(ledger_entries).where(ledger_entries.c.customer_id.in_(unknown))
            ):
                states[int(row.customer_id)].entries[row.entry_id] = _entry(row)
        for row in conn.execute(
            select(ledger_recorded).where(ledger_recorded.c.customer_id.in_(part))
        ):
            states[int(row.customer_id)].recorded.append(_recorded(row))
    return states


# --- writing derived state ---------------------------------------------------------------------


@dataclass
class CustomerWrite:
    customer_id: int
    retract: list[str]  # entry ids to delete
    add: list[Entry]
    held: Sequence[Held]
    flags: Sequence[VipFlag]
    projection: dict[str, Any]  # a ledger_projections row
    history: list[HistoryRow]
    may_hold: bool = True  # the customer has refunds or cancellations (held rows to replace)
    may_flag: bool = True  # the customer has CRM attribute events (flags to replace)


def write_states(conn: Connection, writes: Sequence[CustomerWrite], now: datetime) -> None:
    """Entries, held events, flags, projections and history of many customers, batched."""
    if not writes:
        return
    retracted = [(w.customer_id, e) for w in writes for e in w.retract]
    for part in _chunks(retracted):
        key = tuple_(ledger_entries.c.customer_id, ledger_entries.c.entry_id)
        conn.execute(delete(ledger_entries).where(key.in_(part)))
    added = [entry_row(w.customer_id, e, now) for w in writes for e in w.add]
    if added:
        conn.execute(insert(ledger_entries), added)
    # held events and flags derive from refunds/cancellations and CRM events only: customers
    # without any keep none, so most batches skip these deletes
    for table, ids in (
        (ledger_held, [w.customer_id for w in writes if w.may_hold]),
        (ledger_flags, [w.customer_id for w in writes if w.may_flag]),
    ):
        for part in _chunks(ids):
            conn.execute(delete(table).where(table.c.customer_id.in_(part)))
    held = [
        {
            "event_id": h.event_id,
            "customer_id": w.customer_id,
            "type": h.type,
            "order_id": h.order_id,
            "occurred_at": h.occurred_at,
            "reason": h.reason,
            "held_at": now,
        }
        for w in writes
        for h in w.held
    ]
    _insert_ignore(conn, ledger_held, held)
    flags = [
        {
            "event_id": f.event_id,
            "customer_id": w.customer_id,
            "source": f.source,
            "value": f.value,
            "effective_at": f.effective_at,
            "version": f.version,
            "sort_key": flag_sort_key(f),
        }
        for w in writes
        for f in w.flags
    ]
    _insert_ignore(conn, ledger_flags, flags)
    dialect_insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    upsert = dialect_insert(ledger_projections)
    conn.execute(
        upsert.on_conflict_do_update(
            index_elements=["customer_id"],
            set_={
                c.name: upsert.excluded[c.name]
                for c in ledger_projections.c
                if c.name != "customer_id"
            },
        ),
        [w.projection for w in writes],
    )
    history = [h for w in writes for h in w.history]
    add_history(conn, history)


def add_history(conn: Connection, rows: Sequence[HistoryRow]) -> None:
    if rows:
        conn.execute(
            insert(ledger_attribute_history),
            [
                {
                    "customer_id": h.customer_id,
                    "attribute": h.attribute,
                    "value": h.value,
                    "previous": h.previous,
                    "version": h.version,
                    "effective_at": h.effective_at,
                    "reason": h.reason[:2000],
                    "cause": h.cause[:300],
                }
                for h in rows
            ],
        )


# --- reading one customer -----------------------------------------------------------------------


def entries_of(conn: Connection, customer_id: int, as_of: datetime | None = None) -> list[Entry]:
    stmt = select(ledger_entries).where(ledger_entries.c.customer_id == customer_id)
    if as_of is not None:
        stmt = stmt.where(ledger_entries.c.effective_at <= as_of)
    return sorted((_entry(r) for r in conn.execute(stmt)), key=lambda e: e.sort_key)


def flags_of(conn: Connection, customer_id: int) -> list[VipFlag]:
    stmt = select(ledger_flags).where(ledger_flags.c.customer_id == customer_id)
    return [_flag(r) for r in conn.execute(stmt)]


def recorded_of(conn: Connection, customer_id: int) -> list[RecordedPoints]:
    stmt = select(ledger_recorded).where(ledger_recorded.c.customer_id == customer_id)
    return [_recorded(r) for r in conn.execute(stmt)]


def held_of(conn: Connection, customer_id: int | None) -> list[dict[str, Any]]:
    column = ledger_held.c.customer_id
    where = column.is_(None) if customer_id is None else column == customer_id
    stmt = select(ledger_held).where(where).order_by(ledger_held.c.occurred_at)
    return [dict(r._mapping) for r in conn.execute(stmt)]


def projection_of(conn: Connection, customer_id: int) -> StoredProjection | None:
    stmt = select(ledger_projections).where(ledger_projections.c.customer_id == customer_id)
    row = conn.execute(stmt).first()
    return None if row is None else StoredProjection(**row._mapping)


def history_of(
    conn: Connection, customer_id: int, attribute: str | None = None
) -> list[HistoryRow]:
    stmt = (
        select(ledger_attribute_history)
        .where(ledger_attribute_history.c.customer_id == customer_id)
        .order_by(ledger_attribute_history.c.version, ledger_attribute_history.c.id)
    )
    if attribute is not None:
        stmt = stmt.where(ledger_attribute_history.c.attribute == attribute)
    return [history_row(r) for r in conn.execute(stmt)]


def history_row(r: Any) -> HistoryRow:
    return HistoryRow(
        customer_id=int(r.customer_id),
        attribute=r.attribute,
        value=r.value,
        previous=r.previous,
        version=int(r.version),
        effective_at=r.effective_at,
        reason=r.reason,
        cause=r.cause,
    )


def all_customer_ids(conn: Connection) -> list[int]:
    """Every customer with anything in the ledger."""
    stmt = union(
        select(ledger_inputs.c.customer_id),
        select(ledger_recorded.c.customer_id),
        select(ledger_projections.c.customer_id),
    )
    return sorted(int(r[0]) for r in conn.execute(stmt))


def count_entries(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(ledger_entries)).scalar_one())


def entries_by_customer(
    conn: Connection, as_of: datetime, *, batch: int = 20_000
) -> Iterator[tuple[int, list[Entry]]]:
    """Stream every customer's entries up to `as_of`, one customer at a time, in id order.

    Keyset pagination over customers, so memory stays bounded whatever the ledger's size."""
    after = None
    while True:
        ids_stmt = (
            select(ledger_entries.c.customer_id)
            .distinct()
            .order_by(ledger_entries.c.customer_id)
            .limit(batch)
        )
        if after is not None:
            ids_stmt = ids_stmt.where(ledger_entries.c.customer_id > after)
        page = [int(r[0]) for r in conn.execute(ids_stmt)]
        if not page:
            return
        stmt = (
            select(ledger_entries)
            .where(
                ledger_entries.c.customer_id >= page[0],
                ledger_entries.c.customer_id <= page[-1],
                ledger_entries.c.effective_at <= as_of,
            )
            .order_by(ledger_entries.c.customer_id)
        )
        current: int | None = None
        lines: list[Entry] = []
        for row in conn.execute(stmt):
            customer_id = int(row.customer_id)
            if customer_id != current:
                if current is not None:
                    yield current, lines
                current, lines = customer_id, []
            lines.append(_entry(row))
        if current is not None:
            yield current, lines
        after = page[-1]


# --- what the CLI and the API show ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CustomerView:
    customer_id: int
    as_of: datetime
    projection: Projection
    lines: tuple[StatementLine, ...]
    held: list[dict[str, Any]]
    history: list[HistoryRow]
    stored: StoredProjection | None  # what the live pipeline last wrote


def customer_view(
    conn: Connection, program: Program, customer_id: int, as_of: datetime
) -> CustomerView | None:
    """One customer as of any instant, folded from the stored entries with the domain rules."""
    entries = entries_of(conn, customer_id, as_of)
    stored = projection_of(conn, customer_id)
    flags = flags_of(conn, customer_id)
    recorded = recorded_of(conn, customer_id)
    if not entries and stored is None and not flags and not recorded:
        return None
    held = [h for h in held_of(conn, customer_id) if h["occurred_at"] <= as_of]
    return CustomerView(
        customer_id=customer_id,
        as_of=as_of,
        projection=fold(
            program, entries, as_of=as_of, flags=flags, recorded=recorded, held=len(held)
        ),
        lines=statement(entries, as_of=as_of),
        held=held,
        history=[h for h in history_of(conn, customer_id) if h.effective_at <= as_of],
        stored=stored,
    )


def customer_count(conn: Connection) -> int:
    stmt = select(func.count(func.distinct(ledger_entries.c.customer_id)))
    return int(conn.execute(stmt).scalar_one())


def liability(
    conn: Connection,
    program: Program,
    as_of: datetime,
    *,
    progress: Callable[[int], None] | None = None,
) -> LiabilityReport:
    """The finance report over every customer's entries, streamed one customer at a time."""

    def customers() -> Iterator[list[Entry]]:
        for n, (_, lines) in enumerate(entries_by_customer(conn, as_of), start=1):
            if progress is not None and n % 1000 == 0:
                progress(1000)
            yield lines

    return liability_report(program, customers(), as_of=as_of)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def view_json(view: CustomerView, program: Program) -> dict[str, Any]:
    """A customer view as JSON: integer points and minor units, plus display amounts."""
    p = view.projection
    return {
        "customer_id": view.customer_id,
        "as_of": view.as_of.isoformat(),
        "currency": program.currency,
        "balance": p.balance,
        "pending": p.pending,
        "lifetime_spend": p.lifetime_spend,
        "tier_spend": p.tier_spend,
        "tier_points": p.tier_points,
        "tier": p.tier,
        "tier_reason": p.tier_reason,
        "is_vip": p.vip,
        "vip_reason": p.vip_reason,
        "manual_vip": p.manual_vip,
        "recorded_points": p.recorded_points,
        "recorded_balance": p.recorded_balance,
        "held": [
            {k: _iso(v) if isinstance(v, datetime) else v for k, v in h.items()} for h in view.held
        ],
        "entries": [
            {
                "entry_id": line.entry.entry_id,
                "kind": line.entry.kind.value,
                "points": line.entry.points,
                "pending": line.entry.pending,
                "spend": line.entry.spend,
                "tier_points": line.entry.tier_points,
                "effective_at": line.entry.effective_at.isoformat(),
                "qualifies_at": line.entry.qualifies_at.isoformat(),
                "rule": line.entry.rule,
                "event_id": line.entry.event_id,
                "order_id": line.entry.order_id,
                "balance_after": line.balance,
                "pending_after": line.pending,
                "spend_after": line.lifetime_spend,
            }
            for line in view.lines
        ],
        "history": [history_json(h) for h in view.history],
        "stored_version": None if view.stored is None else view.stored.version,
    }


def history_json(h: HistoryRow) -> dict[str, Any]:
    return {
        "attribute": h.attribute,
        "value": h.value,
        "previous": h.previous,
        "version": h.version,
        "effective_at": h.effective_at.isoformat(),
        "reason": h.reason,
        "cause": h.cause,
    }
