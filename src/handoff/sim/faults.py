"""Faults per handoff, applied to the clean scenario: what each system ends up *holding*.

`apply_faults(scenario)` is pure. It returns a `World`: the clean scenario, the loyalty
platform's own view (members and activity log), the CRM's contact fields, the VIP flags the
destinations show, and one `FaultLabel` per injected fault instance, naming the handoff at
fault (`source->destination`, reconcile.md's role names) and, where it applies, the mismatch
class reconciliation should find (`missing`, `value`, `premature`, `unreversed`, `duplicate`,
`missing_profile`, `crm_stale`, `flag`) or `delivery` for webhook-level faults.

Every decision uses its own string-seeded stream keyed by what it is about (an order id, a
contact id), so decisions do not depend on iteration order and one rate never reshuffles
another. Webhook-level faults (drop, duplicate, slow ack, out of order) are decided by
`message_faults` for each message the vendor senders build.

How the loyalty platform behaves (LoyaltyLion-like):
- a member exists for a Shopify customer once a profile or order webhook for them reached it;
  customers captured only at a silent POS store never become members (`pos->loyalty`);
- purchases arrive through the ERP → loyalty handoff, earning at the trigger on net
  merchandise — unless faulted: dropped, fired on placement (points even on orders later
  cancelled), earned on a basis with tax and shipping, or earned twice;
- refunds and cancellations reverse points — unless the deduction is skipped, or the refund
  arrived before its order (the platform rejects a refund for an unknown order);
- its tier is computed on the spend it has seen.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from handoff.sim.scenario import (
    CrmContact,
    Order,
    Scenario,
    ShopCustomer,
    iso,
    rng_for,
)
from handoff.sim.scenario_config import FaultConfig, FaultWindow, ProgramRules
from handoff.sim.truth import (
    expected_by_customer,
    expected_by_person,
    points_for,
    reversal_for,
    tier_for,
    trigger_time,
)


def _rng(seed: int, *key: object) -> random.Random:
    return rng_for(seed, "fault:" + ":".join(str(k) for k in key))


@dataclass(frozen=True, slots=True)
class FaultLabel:
    """One injected fault instance, as the ground truth records it."""

    fault: str
    cls: str  # reconcile class, or "delivery"
    handoff: str
    system: str
    ref: str
    person_id: str | None = None
    customer_id: str | None = None
    member_id: str | None = None
    contact_id: str | None = None
    order_id: str | None = None
    expected: str | None = None
    actual: str | None = None
    detail: str = ""
    fault_id: str = ""

    def sort_key(self) -> tuple[str, ...]:
        return (self.fault, self.handoff, self.ref, self.detail)

    def row(self) -> dict[str, Any]:
        return {
            "fault_id": self.fault_id,
            "fault": self.fault,
            "class": self.cls,
            "handoff": self.handoff,
            "system": self.system,
            "ref": self.ref,
            "person_id": self.person_id,
            "customer_id": self.customer_id,
            "member_id": self.member_id,
            "contact_id": self.contact_id,
            "order_id": self.order_id,
            "expected": self.expected,
            "actual": self.actual,
            "detail": self.detail,
        }


# --- the loyalty platform's view ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LoyaltyActivity:
    """One line of the loyalty platform's activity log."""

    event_id: str
    member_id: str
    kind: str  # earn | reverse | adjust
    points: int
    occurred_at: datetime
    order_id: str | None
    reason: str
    spend: int  # change to the spend the platform counts towards tiers
    vests_at: datetime


@dataclass(frozen=True, slots=True)
class LoyaltyMember:
    member_id: str  # merchant_id: the Shopify customer id
    loyaltylion_id: int
    customer_id: str  # the ERP id the platform stores
    person_id: str
    created_at: datetime
    email: str | None
    phone: str | None
    first_name: str
    last_name: str
    zip: str


@dataclass(frozen=True)
class LoyaltyView:
    members: tuple[LoyaltyMember, ...]
    activity: tuple[LoyaltyActivity, ...]
    rules: ProgramRules

    def member_ids(self) -> set[str]:
        return {m.member_id for m in self.members}

    def balances(self, as_of: datetime) -> dict[str, tuple[int, int, int, str]]:
        """member id → (points approved+pending, pending, spend, tier) as of `as_of`."""
        points: dict[str, int] = {}
        pending: dict[str, int] = {}
        spend: dict[str, int] = {}
        for a in self.activity:
            if a.occurred_at > as_of:
                continue
            points[a.member_id] = points.get(a.member_id, 0) + a.points
            spend[a.member_id] = spend.get(a.member_id, 0) + a.spend
            if a.vests_at > as_of:
                pending[a.member_id] = pending.get(a.member_id, 0) + a.points
        out = {}
        for m in self.members:
            s = spend.get(m.member_id, 0)
            out[m.member_id] = (
                points.get(m.member_id, 0),
                pending.get(m.member_id, 0),
                s,
                tier_for(s, self.rules),
            )
        return out


# --- the CRM and destinations -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CrmState:
    """A contact's fields as the CRM holds them at the end of the scenario."""

    contact: CrmContact
    tier: str | None
    points_balance: int | None
    lifetime_spend: int | None
    is_vip: bool
    updated_at: datetime
    enriched_at: datetime | None = None  # when an enrichment tool overwrote loyalty fields


@dataclass(frozen=True, slots=True)
class DestinationFlag:
    system: str  # pos | helpdesk | comms
    external_id: str
    person_ids: tuple[str, ...]
    is_vip: bool


@dataclass(frozen=True, slots=True)
class MessageFaults:
    """Webhook-level faults for one message."""

    drop: bool = False
    duplicate: bool = False
    slow_ack: bool = False
    hold_until: datetime | None = None  # out of order: first attempt not before this

    def names(self) -> tuple[str, ...]:
        out = []
        if self.drop:
            out.append("dropped")
        if self.duplicate:
            out.append("duplicated")
        if self.slow_ack:
            out.append("slow_ack")
        if self.hold_until is not None:
            out.append("out_of_order")
        return tuple(out)


@dataclass
class World:
    """The clean scenario plus what every system holds, and the labels of what went wrong."""

    scenario: Scenario
    loyalty: LoyaltyView
    crm: tuple[CrmState, ...]
    flags: tuple[DestinationFlag, ...]
    silent_customers: frozenset[int]  # Shopify customers whose webhooks the POS never fired
    reordered_orders: dict[str, datetime]  # order id → refund time it is held behind
    labels: list[FaultLabel] = field(default_factory=list)

    @property
    def faults(self) -> FaultConfig:
        return self.scenario.config.faults

    @property
    def seed(self) -> int:
        return self.scenario.config.seed

    def labels_with_ids(self) -> list[FaultLabel]:
        ordered = sorted(self.labels, key=FaultLabel.sort_key)
        return [replace(label, fault_id=f"F{n:05d}") for n, label in enumerate(ordered, 1)]

    def is_silent(self, store_id: str) -> bool:
        return store_id in self.faults.silent_pos_stores

    def message_faults(
        self, system: str, message_id: str, *, order_id: str | None = None
    ) -> MessageFaults:
        """The webhook-level faults for one message, decided by its id alone."""
        cfg = self.faults
        rng = _rng(self.seed, "message", system, message_id)
        drop = rng.random() < cfg.drop_rate_for(system)
        duplicate = rng.random() < cfg.duplicate_rate
        slow = rng.random() < cfg.slow_ack_rate
        hold = None
        if system == "erp" and order_id is not None and order_id in self.reordered_orders:
            hold = self.reordered_orders[order_id]
        return MessageFaults(
            drop=drop and hold is None, duplicate=duplicate, slow_ack=slow, hold_until=hold
        )


# --- applying the faults --------------------------------------------------------------------------


def _customer_known_at(
    scenario: Scenario, customer: ShopCustomer, silent: set[str]
) -> datetime | None:
    """When the loyalty platform first heard of this Shopify customer (None: never)."""
    if customer.store_id not in silent:
        return customer.created_at
    times = [
        o.placed_at
        for o in scenario.orders
        if o.shopify_customer_id == customer.shopify_id and o.store_id not in silent
    ]
    return min(times) if times else None


class _Applier:
    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.cfg = scenario.config.faults
        self.rules = scenario.config.program
        self.seed = scenario.config.seed
        self.labels: list[FaultLabel] = []
        self.activity: list[LoyaltyActivity] = []
        self.silent_stores = set(self.cfg.silent_pos_stores)

    def label(self, **kwargs: Any) -> None:
        self.labels.append(FaultLabel(**kwargs))

    # --- members ---------------------------------------------------------------------------

    def members(self) -> tuple[list[LoyaltyMember], set[int]]:
        members: list[LoyaltyMember] = []
        silent_customers: set[int] = set()
        for n, c in enumerate(self.scenario.customers, start=1):
            if c.store_id in self.silent_stores:
                silent_customers.add(c.shopify_id)
            known = _customer_known_at(self.scenario, c, self.silent_stores)
            if known is None:
                self.label(
                    fault="pos_silent_store",
                    cls="missing_profile",
                    handoff="pos->loyalty",
                    system="loyalty",
                    ref=f"customer:{c.shopify_id}",
                    person_id=c.person_id,
                    customer_id=c.erp_id,
                    member_id=str(c.shopify_id),
                    detail=f"store {c.store_id} never fires customers/create; no member",
                )
                continue
            members.append(
                LoyaltyMember(
                    member_id=str(c.shopify_id),
                    loyaltylion_id=880_000 + n,
                    customer_id=c.erp_id,
                    person_id=c.person_id,
                    created_at=known,
                    email=c.email,
                    phone=c.phone,
                    first_name=c.first_name,
                    last_name=c.last_name,
                    zip=c.zip,
                )
            )
        return members, silent_customers

    # --- activity ----------------------------------------------------------------------------

    def _add(
        self,
        member: LoyaltyMember,
        kind: str,
        points: int,
        at: datetime,
        order: Order,
        reason: str,
        spend: int,
        vests_at: datetime | None = None,
    ) -> None:
        self.activity.append(
            LoyaltyActivity(
                "",
                member.member_id,
                kind,
                points,
                at,
                order.order_id,
                reason,
                spend,
                vests_at or at,
            )
        )

    def order_activity(
        self, order: Order, member: LoyaltyMember | None, reordered: dict[str, datetime]
    ) -> None:
        rules, cfg = self.rules, self.cfg
        rng = _rng(self.seed, "loyalty", order.order_id)
        drop = rng.random() < cfg.erp_loyalty_drop_rate
        on_placement = rng.random() < cfg.erp_loyalty_on_placement_rate
        gross = rng.random() < cfg.points_on_gross_rate
        twice = rng.random() < cfg.loyalty_duplicate_earn_rate
        trigger = trigger_time(order, rules)
        expected = points_for(order.net_merchandise, rules)
        base = {
            "system": "loyalty",
            "person_id": order.person_id,
            "customer_id": order.erp_customer_id,
            "member_id": str(order.shopify_customer_id),
            "order_id": order.order_id,
        }
        earn_at = order.placed_at if on_placement else trigger
        if earn_at is None or earn_at > self.scenario.end:
            return
        if member is None or member.created_at > earn_at:
            self.label(
                fault="pos_silent_store",
                cls="missing",
                handoff="pos->loyalty",
                ref=f"order:{order.order_id}",
                expected=str(expected) if trigger else "0",
                actual="0",
                detail="the purchase reached loyalty before (or without) its member",
                **base,
            )
            return
        if drop:
            self.label(
                fault="erp_loyalty_dropped",
                cls="missing",
                handoff="erp->loyalty",
                ref=f"order:{order.order_id}",
                expected=str(expected),
                actual="0",
                detail="the purchase event never reached the loyalty platform",
                **base,
            )
            return
        basis = order.net_merchandise + (order.tax + order.shipping if gross else 0)
        earned = points_for(basis, rules)
        pending = timedelta(days=rules.pending_days)
        if on_placement:
            self.label(
                fault="erp_loyalty_on_placement",
                cls="premature",
                handoff="erp->loyalty",
                ref=f"order:{order.order_id}",
                expected=str(expected if trigger else 0),
                actual=str(earned),
                detail=f"earned at placement ({order.status} at the end)",
                **base,
            )
        if gross:
            self.label(
                fault="points_on_gross",
                cls="value",
                handoff="erp->loyalty",
                ref=f"order:{order.order_id}",
                expected=str(expected),
                actual=str(earned),
                detail="earning basis included tax and shipping",
                **base,
            )
        self._add(member, "earn", earned, earn_at, order, "$purchase", basis, earn_at + pending)
        if twice:
            self.label(
                fault="loyalty_duplicate_earn",
                cls="duplicate",
                handoff="erp->loyalty",
                ref=f"order:{order.order_id}",
                expected=str(earned),
                actual=str(2 * earned),
                detail="the purchase was earned twice",
                **base,
            )
            self._add(
                member,
                "earn",
                earned,
                earn_at + timedelta(minutes=2),
                order,
                "$purchase",
                0,
                earn_at + timedelta(minutes=2) + pending,
            )
        total_earned = earned * (2 if twice else 1)
        if order.cancelled_at is not None:
            if on_placement:
                return  # the handoff fires on placement only: the cancellation never follows
            if rng.random() < cfg.refund_deduction_skip_rate:
                self.label(
                    fault="deduction_skipped",
                    cls="unreversed",
                    handoff="erp->loyalty",
                    ref=f"cancel:{order.order_id}",
                    expected=str(-total_earned),
                    actual="0",
                    detail="cancellation deduction never applied",
                    **base,
                )
                return
            self._add(
                member, "reverse", -total_earned, order.cancelled_at, order, "cancellation", -basis
            )
            return
        for refund in self.scenario.refunds_of(order.order_id):
            points = reversal_for(total_earned, refund.amount, order.net_merchandise)
            spend = (
                -(basis * refund.amount // order.net_merchandise) if order.net_merchandise else 0
            )
            ref = f"refund:{refund.refund_id}"
            if order.order_id in reordered and refund.refunded_at == reordered[order.order_id]:
                self.label(
                    fault="refund_before_order",
                    cls="unreversed",
                    handoff="erp->loyalty",
                    ref=ref,
                    expected=str(-points),
                    actual="0",
                    detail="the refund arrived before its order and was rejected",
                    **base,
                )
                continue
            if (
                _rng(self.seed, "deduction", refund.refund_id).random()
                < cfg.refund_deduction_skip_rate
            ):
                self.label(
                    fault="deduction_skipped",
                    cls="unreversed",
                    handoff="erp->loyalty",
                    ref=ref,
                    expected=str(-points),
                    actual="0",
                    detail="refund deduction never applied",
                    **base,
                )
                continue
            self._add(member, "reverse", -points, refund.refunded_at, order, "refund", spend)

    def reordered(self) -> dict[str, datetime]:
        """Refunded orders whose ERP webhooks are held until after their first refund."""
        out: dict[str, datetime] = {}
        firsts: dict[str, datetime] = {}
        for refund in self.scenario.refunds:
            if refund.order_id not in firsts or refund.refunded_at < firsts[refund.order_id]:
                firsts[refund.order_id] = refund.refunded_at
        for order_id in sorted(firsts):
            if _rng(self.seed, "reorder", order_id).random() < self.cfg.out_of_order_rate:
                out[order_id] = firsts[order_id]
        return out

    # --- CRM ----------------------------------------------------------------------------------

    def crm(self, loyalty: LoyaltyView) -> list[CrmState]:
        end = self.scenario.end
        balances = loyalty.balances(end)
        members = {m.member_id: m for m in loyalty.members}
        manual = {v.contact_id: v for v in self.scenario.manual_vips}
        customers_expected = expected_by_customer(self.scenario)
        states: list[CrmState] = []
        for contact in self.scenario.contacts:
            linked = [str(s) for s in contact.shopify_ids if str(s) in members]
            tier: str | None = None
            points: int | None = None
            spend: int | None = None
            updated = contact.created_at
            if linked and not self.cfg.loyalty_crm_relay_off:
                # last writer wins: the member updated most recently (ties: highest id)
                latest = max(linked, key=lambda m: (members[m].created_at, m))
                points, _pending, spend, tier = balances[latest]
                updated = max(updated, end - timedelta(hours=1))
            elif linked:
                expected = customers_expected[self.scenario.customer(int(linked[0])).erp_id]
                self.label(
                    fault="loyalty_crm_relay_off",
                    cls="crm_stale",
                    handoff="loyalty->crm",
                    system="crm",
                    ref=f"contact:{contact.contact_id}",
                    contact_id=str(contact.contact_id),
                    person_id=contact.person_ids[0],
                    expected=expected.tier,
                    actual="",
                    detail="loyalty fields never relayed to the CRM",
                )
            vip = manual.get(contact.contact_id)
            is_vip = vip is not None or (tier in self.rules.vip_tiers if tier else False)
            if vip is not None:
                updated = max(updated, vip.at)
            enriched_at = None
            rng = _rng(self.seed, "enrichment", contact.contact_id)
            if tier is not None and rng.random() < self.cfg.enrichment_overwrite_rate:
                others = [t.name for t in self.rules.tiers if t.name != tier]
                new_tier = rng.choice(others) if others else tier
                span = max(1, int((end - contact.created_at).total_seconds()))
                enriched_at = contact.created_at + timedelta(seconds=rng.randrange(span))
                self.label(
                    fault="enrichment_overwrite",
                    cls="crm_stale",
                    handoff="enrichment->crm",
                    system="crm",
                    ref=f"contact:{contact.contact_id}",
                    contact_id=str(contact.contact_id),
                    person_id=contact.person_ids[0],
                    expected=tier,
                    actual=new_tier,
                    detail="an enrichment tool overwrote the loyalty tier",
                )
                tier = new_tier
                updated = max(updated, enriched_at)
            states.append(CrmState(contact, tier, points, spend, is_vip, updated, enriched_at))
        return states

    # --- destinations ---------------------------------------------------------------------------

    def flags(self, crm: list[CrmState]) -> list[DestinationFlag]:
        """VIP flags as the POS, helpdesk and email platform show them."""
        expected = expected_by_person(self.scenario)
        crm_vip_people: set[str] = set()
        for state in crm:
            if state.is_vip:
                crm_vip_people.update(state.contact.person_ids)
        out: list[DestinationFlag] = []
        targets: list[tuple[str, str, tuple[str, ...]]] = [
            ("pos", str(c.shopify_id), (c.person_id,)) for c in self.scenario.customers
        ]
        targets += [("helpdesk", p.external_id, p.person_ids) for p in self.scenario.helpdesk_users]
        targets += [("comms", p.external_id, p.person_ids) for p in self.scenario.comms_profiles]
        for system, external_id, person_ids in targets:
            crm_says = any(pid in crm_vip_people for pid in person_ids)
            should = any(expected[pid].is_vip for pid in person_ids)
            propagated = (
                _rng(self.seed, "flag", system, external_id).random()
                >= self.cfg.vip_not_propagated_rate
            )
            shows = crm_says and propagated
            out.append(DestinationFlag(system, external_id, person_ids, shows))
            if shows != should:
                if not crm_says and should:
                    fault, handoff, detail = (
                        "crm_vip_missing",
                        "loyalty->crm",
                        "the CRM contact's VIP flag is off (split identity or stale fields)",
                    )
                elif crm_says and not propagated:
                    fault, handoff, detail = (
                        "vip_not_propagated",
                        f"crm->{system}",
                        "no outbound event on the CRM property change",
                    )
                else:
                    fault, handoff, detail = (
                        "vip_wrong",
                        f"crm->{system}",
                        "the CRM's VIP flag is wrong for this person",
                    )
                self.label(
                    fault=fault,
                    cls="flag",
                    handoff=handoff,
                    system=system,
                    ref=f"{system}:{external_id}",
                    person_id=person_ids[0],
                    expected=str(should).lower(),
                    actual=str(shows).lower(),
                    detail=detail,
                )
        return out


ROLES = {
    "shopify": "pos",
    "hubspot": "crm",
    "loyaltylion": "loyalty",
    "zendesk": "helpdesk",
    "klaviyo": "comms",
    "erp": "erp",
}


def _window_label(window: FaultWindow, start: datetime) -> dict[str, Any]:
    """A fault window as a label: a link to the hub (`webhooks:<system>`) or a destination API."""
    begins = start + timedelta(hours=window.start_hours)
    ends = begins + timedelta(hours=window.duration_hours)
    if window.target.startswith("webhooks:"):
        system = window.target.removeprefix("webhooks:")
        handoff = f"{ROLES.get(system, system)}->hub"
    else:
        system = window.target
        handoff = f"hub->{ROLES.get(system, system)}"
    what = {
        "outage": f"every request fails with {window.status}",
        "errors": f"{window.rate:.0%} of requests fail with 500/502/503",
        "throttle": f"{window.rate:.0%} of requests get 429, Retry-After {window.retry_after} s",
    }[window.kind]
    return {
        "fault": f"{window.kind}_window",
        "cls": "delivery",
        "handoff": handoff,
        "system": system,
        "ref": f"window:{window.target}:{iso(begins)}",
        "detail": f"{iso(begins)} to {iso(ends)}: {what}",
    }


def apply_faults(scenario: Scenario) -> World:
    """Apply `scenario.config.faults` to the clean scenario (pure; same input, same World)."""
    applier = _Applier(scenario)
    members, silent_customers = applier.members()
    by_id = {m.member_id: m for m in members}
    reordered = applier.reordered()
    for order in scenario.orders:
        applier.order_activity(order, by_id.get(str(order.shopify_customer_id)), reordered)
    activity = sorted(
        applier.activity, key=lambda a: (a.occurred_at, a.member_id, a.order_id or "", a.kind)
    )
    numbered = tuple(replace(a, event_id=f"LLT-{n:07d}") for n, a in enumerate(activity, start=1))
    loyalty = LoyaltyView(tuple(members), numbered, scenario.config.program)
    crm = applier.crm(loyalty)
    flags = applier.flags(crm)
    for window in scenario.config.faults.windows:
        applier.label(**_window_label(window, scenario.start))
    for order_id, held in reordered.items():
        applier.label(
            fault="out_of_order",
            cls="delivery",
            handoff="erp->hub",
            system="erp",
            ref=f"order:{order_id}",
            order_id=order_id,
            detail=f"the order's webhooks are held until after its refund at {iso(held)}",
        )
    return World(
        scenario=scenario,
        loyalty=loyalty,
        crm=tuple(crm),
        flags=tuple(flags),
        silent_customers=frozenset(silent_customers),
        reordered_orders=reordered,
        labels=applier.labels,
    )


__all__ = [
    "CrmState",
    "DestinationFlag",
    "FaultLabel",
    "LoyaltyActivity",
    "LoyaltyMember",
    "LoyaltyView",
    "MessageFaults",
    "World",
    "apply_faults",
]
