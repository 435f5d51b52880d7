"""The ledger engine: a customer's canonical events → ledger entries, deterministically.

Design: the entries are a pure function of the *set* of a customer's events (deduplicated by
event id) and the program. They are derived by replaying the events in effective-time order, never
in arrival order, so the result is the same whether events arrive live, shuffled or all at once for
a rebuild. `apply` adds one event; it returns the entries that appeared and, rarely, the ones a
late event earlier in time made obsolete (`retracted`), so a store can keep its table equal to a
rebuild.

The append path (`extend`): a ledger keeps where its replay stopped (a `_Cursor`: the replay
state after the last event-driven action, and the vesting still ahead of it). A new event whose
actions all sort after that point, and which changes none of its order's earlier actions or held
events, is replayed from there instead of from the start. That is exactly the tail of a full
replay, so the result equals `rebuild`; any other event (out of order, a reversal that releases or
rewrites history, a held one, a CRM flag) makes `extend` return None and the caller rebuilds.

Synthetic entries (vesting, expiry) come from the passage of time. They are materialised only up
to the ledger's `horizon` (the caller's "now"); later ones wait in `scheduled` until `advance`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from handoff.domain.events import (
    ORDER_TYPES,
    AttributesBody,
    CanonicalEvent,
    EventType,
    OrderBody,
    PointsBody,
)
from handoff.domain.ledger.entries import (
    KIND_RANK,
    Adjustment,
    AttributeChange,
    Entry,
    EntryKind,
    Held,
    Note,
    RecordedPoints,
    VipFlag,
)
from handoff.domain.ledger.program import Program
from handoff.domain.ledger.projection import Projection, attribute_changes, project
from handoff.domain.ledger.rules import (
    order_basis,
    points_for,
    rate_at,
    refund_amount,
    refund_reversal,
)
from handoff.domain.money import from_minor

SYNTHETIC = frozenset({EntryKind.VEST, EntryKind.EXPIRE})


@dataclass(frozen=True, slots=True)
class Ledger:
    """One customer's expected loyalty ledger under one program, as of `horizon`."""

    program: Program
    horizon: datetime
    events: tuple[CanonicalEvent, ...]
    adjustments: tuple[Adjustment, ...]
    entries: tuple[Entry, ...]  # sorted by Entry.sort_key
    scheduled: tuple[Entry, ...]  # vesting and expiry after the horizon, as things stand
    held: tuple[Held, ...]
    notes: tuple[Note, ...]
    flags: tuple[VipFlag, ...]
    recorded: tuple[RecordedPoints, ...]  # the platform's own log, never mixed into entries
    # where the replay stopped, for `extend`; not part of the ledger's value
    cursor: _Cursor | None = field(default=None, compare=False, repr=False)

    def has(self, event_id: str) -> bool:
        if self.cursor is not None:
            return event_id in self.cursor.event_ids
        return any(event.event_id == event_id for event in self.events)


@dataclass(frozen=True, slots=True)
class Applied:
    """The outcome of one apply/advance: the new ledger and what a store and outbox need."""

    ledger: Ledger
    added: tuple[Entry, ...]
    retracted: tuple[Entry, ...]
    changes: tuple[AttributeChange, ...]
    duplicate: bool = False


# --- public API -------------------------------------------------------------------------------


def rebuild(
    program: Program,
    events: Iterable[CanonicalEvent],
    *,
    now: datetime,
    adjustments: Iterable[Adjustment] = (),
) -> Ledger:
    """Derive the whole ledger from a customer's events (any order, duplicates allowed)."""
    unique_events = _unique_events(events)
    unique_adjustments = _unique_adjustments(adjustments)
    derived = _derive(program, unique_events, unique_adjustments)
    return _ledger(program, now, unique_events, unique_adjustments, derived)


def extend(ledger: Ledger, events: Iterable[CanonicalEvent], *, now: datetime) -> Ledger | None:
    """The ledger of `events` (all of the customer's events: the ledger's and new ones) by
    appending the new ones to where the replay stopped, or None when that would not equal
    `rebuild(program, events, now=now, adjustments=ledger.adjustments)`.

    It applies when every new event is an order event whose actions sort after every
    event-driven action replayed so far and leave its order's earlier actions and held events as
    they were: the common case of events arriving roughly in time order. It returns None for an
    event earlier than the replay, a reversal that needs history (one that was held, a second
    cancellation, a refund id seen before), an event that would be held, a CRM flag or the
    platform's log, and when one of the ledger's events is missing from `events`."""
    cursor = ledger.cursor
    if cursor is None:
        return None
    given: dict[str, CanonicalEvent] = {}
    for event in events:
        given.setdefault(event.event_id, event)
    if len(given) < len(cursor.event_ids) or not cursor.event_ids <= given.keys():
        return None
    fresh = sorted((e for k, e in given.items() if k not in cursor.event_ids), key=_key)
    if not fresh:
        return _ledger(ledger.program, now, ledger.events, ledger.adjustments, cursor.derived())
    program = ledger.program
    orders = dict(cursor.orders)
    order_held = dict(cursor.order_held)
    order_notes = dict(cursor.order_notes)
    replay = cursor.replay.copy()
    owned: set[str] = set()
    tail = list(cursor.tail)
    frontier = cursor.frontier
    for event in fresh:
        body = event.body
        if event.type not in ORDER_TYPES or not isinstance(body, OrderBody):
            return None
        order_id = body.order_id
        before = orders.get(order_id, ())
        held_before: list[Held] = []
        old = _order_actions(program, order_id, list(before), held_before, [])
        held_after: list[Held] = []
        notes: list[Note] = []
        new = _order_actions(program, order_id, [*before, event], held_after, notes)
        if held_after != held_before:
            return None
        kept = {_identity(a) for a in old}
        if not kept <= {_identity(a) for a in new}:
            return None
        extra = [a for a in new if _identity(a) not in kept]
        real = [_order(a) for a in extra if a.kind != "vest"]
        if real and frontier is not None and min(real) <= frontier:
            return None
        orders[order_id] = (*before, event)
        order_notes[order_id] = tuple(notes)
        if not real:
            continue  # a duplicate trigger, a placement: a note at most, no line
        frontier = max(real)
        queue = sorted((*tail, *extra), key=_order)
        tail = [a for a in queue if _order(a) > frontier]
        for action in queue:
            if _order(action) <= frontier:
                replay.own(action.order_id, owned)
                replay.step(action)
    unique_events = tuple(sorted((*ledger.events, *fresh), key=lambda e: e.event_id))
    after = _Cursor(
        event_ids=cursor.event_ids | {e.event_id for e in fresh},
        orders=orders,
        order_held=order_held,
        order_notes=order_notes,
        flag_notes=cursor.flag_notes,
        flags=cursor.flags,
        recorded=cursor.recorded,
        replay=replay,
        frontier=frontier,
        tail=tuple(tail),
    )
    return _ledger(program, now, unique_events, ledger.adjustments, after.derived())


def _ledger(
    program: Program,
    now: datetime,
    events: tuple[CanonicalEvent, ...],
    adjustments: tuple[Adjustment, ...],
    derived: _Derived,
) -> Ledger:
    due = tuple(e for e in derived.entries if e.kind not in SYNTHETIC or e.effective_at <= now)
    later = tuple(e for e in derived.entries if e.kind in SYNTHETIC and e.effective_at > now)
    return Ledger(
        program=program,
        horizon=now,
        events=events,
        adjustments=adjustments,
        entries=due,
        scheduled=later,
        held=derived.held,
        notes=derived.notes,
        flags=derived.flags,
        recorded=derived.recorded,
        cursor=derived.cursor,
    )


def empty(program: Program, *, now: datetime) -> Ledger:
    return rebuild(program, (), now=now)


def apply(ledger: Ledger, event: CanonicalEvent, *, now: datetime) -> Applied:
    """Add one event. Applying an event already known changes nothing (idempotent by event id)."""
    if ledger.has(event.event_id):
        return Applied(ledger, (), (), (), duplicate=True)
    horizon = max(now, ledger.horizon)
    events = (*ledger.events, event)
    after = extend(ledger, events, now=horizon) or rebuild(
        ledger.program, events, now=horizon, adjustments=ledger.adjustments
    )
    return _outcome(ledger, after)


def apply_adjustment(ledger: Ledger, adjustment: Adjustment, *, now: datetime) -> Applied:
    """Add a redemption or an operator adjustment; idempotent by adjustment id."""
    if any(a.adjustment_id == adjustment.adjustment_id for a in ledger.adjustments):
        return Applied(ledger, (), (), (), duplicate=True)
    after = rebuild(
        ledger.program,
        ledger.events,
        now=max(now, ledger.horizon),
        adjustments=(*ledger.adjustments, adjustment),
    )
    return _outcome(ledger, after)


def advance(ledger: Ledger, *, now: datetime) -> Applied:
    """Let time pass: vesting and expiry that fell due become entries; tier windows move."""
    if now <= ledger.horizon:
        return Applied(ledger, (), (), ())
    due = tuple(e for e in ledger.scheduled if e.effective_at <= now)
    after = replace(
        ledger,
        horizon=now,
        entries=tuple(sorted((*ledger.entries, *due), key=lambda e: e.sort_key)),
        scheduled=tuple(e for e in ledger.scheduled if e.effective_at > now),
    )
    return _outcome(ledger, after)


def diff_entries(
    before: Sequence[Entry], after: Sequence[Entry]
) -> tuple[tuple[Entry, ...], tuple[Entry, ...]]:
    """(added, retracted): a changed line shows as its old version retracted and new one added."""
    old = set(before)
    new = set(after)
    return (
        tuple(e for e in after if e not in old),
        tuple(e for e in before if e not in new),
    )


def _outcome(before: Ledger, after: Ledger) -> Applied:
    added, retracted = diff_entries(before.entries, after.entries)
    previous: Projection | None = None
    if before.events or before.adjustments:
        previous = project(before, as_of=before.horizon)
    changes = attribute_changes(previous, project(after, as_of=after.horizon))
    return Applied(after, added, retracted, changes)


# --- derivation -------------------------------------------------------------------------------


def _unique_events(events: Iterable[CanonicalEvent]) -> tuple[CanonicalEvent, ...]:
    by_id: dict[str, CanonicalEvent] = {}
    for event in events:
        known = by_id.get(event.event_id)
        # The same id should mean the same fact; if not, keep one deterministically.
        if known is None or event.model_dump_json() < known.model_dump_json():
            by_id[event.event_id] = event
    return tuple(by_id[key] for key in sorted(by_id))


def _unique_adjustments(adjustments: Iterable[Adjustment]) -> tuple[Adjustment, ...]:
    by_id: dict[str, Adjustment] = {}
    for adjustment in adjustments:
        known = by_id.get(adjustment.adjustment_id)
        if known is None or repr(adjustment) < repr(known):
            by_id[adjustment.adjustment_id] = adjustment
    return tuple(by_id[key] for key in sorted(by_id))


@dataclass(frozen=True, slots=True)
class _Derived:
    entries: tuple[Entry, ...]
    held: tuple[Held, ...]
    notes: tuple[Note, ...]
    flags: tuple[VipFlag, ...]
    recorded: tuple[RecordedPoints, ...]
    cursor: _Cursor | None = None


@dataclass(frozen=True, slots=True)
class _Action:
    at: datetime
    rank: int
    key: str  # the id of the entry it produces; also the tiebreak at equal instants
    kind: str  # earn, vest, refund, cancel, adjustment
    order_id: str | None = None
    event: CanonicalEvent | None = None
    adjustment: Adjustment | None = None


@dataclass(slots=True)
class _Order:
    """Running state of one order while the events are replayed."""

    order_id: str
    earn_event_id: str
    earned_at: datetime
    qualifies_at: datetime
    vest_at: datetime | None
    earning: int
    merchandise: int
    points: int = 0
    spend: int = 0
    vested: bool = True
    pending_points: int = 0
    pending_spend: int = 0
    reversed_points: int = 0
    reversed_spend: int = 0
    refunded: int = 0
    cancelled: bool = False

    def clone(self) -> _Order:
        return _Order(
            self.order_id,
            self.earn_event_id,
            self.earned_at,
            self.qualifies_at,
            self.vest_at,
            self.earning,
            self.merchandise,
            self.points,
            self.spend,
            self.vested,
            self.pending_points,
            self.pending_spend,
            self.reversed_points,
            self.reversed_spend,
            self.refunded,
            self.cancelled,
        )


def _key(event: CanonicalEvent) -> tuple[datetime, str]:
    return (event.occurred_at, event.event_id)


def _order(action: _Action) -> tuple[datetime, int, str]:
    """The replay order of actions (and of the entries they produce)."""
    return (action.at, action.rank, action.key)


def _identity(action: _Action) -> tuple[datetime, int, str, str, str | None]:
    event_id = None if action.event is None else action.event.event_id
    return (action.at, action.rank, action.key, action.kind, event_id)


@dataclass(frozen=True, slots=True)
class _Cursor:
    """Where a ledger's replay stopped: the state after the last event-driven action
    (`frontier`), and the vesting actions after it (`tail`), with what `extend` needs to check
    that a new event leaves everything before the frontier as it was. Never mutated."""

    event_ids: frozenset[str]
    orders: dict[str, tuple[CanonicalEvent, ...]]  # order events by order id
    order_held: dict[str, tuple[Held, ...]]
    order_notes: dict[str, tuple[Note, ...]]
    flag_notes: tuple[Note, ...]
    flags: tuple[VipFlag, ...]
    recorded: tuple[RecordedPoints, ...]
    replay: _Replay
    frontier: tuple[datetime, int, str] | None
    tail: tuple[_Action, ...]

    def derived(self) -> _Derived:
        """Everything a full replay gives: the lines so far, then the tail replayed on a fork."""
        ahead = self.replay.fork(self.tail)
        for action in self.tail:
            ahead.step(action)
        ahead.finish()
        notes = [*self.flag_notes]
        held: list[Held] = []
        for order_id in sorted(self.orders):
            notes.extend(self.order_notes.get(order_id, ()))
            held.extend(self.order_held.get(order_id, ()))
        return _Derived(
            entries=tuple(sorted((*self.replay.entries, *ahead.entries), key=lambda e: e.sort_key)),
            held=tuple(sorted(held, key=lambda h: (h.occurred_at, h.event_id))),
            notes=tuple(notes),
            flags=self.flags,
            recorded=self.recorded,
            cursor=self,
        )


def _stamp(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%SZ")


def _vip_value(raw: object) -> tuple[bool, bool | None]:
    """(understood, value) for a CRM flag: booleans, None, and the usual strings."""
    if raw is None or isinstance(raw, bool):
        return True, raw
    if isinstance(raw, str):
        text = raw.strip().lower()
        if text in {"true", "yes", "1", "y", "vip"}:
            return True, True
        if text in {"false", "no", "0", "n", ""}:
            return True, False
    if isinstance(raw, int):
        return raw in (0, 1), bool(raw)
    return False, None


def _derive(
    program: Program,
    events: Sequence[CanonicalEvent],
    adjustments: Sequence[Adjustment],
) -> _Derived:
    orders: dict[str, list[CanonicalEvent]] = defaultdict(list)
    flag_notes: list[Note] = []
    flags: list[VipFlag] = []
    recorded: list[RecordedPoints] = []
    for event in events:
        body = event.body
        if event.type in ORDER_TYPES and isinstance(body, OrderBody):
            orders[body.order_id].append(event)
        elif event.type is EventType.ATTRIBUTES_CHANGED and isinstance(body, AttributesBody):
            flag = _flag(program, event, body, flag_notes)
            if flag is not None:
                flags.append(flag)
        elif event.type is EventType.POINTS_RECORDED and isinstance(body, PointsBody):
            recorded.append(recorded_points(event, body))

    actions: list[_Action] = []
    order_held: dict[str, tuple[Held, ...]] = {}
    order_notes: dict[str, tuple[Note, ...]] = {}
    for order_id in sorted(orders):
        held: list[Held] = []
        notes: list[Note] = []
        actions.extend(_order_actions(program, order_id, orders[order_id], held, notes))
        if held:
            order_held[order_id] = tuple(held)
        if notes:
            order_notes[order_id] = tuple(notes)
    for adjustment in adjustments:
        actions.append(
            _Action(
                at=adjustment.at,
                rank=KIND_RANK[adjustment.kind],
                key=f"{adjustment.kind}:{adjustment.adjustment_id}",
                kind="adjustment",
                adjustment=adjustment,
            )
        )
    actions.sort(key=_order)
    real = [_order(a) for a in actions if a.kind != "vest"]
    frontier = real[-1] if real else None
    replay = _Replay(program)
    tail: list[_Action] = []
    for action in actions:
        if frontier is not None and _order(action) <= frontier:
            replay.step(action)
        else:
            tail.append(action)
    cursor = _Cursor(
        event_ids=frozenset(e.event_id for e in events),
        orders={order_id: tuple(found) for order_id, found in orders.items()},
        order_held=order_held,
        order_notes=order_notes,
        flag_notes=tuple(flag_notes),
        flags=tuple(sorted(flags, key=lambda f: f.order_key)),
        recorded=tuple(sorted(recorded, key=lambda r: (r.occurred_at, r.event_id))),
        replay=replay,
        frontier=frontier,
        tail=tuple(tail),
    )
    return cursor.derived()


def recorded_points(event: CanonicalEvent, body: PointsBody) -> RecordedPoints:
    """The loyalty platform's own log line, kept beside the entries (never one of them)."""
    return RecordedPoints(
        event_id=event.event_id,
        source=event.source,
        member_id=body.member_id,
        delta=body.delta,
        balance=body.balance,
        pending=body.pending,
        reason=body.reason,
        order_ref=body.order_ref,
        occurred_at=event.occurred_at,
    )


def _flag(
    program: Program, event: CanonicalEvent, body: AttributesBody, notes: list[Note]
) -> VipFlag | None:
    name = program.vip_flag_attribute
    if name not in body.attributes:
        return None
    if program.vip_flag_sources and event.source not in program.vip_flag_sources:
        notes.append(
            Note(event.event_id, None, f"{name} from {event.source} ignored: not a VIP source")
        )
        return None
    understood, value = _vip_value(body.attributes[name])
    if not understood:
        raw = body.attributes[name]
        notes.append(Note(event.event_id, None, f"{name}={raw!r} is not a yes/no value; ignored"))
        return None
    return VipFlag(
        event_id=event.event_id,
        source=event.source,
        value=value,
        effective_at=body.updated_at or event.occurred_at,
        version=body.version,
    )


def _order_actions(
    program: Program,
    order_id: str,
    events: list[CanonicalEvent],
    held: list[Held],
    notes: list[Note],
) -> list[_Action]:
    """What one order contributes: earn, vest, reversals — or holds and notes when it can't."""
    trigger = EventType(program.trigger_event)
    triggers = sorted((e for e in events if e.type is trigger), key=_key)
    cancels = sorted((e for e in events if e.type is EventType.ORDER_CANCELLED), key=_key)
    refunds: list[CanonicalEvent] = []
    seen_refunds: dict[str, str] = {}
    for event in sorted((e for e in events if e.type is EventType.ORDER_REFUNDED), key=_key):
        assert isinstance(event.body, OrderBody)
        refund_id = event.body.refund_id or event.event_id
        if refund_id in seen_refunds:
            notes.append(
                Note(
                    event.event_id,
                    order_id,
                    f"refund {refund_id} already applied from "
                    f"{seen_refunds[refund_id]}; not reversed twice",
                )
            )
            continue
        seen_refunds[refund_id] = event.event_id
        refunds.append(event)
    for duplicate in triggers[1:] + cancels[1:]:
        notes.append(
            Note(duplicate.event_id, order_id, f"{duplicate.type} seen again; the earliest counts")
        )

    earn = triggers[0] if triggers else None
    cancel = cancels[0] if cancels else None
    if earn is None:
        known = any(
            e.type not in (EventType.ORDER_CANCELLED, EventType.ORDER_REFUNDED) for e in events
        )
        for event in ([cancel] if cancel else []) + refunds:
            if event.type is EventType.ORDER_CANCELLED and known:
                notes.append(
                    Note(
                        event.event_id,
                        order_id,
                        f"cancelled before {trigger}: the order is void and earns nothing",
                    )
                )
                continue
            held.append(
                Held(
                    event_id=event.event_id,
                    order_id=order_id,
                    type=str(event.type),
                    occurred_at=event.occurred_at,
                    reason=f"waiting for {trigger} of order {order_id}; applied once it earns",
                )
            )
        return []
    if cancel is not None and cancel.occurred_at < earn.occurred_at:
        notes.append(
            Note(
                cancel.event_id,
                order_id,
                f"cancelled at {_stamp(cancel.occurred_at)}, before "
                f"{trigger} at {_stamp(earn.occurred_at)}: the order is void and earns nothing",
            )
        )
        notes.extend(
            Note(e.event_id, order_id, "the order is void: nothing to reverse") for e in refunds
        )
        return []

    actions = [
        _Action(
            earn.occurred_at,
            KIND_RANK[EntryKind.EARN],
            f"earn:{earn.event_id}",
            "earn",
            order_id,
            earn,
        )
    ]
    if program.pending_days > 0:
        vest_at = earn.occurred_at + timedelta(days=program.pending_days)
        actions.append(
            _Action(
                vest_at, KIND_RANK[EntryKind.VEST], f"vest:{earn.event_id}", "vest", order_id, earn
            )
        )
    rank = KIND_RANK[EntryKind.REVERSE]
    for refund in refunds:
        at = max(refund.occurred_at, earn.occurred_at)  # held until the order earns
        actions.append(_Action(at, rank, f"reverse:{refund.event_id}", "refund", order_id, refund))
    if cancel is not None:
        actions.append(
            _Action(
                cancel.occurred_at, rank, f"reverse:{cancel.event_id}", "cancel", order_id, cancel
            )
        )
    return actions


@dataclass(slots=True)
class _Replay:
    """Replays the actions in effective-time order, tracking balance, orders and inactivity."""

    program: Program
    available: int = 0
    deadline: datetime | None = None
    last_activity: datetime | None = None
    orders: dict[str, _Order] = field(default_factory=dict)
    entries: list[Entry] = field(default_factory=list)

    def step(self, action: _Action) -> None:
        """Replay one action (and an expiry that fell due before it)."""
        if self.deadline is not None and self.deadline < action.at:
            self._expire(self.deadline)
        if action.kind == "earn":
            self._earn(action)
        elif action.kind == "vest":
            self._vest(action)
        elif action.kind in ("refund", "cancel"):
            self._reverse(action)
        else:
            self._adjust(action)

    def finish(self) -> None:
        """After the last action: the expiry still ahead, if the program expires points."""
        if self.deadline is not None:
            self._expire(self.deadline)

    def copy(self) -> _Replay:
        """A copy to continue from. Orders are shared until an action touches one (`own`)."""
        return _Replay(
            program=self.program,
            available=self.available,
            deadline=self.deadline,
            last_activity=self.last_activity,
            orders=dict(self.orders),
            entries=list(self.entries),
        )

    def own(self, order_id: str | None, owned: set[str]) -> None:
        """Clone an order shared with the state this copy came from before mutating it."""
        if order_id is not None and order_id not in owned and order_id in self.orders:
            self.orders[order_id] = self.orders[order_id].clone()
            owned.add(order_id)

    def fork(self, actions: Sequence[_Action]) -> _Replay:
        """A copy with no lines, to replay `actions` ahead without touching this state."""
        touched = {a.order_id for a in actions if a.order_id is not None}
        return _Replay(
            program=self.program,
            available=self.available,
            deadline=self.deadline,
            last_activity=self.last_activity,
            orders={k: self.orders[k].clone() for k in touched if k in self.orders},
        )

    # -- helpers ---------------------------------------------------------------------------

    def _money(self, minor: int) -> str:
        return from_minor(minor, self.program.currency)

    def _activity(self, at: datetime) -> None:
        if self.program.expiry == "inactivity":
            self.last_activity = at
            self.deadline = at + timedelta(days=self.program.expiry_days)

    def _debit(self, wanted: int) -> tuple[int, str]:
        """Take `wanted` (≥ 0) from the available balance, honouring the floor at zero."""
        if wanted <= 0 or self.program.negative_balance == "allow" or wanted <= self.available:
            self.available -= wanted
            return wanted, ""
        applied = max(self.available, 0)
        self.available -= applied
        return applied, (
            f"; limited to {applied} by the floor at zero (balance {applied}, wanted {wanted})"
        )

    # -- actions ---------------------------------------------------------------------------

    def _earn(self, action: _Action) -> None:
        program = self.program
        event = action.event
        assert event is not None and isinstance(event.body, OrderBody)
        body = event.body
        at = event.occurred_at
        vest_at = at + timedelta(days=program.pending_days) if program.pending_days else None
        basis = order_basis(program, body)
        order = _Order(
            order_id=body.order_id,
            earn_event_id=event.event_id,
            earned_at=at,
            qualifies_at=vest_at or at,
            vest_at=vest_at,
            earning=basis.earning,
            merchandise=basis.merchandise,
        )
        self.orders[body.order_id] = order
        head = f"earn on {event.type} of {body.order_id}"
        if body.currency != program.currency:
            rule = f"{head}: order in {body.currency}, program in {program.currency}; earns nothing"
            order.earning = order.merchandise = 0
        elif program.earn_channels is not None and body.channel not in program.earn_channels:
            order.points, order.spend = 0, basis.spend
            order.earning = 0  # nothing to take back at the current rate either
            allowed = ", ".join(program.earn_channels)
            rule = f"{head}: channel {body.channel!r} does not earn (earn_channels: {allowed})"
        else:
            order.points = points_for(program, basis.earning, at)
            order.spend = basis.spend
            rate = rate_at(program, at)
            total = "" if " + " not in basis.explanation else f" = {self._money(basis.earning)}"
            rule = (
                f"{head}: basis {basis.explanation}{total} x {rate} point(s) per 1.00 "
                f"= {order.points} (rounded {program.rounding}, per order)"
            )
        pending = vest_at is not None
        if pending:
            assert vest_at is not None
            order.vested = False
            order.pending_points, order.pending_spend = order.points, order.spend
            rule += f"; pending until {_stamp(vest_at)} (pending_days={program.pending_days})"
        else:
            self.available += order.points
        self.entries.append(
            Entry(
                entry_id=action.key,
                kind=EntryKind.EARN,
                points=order.points,
                pending=pending,
                spend=order.spend,
                tier_points=0 if pending else order.points,
                effective_at=at,
                qualifies_at=order.qualifies_at,
                rule=rule,
                event_id=event.event_id,
                order_id=body.order_id,
            )
        )
        self._activity(at)

    def _vest(self, action: _Action) -> None:
        order = self.orders[action.order_id or ""]
        order.vested = True
        points, spend = order.pending_points, order.pending_spend
        order.pending_points = order.pending_spend = 0
        if points == 0 and spend == 0:
            return  # cancelled or fully refunded inside the return window: nothing vests
        self.available += points
        self.entries.append(
            Entry(
                entry_id=action.key,
                kind=EntryKind.VEST,
                points=points,
                pending=False,
                spend=spend,
                tier_points=points,
                effective_at=action.at,
                qualifies_at=action.at,
                rule=(
                    f"vest: the {self.program.pending_days}-day pending period of "
                    f"{order.order_id} ended; {points} point(s) become available"
                ),
                event_id=order.earn_event_id,
                order_id=order.order_id,
            )
        )

    def _reverse(self, action: _Action) -> None:
        program = self.program
        event = action.event
        assert event is not None and isinstance(event.body, OrderBody)
        order = self.orders[action.order_id or ""]
        at = action.at
        if program.reversal_rate == "current":
            base = points_for(program, order.earning, at)
            rate_text = f"at the current rate ({rate_at(program, at)}): {base} point(s)"
        else:
            base = order.points
            rate_text = f"at the original award of {base} point(s)"
        if order.cancelled:
            points, spend = 0, 0
            why = "the order was already cancelled: nothing left to reverse"
        elif action.kind == "cancel":
            points = max(base - order.reversed_points, 0)
            spend = max(order.spend - order.reversed_spend, 0)
            order.cancelled = True
            why = f"cancellation reverses everything left, {rate_text}"
        else:
            amount = refund_amount(event.body)
            reversal = refund_reversal(
                program,
                points_base=base,
                already_reversed=order.reversed_points,
                spend_base=order.spend,
                spend_reversed=order.reversed_spend,
                merchandise=order.merchandise,
                refunded_before=order.refunded,
                refunded_now=amount,
                currency=program.currency,
            )
            order.refunded = min(order.refunded + amount, order.merchandise)
            points, spend = reversal.points, reversal.spend
            why = f"refund, {rate_text}; {reversal.explanation}"
            if event.occurred_at < order.earned_at:
                why += f" (refunded at {_stamp(event.occurred_at)}, held until the order earned)"
        order.reversed_points += points
        order.reversed_spend += spend
        head = f"reverse {order.order_id} ({event.type})"
        if not order.vested:
            from_pending = min(points, order.pending_points)
            order.pending_points -= from_pending
            order.pending_spend -= min(spend, order.pending_spend)
            self._add_reverse(
                action,
                order,
                -from_pending,
                True,
                -spend,
                0,
                f"{head}: {why}; taken from pending (inside the return window)",
            )
            excess = points - from_pending
            if excess > 0:
                applied, floor_text = self._debit(excess)
                self._add_reverse(
                    replace(action, key=f"{action.key}:excess"),
                    order,
                    -applied,
                    False,
                    0,
                    0,
                    f"{head}: {excess} point(s) beyond what is pending, taken from "
                    f"the balance{floor_text}",
                )
            return
        applied, floor_text = self._debit(points)
        self._add_reverse(
            action, order, -applied, False, -spend, -points, f"{head}: {why}{floor_text}"
        )

    def _add_reverse(
        self,
        action: _Action,
        order: _Order,
        points: int,
        pending: bool,
        spend: int,
        tier_points: int,
        rule: str,
    ) -> None:
        assert action.event is not None
        self.entries.append(
            Entry(
                entry_id=action.key,
                kind=EntryKind.REVERSE,
                points=points,
                pending=pending,
                spend=spend,
                tier_points=tier_points,
                effective_at=action.at,
                qualifies_at=order.qualifies_at,
                rule=rule,
                event_id=action.event.event_id,
                order_id=order.order_id,
            )
        )

    def _adjust(self, action: _Action) -> None:
        adjustment = action.adjustment
        assert adjustment is not None
        if adjustment.points >= 0:
            self.available += adjustment.points
            applied, floor_text = adjustment.points, ""
        else:
            taken, floor_text = self._debit(-adjustment.points)
            applied = -taken
        self.entries.append(
            Entry(
                entry_id=action.key,
                kind=adjustment.kind,
                points=applied,
                pending=False,
                spend=0,
                tier_points=adjustment.points if adjustment.counts_toward_tier else 0,
                effective_at=adjustment.at,
                qualifies_at=adjustment.at,
                rule=f"{adjustment.kind}: {adjustment.reason}{floor_text}",
            )
        )
        if adjustment.kind is EntryKind.REDEEM:
            self._activity(adjustment.at)

    def _expire(self, at: datetime) -> None:
        self.deadline = None
        if self.available <= 0:
            return
        points = self.available
        self.available = 0
        assert self.last_activity is not None
        self.entries.append(
            Entry(
                entry_id=f"expire:{at.isoformat()}",
                kind=EntryKind.EXPIRE,
                points=-points,
                pending=False,
                spend=0,
                tier_points=0,
                effective_at=at,
                qualifies_at=at,
                rule=(
                    f"expire: no earn or redemption since {_stamp(self.last_activity)} "
                    f"({self.program.expiry_days} days of inactivity); {points} point(s) expire"
                ),
            )
        )
