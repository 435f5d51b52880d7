"""The ledger stage: canonical events → expected ledger entries, projections and tier/VIP changes.

It runs after identity (it keys on the golden customer in `batch.customers`) and before the
delivery outbox (which stores the `AttributeChange`s it appends). Per StageBatch it loads the
state of every customer the batch touches at once and brings each one up to date with the pure
engine: by appending the new events to the ledger this worker last derived and stored
(`domain.ledger.extend`, the common case of events in time order), or by re-deriving from all of
the customer's events (`domain.ledger.rebuild`) when that cannot equal a rebuild. The entries are
a function of the *set* of a customer's events either way, so arrival order never matters. It
diffs against the stored entries and writes back in a few executemany statements.

Inputs: order events from the authoritative purchase record (sources with role `erp`; when no
source has that role, every order source), `customer.attributes.changed` carrying the program's
manual VIP attribute, and `loyalty.points.recorded` (kept in `ledger_recorded`, never mixed into
the entries). An event with no resolved customer is held, never dropped: it is adopted when an
event of the same order arrives with a customer, or when identity maps it (`events.customer_id`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Connection

from handoff import logs
from handoff.domain.changes import AttributeChange, Change
from handoff.domain.events import (
    ORDER_TYPES,
    AttributesBody,
    CanonicalEvent,
    EventType,
    OrderBody,
    PointsBody,
)
from handoff.domain.ledger import (
    TIER_ATTRIBUTE,
    VIP_ATTRIBUTE,
    Entry,
    Ledger,
    Program,
    RecordedPoints,
    extend,
    fold,
    next_change_at,
    rebuild,
)
from handoff.domain.ledger.engine import recorded_points
from handoff.hub import Hub
from handoff.pipeline.processor import StageBatch
from handoff.store import ledger as store

log = logs.get(__name__)

_REVERSALS = frozenset({EventType.ORDER_REFUNDED, EventType.ORDER_CANCELLED})
DUE_PER_BATCH = 200  # customers woken per batch because time changed their state


@dataclass
class LedgerStage:
    program: Program = field(default_factory=Program)
    # sources whose orders are the purchase record; None = every source's orders
    order_sources: frozenset[str] | None = None
    # False: re-derive every touched customer from all its events on every batch (what the stage
    # did before the append path; the bench's baseline, and a switch if the append path is doubted)
    append: bool = True
    # customers brought up to date by appending vs by re-deriving, since the stage was built
    tally: dict[str, int] = field(default_factory=lambda: {"appended": 0, "rederived": 0})

    @classmethod
    def from_hub(cls, hub: Hub) -> LedgerStage:
        erp = frozenset(n for n, s in hub.sources.items() if s.config.role == "erp")
        return cls(program=hub.settings.config.program, order_sources=erp or None)

    def wants(self, event: CanonicalEvent) -> bool:
        if event.type in ORDER_TYPES:
            return self.order_sources is None or event.source in self.order_sources
        if event.type is EventType.ATTRIBUTES_CHANGED and isinstance(event.body, AttributesBody):
            return self.program.vip_flag_attribute in event.body.attributes
        return event.type is EventType.POINTS_RECORDED

    def handle(self, conn: Connection, batch: StageBatch) -> None:
        store.remember(e for e in batch.events if self.wants(e))
        affected: set[int] = set()
        moved = {absorbed: survivor for absorbed, survivor in batch.merges if absorbed != survivor}
        for absorbed, survivor in moved.items():
            store.move_customer(conn, absorbed, survivor)
            affected.add(_final(moved, survivor) or survivor)
        inputs: list[store.InputRow] = []
        recorded: list[tuple[int, RecordedPoints]] = []
        orphans: list[CanonicalEvent] = []
        for event in batch.events:
            if not self.wants(event):
                continue
            customer_id = _final(moved, batch.customers.get(event.event_id))
            if customer_id is None:
                orphans.append(event)
                continue
            affected.add(customer_id)
            if event.type is EventType.POINTS_RECORDED:
                recorded.append((customer_id, _recorded(event)))
            else:
                inputs.append(_input(event, customer_id))
        inputs += self._place_orphans(conn, orphans, inputs, batch.now)
        affected.update(i.customer_id for i in inputs)
        store.add_inputs(conn, inputs)
        store.add_recorded(conn, recorded)
        affected.update(store.due_customers(conn, batch.now, DUE_PER_BATCH))
        batch.changes.extend(
            recompute(
                conn,
                self.program,
                affected,
                batch.now,
                "ledger",
                append=self.append,
                tally=self.tally,
            )
        )

    def _place_orphans(
        self,
        conn: Connection,
        orphans: Sequence[CanonicalEvent],
        inputs: Sequence[store.InputRow],
        now: datetime,
    ) -> list[store.InputRow]:
        """Orphans of a known order join its customer; held orphans of this batch's orders are
        adopted; identity's later mappings are followed; the rest are held."""
        batch_orders = {i.order_id: i.customer_id for i in inputs if i.order_id}
        wanted = [_order_id(e) for e in orphans]
        known = store.customers_of_orders(conn, [o for o in wanted if o and o not in batch_orders])
        known.update(batch_orders)
        placed: list[store.InputRow] = []
        held: list[tuple[CanonicalEvent, str | None]] = []
        recorded: list[tuple[int, RecordedPoints]] = []
        for event, order_id in zip(orphans, wanted, strict=True):
            customer_id = known.get(order_id) if order_id else None
            if customer_id is None:
                held.append((event, order_id))
            elif event.type is EventType.POINTS_RECORDED:
                recorded.append((customer_id, _recorded(event)))
            else:
                placed.append(_input(event, customer_id))
        store.hold_unresolved(conn, held, now)
        store.add_recorded(conn, recorded)
        adopted = [
            store.InputRow(r.event_id, known[r.order_id], r.type, r.occurred_at, r.order_id)
            for r in store.unresolved_for_orders(conn, batch_orders)
            if r.order_id is not None and r.order_id in known
        ]
        adopted += store.unresolved_now_mapped(conn)
        if held:
            log.info("ledger events held without a customer", count=len(held))
        return placed + adopt(conn, adopted)


def _final(moved: dict[int, int], customer_id: int | None) -> int | None:
    """Where a customer ended up after this batch's merges (a chain a→b→c ends at c)."""
    seen: set[int] = set()
    while customer_id is not None and customer_id in moved and customer_id not in seen:
        seen.add(customer_id)
        customer_id = moved[customer_id]
    return customer_id


def adopt(conn: Connection, rows: Sequence[store.InputRow]) -> list[store.InputRow]:
    """Release held events that now have a customer: the platform's recorded points go to
    `ledger_recorded`; the others are returned as inputs for the caller to store."""
    store.release_unresolved(conn, [r.event_id for r in rows])
    points = {r.event_id: r.customer_id for r in rows if r.type == EventType.POINTS_RECORDED}
    if points:
        found = store.load_events(conn, list(points))
        store.add_recorded(conn, [(points[e.event_id], _recorded(e)) for e in found])
    return [r for r in rows if r.event_id not in points]


def _order_id(event: CanonicalEvent) -> str | None:
    return event.body.order_id if isinstance(event.body, OrderBody) else None


def _input(event: CanonicalEvent, customer_id: int) -> store.InputRow:
    return store.InputRow(
        event.event_id, customer_id, str(event.type), event.occurred_at, _order_id(event)
    )


def _recorded(event: CanonicalEvent) -> RecordedPoints:
    assert isinstance(event.body, PointsBody)
    return recorded_points(event, event.body)


def _text(value: str | bool | None) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def recompute(
    conn: Connection,
    program: Program,
    customer_ids: Iterable[int],
    now: datetime,
    cause: str,
    *,
    trust_cache: bool = True,
    append: bool = True,
    tally: dict[str, int] | None = None,
) -> list[Change]:
    """Re-derive these customers from their stored inputs and write what changed.

    Returns the tier/VIP `AttributeChange`s. A customer's first projection emits both attributes,
    so every destination starts from a known value; afterwards only changed values are emitted,
    with a version strictly above the previous one for that customer."""
    ids = sorted(set(customer_ids))
    if not ids:
        return []
    store.lock_customers(conn, ids)
    states = store.load_states(conn, ids, trust_cache=trust_cache)
    derivations: list[tuple[int, str, dict[str, Entry], Ledger]] = []
    writes: list[store.CustomerWrite] = []
    changes: list[Change] = []
    appended = 0
    for customer_id in ids:
        state = states[customer_id]
        # the append path when this worker's last derivation is what is stored and the new events
        # come after it; otherwise (out of order, held, flags, another worker) a full re-derivation
        ledger = None
        before = state.ledger
        if (
            append
            and before is not None
            and (before.program is program or before.program == program)
        ):
            ledger = extend(before, state.events, now=now)
        if ledger is None:
            ledger = rebuild(program, state.events, now=now)
        else:
            appended += 1
        derived: dict[str, Entry] = {e.entry_id: e for e in (*ledger.entries, *ledger.scheduled)}
        digest = store.inputs_digest(e.event_id for e in state.events)
        derivations.append((customer_id, digest, derived, ledger))
        retract = [k for k, e in state.entries.items() if _differs(derived.get(k), e)]
        add = [e for k, e in derived.items() if _differs(state.entries.get(k), e)]
        held = list(ledger.held)
        # what is stored is `before`'s output (digest checked), so unchanged rows need no rewrite
        same_held = before is not None and before.held == ledger.held
        same_flags = before is not None and before.flags == ledger.flags
        projection = fold(
            program,
            derived.values(),
            as_of=now,
            flags=ledger.flags,
            recorded=state.recorded,
            held=sum(1 for h in held if h.occurred_at <= now),
        )
        old = state.projection
        emitted: list[tuple[str, str | bool | None, str | bool | None, str]] = []
        if old is None or old.tier != projection.tier:
            previous = None if old is None else old.tier
            emitted.append((TIER_ATTRIBUTE, projection.tier, previous, projection.tier_reason))
        if old is None or old.is_vip != projection.vip:
            previous_vip = None if old is None else old.is_vip
            emitted.append((VIP_ATTRIBUTE, projection.vip, previous_vip, projection.vip_reason))
        version = store.micros(now)
        if old is not None:
            version = max(old.version + 1, version) if emitted else old.version
        history = [
            store.HistoryRow(customer_id, name, _text(value), _text(prev), version, now, why, cause)
            for name, value, prev, why in emitted
        ]
        changes += [
            AttributeChange(
                customer_id=customer_id,
                attribute=name,
                value=value,
                version=version,
                cause=f"{cause}: {why}"[:300],
                at=now,
            )
            for name, value, _prev, why in emitted
        ]
        wake = next_change_at(ledger, after=now)
        writes.append(
            store.CustomerWrite(
                customer_id=customer_id,
                retract=retract,
                add=add,
                held=[] if same_held else held,
                flags=() if same_flags else ledger.flags,
                projection={
                    "customer_id": customer_id,
                    "balance": projection.balance,
                    "pending": projection.pending,
                    "lifetime_spend": projection.lifetime_spend,
                    "tier_spend": projection.tier_spend,
                    "tier_points": projection.tier_points,
                    "tier": projection.tier,
                    "is_vip": projection.vip,
                    "manual_vip": projection.manual_vip,
                    "recorded_points": projection.recorded_points,
                    "recorded_balance": projection.recorded_balance,
                    "held": projection.held,
                    "version": version,
                    "as_of": now,
                    "next_change_at": wake,
                    "inputs_digest": digest,
                    "updated_at": now,
                },
                history=history,
                # held rows and flags are rewritten only when they may have changed
                may_hold=not same_held and any(e.type in _REVERSALS for e in state.events),
                may_flag=not same_flags
                and any(e.type is EventType.ATTRIBUTES_CHANGED for e in state.events),
            )
        )
    store.write_states(conn, writes, now)
    for customer_id, digest, derived, ledger in derivations:
        store.remember_entries(customer_id, digest, derived, ledger)
    if tally is not None:
        tally["appended"] = tally.get("appended", 0) + appended
        tally["rederived"] = tally.get("rederived", 0) + len(ids) - appended
    return changes


def _differs(stored: Entry | None, derived: Entry) -> bool:
    """An appended ledger reuses the line objects it had: identity first, fields if not."""
    return stored is not derived and stored != derived


def changes_from_history(rows: Iterable[store.HistoryRow]) -> list[Change]:
    """Tier/VIP history rows (e.g. those a set-based rebuild wrote) as outbound changes."""
    changes: list[Change] = []
    for row in rows:
        value: str | bool | None = row.value
        if row.attribute == VIP_ATTRIBUTE:
            value = row.value == "true"
        changes.append(
            AttributeChange(
                customer_id=row.customer_id,
                attribute=row.attribute,
                value=value,
                version=row.version,
                cause=f"{row.cause}: {row.reason}"[:300],
                at=row.effective_at,
            )
        )
    return changes


def refresh_customers(
    conn: Connection, program: Program, customer_ids: Iterable[int], now: datetime
) -> list[Change]:
    """Recompute these customers' entries and projections from the canonical events now mapped
    to them, and return the resulting tier/VIP changes (identity's merge and unmerge).

    Follows identity's `events.customer_id` when that column exists (an unmerge moves events
    between customers; the customers they move to are recomputed too) and adopts held events
    identity has since resolved. `program` is the hub's (`hub.settings.config.program`, what
    `LedgerStage.from_hub` uses): the caller passes it, so no module state decides the rules."""
    ids = sorted(set(customer_ids))
    touched = set(ids) | store.remap_from_events(conn, ids)
    adopted = store.unresolved_now_mapped(conn)
    touched.update(r.customer_id for r in adopted)
    store.add_inputs(conn, adopt(conn, adopted))
    return recompute(conn, program, touched, now, "ledger refresh", trust_cache=False)
