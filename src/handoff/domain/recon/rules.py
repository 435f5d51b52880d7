"""Classification rules for one order, ids and keys, tiers: the reference the SQL engine follows.

An order's loyalty story is judged in this order (docs/reconciliation.md §Classes):

1. what the rules expect: the trigger time (`paid_at` or `fulfilled_at`; a cancelled order never
   reaches `fulfilled`), the points on the earning basis, one reversal per refund (proportional,
   the refund completing a full refund takes what is left) and one for a cancellation after the
   trigger — all as of `as_of`;
2. what the loyalty platform recorded for it: its earn and reverse events (and on which member);
3. the verdict, one finding per broken fact (an order can be both `premature` and `value`):

| fact | class |
|---|---|
| triggered, no earn, trigger older than the tolerance | `missing` (in flight if younger) |
| earn before the trigger, or on an order that never reached it | `premature` |
| first earn later than trigger + tolerance | `timing` |
| more than one earn | `duplicate` |
| first earn's points ≠ the rules' points | `value` |
| earn on a member that is not the ordering customer's | `identity` |
| a refund or cancellation (after an earn) with no reverse event at or after it | `unreversed` |
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from handoff.domain.events import OrderBody
from handoff.domain.ledger.program import Program
from handoff.domain.ledger.rules import (
    order_basis,
    points_for,
    proportion,
    rate_at,
    ratio,
)

CLASSES: tuple[str, ...] = (
    "missing",
    "timing",
    "value",
    "premature",
    "unreversed",
    "duplicate",
    "identity",
    "drift",
    "missing_profile",
    "crm_stale",
    "flag",
)
ROLES: tuple[str, ...] = ("pos", "storefront", "erp", "loyalty", "crm", "helpdesk", "comms")
TARGETS: tuple[str, ...] = ("loyalty", "crm", "pos", "helpdesk", "comms")
DIRECTIONS: tuple[str, ...] = ("loyalty_lower", "loyalty_higher", "")
LOYALTY_CLASSES = frozenset(
    {"missing", "timing", "value", "premature", "unreversed", "duplicate", "identity", "drift"}
)


def direction_of(delta: int) -> str:
    """`delta` = expected - actual (points): positive means loyalty shows too few."""
    if delta > 0:
        return "loyalty_lower"
    if delta < 0:
        return "loyalty_higher"
    return ""


def finding_id(cls: str, key: str) -> str:
    """Deterministic and readable: the same problem gets the same id run after run."""
    return f"{cls}:{key}"


def correction_key(
    target: str, target_id: str, action: str, payload: Any, reasons: Sequence[str]
) -> str:
    """Idempotency key of one correction: the same correction for the same findings → same key."""
    blob = json.dumps([target, target_id, action, payload, sorted(reasons)], sort_keys=True)
    return f"recon:{target}:{target_id}:{hashlib.sha256(blob.encode()).hexdigest()[:20]}"


def rate_fraction(program: Program, at: datetime) -> tuple[int, int]:
    """(numerator, denominator) of points per minor unit at `at` (rate changes honoured)."""
    numerator, denominator = ratio(rate_at(program, at))
    from handoff.domain.money import exponent

    return numerator, denominator * 10 ** exponent(program.currency)


def tier_for_spend(program: Program, value: int) -> str:
    """The highest tier whose threshold `value` reaches (minor units of spend, or points)."""
    name = program.tier_thresholds()[0][0]
    for tier, threshold in program.tier_thresholds():
        if value >= threshold:
            name = tier
    return name


# --- one order -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OrderFacts:
    """An ERP order as the export has it (amounts in minor units)."""

    order_id: str
    customer_id: str
    status: str
    placed_at: datetime
    subtotal: int
    currency: str = "USD"
    discount: int = 0
    tax: int = 0
    shipping: int = 0
    gift_card: int = 0
    channel: str | None = None
    paid_at: datetime | None = None
    fulfilled_at: datetime | None = None
    cancelled_at: datetime | None = None

    def body(self) -> OrderBody:
        net = self.subtotal - self.discount - self.gift_card
        return OrderBody(
            order_id=self.order_id,
            currency=self.currency,
            subtotal=self.subtotal,
            discounts=self.discount,
            tax=self.tax,
            shipping=self.shipping,
            gift_cards=self.gift_card,
            net_merchandise=max(net, 0),
            total=self.subtotal - self.discount + self.tax + self.shipping,
            channel=self.channel,
        )


@dataclass(frozen=True, slots=True)
class RefundFacts:
    refund_id: str
    refunded_at: datetime
    amount: int


@dataclass(frozen=True, slots=True)
class LoyaltyEvent:
    event_id: str
    member_id: str
    kind: str
    points: int
    occurred_at: datetime
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class LoyaltyFacts:
    """The loyalty platform's events that name this order."""

    events: tuple[LoyaltyEvent, ...] = ()

    @property
    def earns(self) -> list[LoyaltyEvent]:
        return sorted(
            (e for e in self.events if e.kind == "earn"), key=lambda e: (e.occurred_at, e.event_id)
        )

    @property
    def reversals(self) -> list[LoyaltyEvent]:
        return sorted(
            (e for e in self.events if e.kind == "reverse"),
            key=lambda e: (e.occurred_at, e.event_id),
        )


@dataclass(frozen=True, slots=True)
class Reversal:
    ref: str  # refund id, or cancel:<order id>
    at: datetime
    points: int  # positive: points taken back
    amount: int  # merchandise refunded (minor units)


@dataclass(frozen=True, slots=True)
class Expectation:
    trigger_at: datetime | None
    triggered: bool  # reached the trigger at or before as_of
    points: int  # the rules' points on the earning basis (whether or not triggered)
    merchandise: int
    reversals: tuple[Reversal, ...]
    earns: bool  # the channel and currency earn at all

    @property
    def net(self) -> int:
        """Points the order should contribute to its member's balance as of `as_of`."""
        if not self.triggered or not self.earns:
            return 0
        return self.points - sum(r.points for r in self.reversals)

    @property
    def spend(self) -> int:
        if not self.triggered:
            return 0
        refunded = sum(r.amount for r in self.reversals)
        return max(self.merchandise - refunded, 0)


def trigger_time(program: Program, order: OrderFacts) -> datetime | None:
    if program.trigger == "paid":
        if order.paid_at is not None:
            return order.paid_at
        return order.placed_at if order.status in ("paid", "fulfilled") else None
    if order.status == "cancelled" and order.fulfilled_at is None:
        return None
    if order.fulfilled_at is not None:
        return order.fulfilled_at
    if order.status == "fulfilled":  # fulfilled without a time: the latest time known
        return order.paid_at or order.placed_at
    return None


def expected_reversals(
    program: Program,
    order: OrderFacts,
    points: int,
    merchandise: int,
    refunds: Sequence[RefundFacts],
    as_of: datetime,
) -> tuple[Reversal, ...]:
    """One reversal per refund (≤ as_of) and one for a cancellation after the trigger.

    Proportional: floor(points * counted / merchandise) per refund, where `counted` is the part
    of the refund that was still unrefunded merchandise; the refund that completes a full refund
    takes all that is left (ledger.rules.refund_reversal). All-or-nothing: only that one."""
    out: list[Reversal] = []
    cumulative = 0
    taken = 0
    for refund in sorted(refunds, key=lambda r: (r.refunded_at, r.refund_id)):
        if refund.refunded_at > as_of:
            continue
        before = min(cumulative, merchandise)
        cumulative += max(refund.amount, 0)
        after = min(cumulative, merchandise)
        counted = after - before
        if merchandise <= 0 or counted <= 0:
            out.append(Reversal(refund.refund_id, refund.refunded_at, 0, 0))
            continue
        if after >= merchandise:
            take = max(points - taken, 0)
        elif program.partial_refunds == "all_or_nothing":
            take = 0
        else:
            take = min(proportion(points, counted, merchandise), max(points - taken, 0))
        taken += take
        out.append(Reversal(refund.refund_id, refund.refunded_at, take, counted))
    if (
        order.status == "cancelled"
        and order.cancelled_at is not None
        and order.cancelled_at <= as_of
    ):
        refunded = min(cumulative, merchandise)
        out.append(
            Reversal(
                f"cancel:{order.order_id}",
                order.cancelled_at,
                max(points - taken, 0),
                max(merchandise - refunded, 0),
            )
        )
    return tuple(out)


def order_expectation(
    program: Program,
    order: OrderFacts,
    refunds: Sequence[RefundFacts],
    as_of: datetime,
) -> Expectation:
    """What the rules say this order is worth, computed with the ledger's own arithmetic."""
    at = trigger_time(program, order)
    body = order.body()
    basis = order_basis(program, body)
    earns = order.currency == program.currency and (
        program.earn_channels is None or (order.channel or "") in program.earn_channels
    )
    points = points_for(program, basis.earning, at or order.placed_at) if earns else 0
    triggered = at is not None and at <= as_of
    reversals = (
        expected_reversals(program, order, points, basis.merchandise, refunds, as_of)
        if triggered
        else ()
    )
    return Expectation(at, triggered, points, basis.merchandise, reversals, earns)


@dataclass(frozen=True, slots=True)
class Cleared:
    """Something that differs now but is inside the timing tolerance: not a finding."""

    kind: str  # earn | reversal
    ref: str
    points: int  # what is still expected to arrive (signed, as a balance change)


@dataclass(frozen=True, slots=True)
class Finding:
    cls: str
    handoff: str
    order_id: str | None
    ref: str
    expected: int
    actual: int
    rule: str
    detail: str
    member_id: str | None = None
    customer_id: str | None = None
    contact_id: str | None = None
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def delta(self) -> int:
        return self.expected - self.actual

    @property
    def finding_id(self) -> str:
        return finding_id(self.cls, self.ref)

    @property
    def direction(self) -> str:
        return direction_of(self.delta) if self.cls in LOYALTY_CLASSES else ""


@dataclass(frozen=True, slots=True)
class OrderVerdict:
    expectation: Expectation
    findings: tuple[Finding, ...]
    cleared: tuple[Cleared, ...]


def classify_order(
    program: Program,
    order: OrderFacts,
    refunds: Sequence[RefundFacts],
    loyalty: LoyaltyFacts,
    *,
    as_of: datetime,
    member_of_customer: str | None,
    member_created_at: datetime | None = None,
    profile_handoff: str = "erp->loyalty",
) -> OrderVerdict:
    """Every finding for one order (the reference the SQL engine is tested against).

    `member_of_customer` is the ordering customer's loyalty member (None: it has none);
    `profile_handoff` names the handoff that should have created it (`pos->loyalty`,
    `storefront->loyalty`), blamed when a purchase finds no member to land on."""
    tol: timedelta = program.tolerance
    exp = order_expectation(program, order, refunds, as_of)
    earns = [e for e in loyalty.earns if e.occurred_at <= as_of]
    reversals = [e for e in loyalty.reversals if e.occurred_at <= as_of]
    out: list[Finding] = []
    cleared: list[Cleared] = []
    oid = order.order_id
    cust = order.customer_id

    def add(
        cls: str,
        handoff: str,
        expected: int,
        actual: int,
        rule: str,
        detail: str,
        *,
        ref: str | None = None,
        member: str | None = None,
    ) -> None:
        out.append(
            Finding(
                cls,
                handoff,
                oid,
                ref or oid,
                expected,
                actual,
                rule,
                detail,
                member_id=member if member is not None else member_of_customer,
                customer_id=cust,
            )
        )

    if not earns:
        if exp.triggered and exp.earns and exp.points > 0:
            assert exp.trigger_at is not None
            if as_of - exp.trigger_at <= tol:
                cleared.append(Cleared("earn", oid, exp.net))
            else:
                late_member = member_of_customer is None or (
                    member_created_at is not None and member_created_at > exp.trigger_at
                )
                handoff = profile_handoff if late_member else "erp->loyalty"
                add(
                    "missing",
                    handoff,
                    exp.net,
                    -sum(-r.points for r in reversals),
                    f"order.{program.trigger} at {exp.trigger_at.isoformat()}, no earn event",
                    "the purchase never reached the loyalty platform"
                    + (" (no member for the customer then)" if late_member else ""),
                )
        return OrderVerdict(exp, tuple(out), tuple(cleared))

    first = earns[0]
    earned = sum(e.points for e in earns)
    if not exp.triggered or (exp.trigger_at is not None and first.occurred_at < exp.trigger_at):
        expected_now = exp.points if exp.triggered else 0
        add(
            "premature",
            "erp->loyalty",
            expected_now,
            first.points,
            "earn before order." + program.trigger,
            f"earned at {first.occurred_at.isoformat()}; "
            + (
                f"{program.trigger} at {exp.trigger_at.isoformat()}"
                if exp.trigger_at and exp.triggered
                else f"never {program.trigger} (status {order.status})"
            ),
            member=first.member_id,
        )
    elif exp.trigger_at is not None and first.occurred_at - exp.trigger_at > tol:
        add(
            "timing",
            "erp->loyalty",
            exp.points,
            first.points,
            f"earn later than {program.timing_tolerance} after order.{program.trigger}",
            f"lag {first.occurred_at - exp.trigger_at}",
            member=first.member_id,
        )
    if len(earns) > 1:
        add(
            "duplicate",
            "erp->loyalty",
            first.points,
            earned,
            "one earn per order",
            f"{len(earns)} earn events",
            member=first.member_id,
        )
    if first.points != exp.points:
        add(
            "value",
            "erp->loyalty",
            exp.points,
            first.points,
            "points = rules on the earning basis",
            "earned on a different basis than the rules",
            member=first.member_id,
        )
    if member_of_customer is not None and first.member_id != member_of_customer:
        add(
            "identity",
            "erp->loyalty",
            0,
            earned,
            "earn on the ordering customer's member",
            f"landed on member {first.member_id}; the customer's member is {member_of_customer}",
            member=first.member_id,
        )
    if exp.triggered:
        available = list(reversals)
        for rev in sorted(exp.reversals, key=lambda r: (r.at, r.ref)):
            if rev.points <= 0:
                continue
            match = next((e for e in available if e.occurred_at >= rev.at), None)
            if match is not None:
                available.remove(match)
                continue
            if as_of - rev.at <= tol:
                cleared.append(Cleared("reversal", rev.ref, -rev.points))
                continue
            add(
                "unreversed",
                "erp->loyalty",
                -rev.points,
                0,
                "one reverse event per refund or cancellation",
                f"{rev.ref} at {rev.at.isoformat()} never deducted",
                ref=rev.ref,
                member=first.member_id,
            )
    return OrderVerdict(exp, tuple(out), tuple(cleared))


@dataclass(frozen=True, slots=True)
class Correction:
    target: str  # loyalty | crm | pos | helpdesk | comms
    target_id: str  # member id, contact id or destination id
    action: str  # adjust_points | set_fields
    points: int | None
    fields: dict[str, Any] | None
    reasons: tuple[str, ...]
    customer_id: str | None = None

    @property
    def key(self) -> str:
        payload: Any = self.points if self.action == "adjust_points" else self.fields
        return correction_key(self.target, self.target_id, self.action, payload, self.reasons)
