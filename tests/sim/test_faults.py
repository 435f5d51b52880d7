"""Each fault, switched on alone, is labelled in the truth and visible where it should be."""

from __future__ import annotations

from collections import Counter

from handoff.sim.clock import SimClock
from handoff.sim.scenario_config import FaultWindow
from handoff.sim.stack import Simulation, build_apis
from handoff.sim.truth import expected_by_customer, points_for
from tests.sim.conftest import only


def _build(**faults: object) -> Simulation:
    return Simulation.build(only(customers=40, **faults))


def _kinds(sim: Simulation) -> Counter[str]:
    return Counter(label.fault for label in sim.labels())


def test_silent_pos_store_never_fires_and_loyalty_never_hears() -> None:
    sim = _build(silent_pos_stores=("S02",))
    silent = [c for c in sim.scenario.customers if c.store_id == "S02"]
    assert silent
    never = [r for r in sim.planned.records if r.outcome == "never_fired"]
    assert never and all(r.message.system == "shopify" for r in never)
    assert {r.message.ref for r in never} >= {f"customer:{c.shopify_id}" for c in silent}
    members = sim.world.loyalty.member_ids()
    for c in silent:
        other_stores = [
            o
            for o in sim.scenario.orders
            if o.shopify_customer_id == c.shopify_id and o.store_id != "S02"
        ]
        assert (str(c.shopify_id) in members) == bool(other_stores)
    labels = [x for x in sim.labels() if x.fault == "pos_silent_store"]
    assert {x.cls for x in labels} >= {"missing_profile", "delivery"}
    assert {x.handoff for x in labels} == {"pos->loyalty", "pos->hub"}


def test_loyalty_crm_relay_off_leaves_crm_blank() -> None:
    sim = _build(loyalty_crm_relay_off=True)
    rows = build_apis(SimClock(sim.scenario.end), sim).hubspot.export_rows()
    assert all(r["tier"] is None and r["points_balance"] is None for r in rows)
    labels = [x for x in sim.labels() if x.fault == "loyalty_crm_relay_off"]
    assert len(labels) == len(rows)
    assert {(x.cls, x.handoff) for x in labels} == {("crm_stale", "loyalty->crm")}


def test_erp_loyalty_faults_change_the_loyalty_log_as_labelled() -> None:
    sim = _build(
        erp_loyalty_on_placement_rate=0.15,
        points_on_gross_rate=0.15,
        erp_loyalty_drop_rate=0.15,
        loyalty_duplicate_earn_rate=0.15,
    )
    activity = sim.world.loyalty.activity
    earns: dict[str, list[int]] = {}
    times: dict[str, list[object]] = {}
    for a in activity:
        if a.kind == "earn" and a.order_id:
            earns.setdefault(a.order_id, []).append(a.points)
            times.setdefault(a.order_id, []).append(a.occurred_at)
    kinds = _kinds(sim)
    for fault in (
        "erp_loyalty_on_placement",
        "points_on_gross",
        "erp_loyalty_dropped",
        "loyalty_duplicate_earn",
    ):
        assert kinds[fault] > 0, fault
    for label in sim.labels():
        order = sim.scenario.order(label.order_id) if label.order_id else None
        if label.fault == "erp_loyalty_dropped":
            assert label.cls == "missing" and label.order_id not in earns
        elif label.fault == "erp_loyalty_on_placement":
            assert label.cls == "premature" and order is not None
            assert order.placed_at in times[order.order_id]
        elif label.fault == "points_on_gross":
            assert label.cls == "value" and order is not None
            gross = order.net_merchandise + order.tax + order.shipping
            assert earns[order.order_id][0] == points_for(gross, sim.config.program)
            assert int(label.actual or 0) > int(label.expected or 0) or order.tax == 0
        elif label.fault == "loyalty_duplicate_earn":
            assert label.cls == "duplicate" and len(earns[label.order_id or ""]) == 2
    untouched = {x.order_id for x in sim.labels()}
    for order in sim.scenario.orders:
        if order.order_id not in untouched and order.status == "fulfilled":
            assert earns[order.order_id] == [points_for(order.net_merchandise, sim.config.program)]


def test_skipped_deductions_and_refunds_before_their_order() -> None:
    sim = _build(refund_deduction_skip_rate=0.3, out_of_order_rate=0.5)
    reversed_refs = {
        (a.order_id, a.occurred_at) for a in sim.world.loyalty.activity if a.kind == "reverse"
    }
    kinds = _kinds(sim)
    assert kinds["deduction_skipped"] and kinds["refund_before_order"] and kinds["out_of_order"]
    for label in sim.labels():
        if label.fault in ("deduction_skipped", "refund_before_order") and label.ref.startswith(
            "refund:"
        ):
            refund = next(r for r in sim.scenario.refunds if f"refund:{r.refund_id}" == label.ref)
            assert (refund.order_id, refund.refunded_at) not in reversed_refs
            assert label.cls == "unreversed" and label.handoff == "erp->loyalty"
    # the ERP's webhooks for a reordered order reach the hub only after its refund
    held = sim.world.reordered_orders
    assert held
    first_attempt = {
        r.message.message_id: r.attempts[0].at for r in sim.planned.records if r.attempts
    }
    for order_id, refund_at in held.items():
        placed = first_attempt[f"erp:{order_id}-placed"]
        refund = next(r for r in sim.scenario.refunds_of(order_id) if r.refunded_at == refund_at)
        assert placed > first_attempt[f"erp:{refund.refund_id}-refunded"]


def test_enrichment_overwrites_crm_tier() -> None:
    sim = _build(enrichment_overwrite_rate=0.5)
    labels = [x for x in sim.labels() if x.fault == "enrichment_overwrite"]
    assert labels
    rows = {
        r["contact_id"]: r
        for r in build_apis(SimClock(sim.scenario.end), sim).hubspot.export_rows()
    }
    for label in labels:
        assert label.expected != label.actual
        assert rows[label.contact_id or ""]["tier"] == label.actual
    tier_events = [
        e
        for m in sim.messages
        if m.system == "hubspot"
        for e in m.payload
        if e.get("propertyName") == "loyalty_tier"
    ]
    assert len(tier_events) == len(labels)


def test_vip_not_propagated_to_destinations() -> None:
    sim = _build(vip_not_propagated_rate=0.6)
    labels = [x for x in sim.labels() if x.fault == "vip_not_propagated"]
    assert labels
    assert {x.handoff for x in labels} <= {"crm->pos", "crm->helpdesk", "crm->comms"}
    apis = build_apis(SimClock(sim.scenario.end), sim)
    pos = {r["id"]: r for r in apis.shopify.export_rows()}
    for label in labels:
        assert label.cls == "flag" and label.expected == "true" and label.actual == "false"
        if label.system == "pos":
            assert pos[label.ref.removeprefix("pos:")]["is_vip"] is False


def test_webhook_faults_are_planned_per_message() -> None:
    sim = _build(drop_rate=0.1, duplicate_rate=0.1, slow_ack_rate=0.1)
    outcomes = Counter(r.outcome for r in sim.planned.records)
    assert outcomes["dropped"] > 0 and set(outcomes) == {"delivered", "dropped"}
    for r in sim.planned.records:
        if r.faults.drop:
            assert r.outcome == "dropped" and r.attempts == []
        elif r.faults.slow_ack:
            # the ack comes after the vendor's timeout: the vendor sends it again
            assert [a.outcome for a in r.attempts][:2] == ["slow_ack", "acked"]
            assert r.reached_receiver >= 2
        elif r.faults.duplicate:
            assert [a.outcome for a in r.attempts] == ["acked", "duplicate_sent"]
    kinds = _kinds(sim)
    assert kinds["webhook_dropped"] == outcomes["dropped"]
    assert kinds["webhook_duplicated"] and kinds["slow_ack_redelivery"]
    by_system = Counter(r.message.system for r in sim.planned.records if r.faults.drop)
    assert len(by_system) >= 3  # every sender drops


def test_shopify_outage_longer_than_four_hours_deletes_subscriptions() -> None:
    window = FaultWindow(
        target="webhooks:shopify", kind="outage", start_hours=240, duration_hours=72
    )
    sim = _build(windows=(window,))
    deleted = sim.planned.deleted_subscriptions
    assert deleted  # topics whose delivery failed 8 retries in a row
    lost = [r for r in sim.planned.records if r.outcome == "subscription_deleted"]
    exhausted = [r for r in sim.planned.records if r.outcome == "exhausted"]
    assert exhausted and lost
    for r in exhausted:
        assert r.message.system == "shopify" and len(r.attempts) == 9
        span = (r.attempts[-1].at - r.attempts[0].at).total_seconds()
        assert span == 4 * 3600
    kinds = _kinds(sim)
    assert kinds["webhook_subscription_deleted"] == len(lost)
    assert kinds["webhook_exhausted"] == len(exhausted)
    window_labels = [x for x in sim.labels() if x.fault == "outage_window"]
    assert [(x.handoff, x.system) for x in window_labels] == [("pos->hub", "shopify")]
    # other systems ride the outage out untouched
    assert all(
        r.outcome == "delivered" for r in sim.planned.records if r.message.system != "shopify"
    )


def test_expected_state_ignores_faults() -> None:
    faulty = _build(points_on_gross_rate=1.0, erp_loyalty_drop_rate=0.5)
    plain = Simulation.build(only(customers=40))
    assert expected_by_customer(faulty.scenario) == expected_by_customer(plain.scenario)
