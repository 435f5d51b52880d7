"""The reference ledger behind the ground truth, and the systems' views it is compared with."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from handoff.sim.clock import SimClock
from handoff.sim.faults import apply_faults
from handoff.sim.scenario import Line, Order, generate
from handoff.sim.scenario_config import OrderConfig, ProgramRules
from handoff.sim.stack import Simulation, build_apis
from handoff.sim.truth import (
    expected_by_customer,
    expected_entries,
    points_for,
    reversal_for,
    tier_for,
    trigger_time,
)
from tests.sim.conftest import clean

RULES = ProgramRules()
T0 = datetime(2026, 3, 1, tzinfo=UTC)


def test_reconcile_default_rules() -> None:
    # erp-events.md's example: net merchandise 110.00 → 110 points
    assert points_for(11_000, RULES) == 110
    assert points_for(10_999, RULES) == 109  # floor, per order
    assert points_for(11_000, RULES.model_copy(update={"points_per_unit": 3})) == 330
    # a 24.00 refund on that order takes back floor(110 * 2400 / 11000) = 24
    assert reversal_for(110, 2_400, 11_000) == 24
    assert reversal_for(110, 11_000, 11_000) == 110
    assert reversal_for(110, 99_999, 11_000) == 110  # never more than earned
    assert [tier_for(x, RULES) for x in (0, 49_999, 50_000, 199_999, 200_000)] == [
        "Bronze",
        "Bronze",
        "Silver",
        "Silver",
        "Gold",
    ]


def _order(**kw: object) -> Order:
    base: dict[str, object] = {
        "order_id": "SO-1",
        "shopify_id": 1,
        "number": 1,
        "person_id": "P1",
        "shopify_customer_id": 1,
        "erp_customer_id": "C-1",
        "channel": "online",
        "store_id": "WEB",
        "currency": "USD",
        "lines": (Line(1, "A", 1, 10_000, 0, "x"),),
        "tax": 825,
        "shipping": 695,
        "placed_at": T0,
        "paid_at": T0 + timedelta(minutes=5),
        "fulfilled_at": T0 + timedelta(days=2),
        "cancelled_at": None,
    }
    base.update(kw)
    return Order(**base)  # type: ignore[arg-type]


def test_trigger_is_never_placement() -> None:
    paid = RULES.model_copy(update={"trigger": "paid"})
    order = _order()
    assert trigger_time(order, RULES) == T0 + timedelta(days=2)
    assert trigger_time(order, paid) == T0 + timedelta(minutes=5)
    cancelled = _order(fulfilled_at=None, cancelled_at=T0 + timedelta(hours=3))
    assert trigger_time(cancelled, RULES) is None
    assert trigger_time(cancelled, paid) == T0 + timedelta(minutes=5)


def test_expected_entries_cover_earn_refund_and_cancellation() -> None:
    config = clean(customers=60, orders=OrderConfig(cancel_rate=0.3, partial_refund_rate=0.3))
    s = generate(config)
    entries = expected_entries(s)
    earned = {e.order_id: e.points for e in entries if e.kind == "earn"}
    for order in s.orders:
        if order.status == "fulfilled":
            assert earned[order.order_id] == points_for(order.net_merchandise, RULES)
        else:
            assert order.order_id not in earned  # cancelled or not yet fulfilled
    for refund in s.refunds:
        order = s.order(refund.order_id)
        reverse = [e for e in entries if e.ref == f"refund:{refund.refund_id}"]
        assert len(reverse) == 1
        assert reverse[0].points == -reversal_for(
            earned[order.order_id], refund.amount, order.net_merchandise
        )
        assert reverse[0].spend == -refund.amount
    paid_rules = config.program.model_copy(update={"trigger": "paid"})
    by_paid = expected_entries(s, paid_rules)
    cancels = [e for e in by_paid if e.ref.startswith("order.cancelled:")]
    assert cancels and all(e.points <= 0 for e in cancels)
    totals: dict[str, int] = {}
    for e in by_paid:
        if s.order(e.order_id).status == "cancelled":
            totals[e.order_id] = totals.get(e.order_id, 0) + e.points
    assert totals and set(totals.values()) == {0}  # a cancellation reverses everything


def test_pending_points_vest_after_the_approval_period() -> None:
    config = clean(customers=40, program=ProgramRules(pending_days=14))
    s = generate(config)
    late = s.end - timedelta(days=3)
    states = expected_by_customer(s, as_of=late)
    assert any(st.points_pending > 0 for st in states.values())
    assert all(0 <= st.points_pending <= max(st.points_balance, 0) for st in states.values())
    assert all(
        st.points_pending == 0
        for st in expected_by_customer(s, s.end + timedelta(days=15)).values()
    )


def test_clean_run_every_system_agrees_with_the_truth() -> None:
    """With no faults and no identity noise, the loyalty platform and the CRM hold exactly the
    expected balances and tiers, and no fault is labelled."""
    sim = Simulation.build(clean(customers=40, program=ProgramRules(pending_days=7)))
    assert sim.labels() == []
    apis = build_apis(SimClock(sim.scenario.end), sim)
    expected = expected_by_customer(sim.scenario)
    members = {r["member_id"]: r for r in apis.loyaltylion.member_rows(sim.scenario.end)}
    assert len(members) == len(sim.scenario.customers)
    for c in sim.scenario.customers:
        row, want = members[str(c.shopify_id)], expected[c.erp_id]
        assert (row["points_balance"], row["points_pending"], row["tier"]) == (
            want.points_balance,
            want.points_pending,
            want.tier,
        )
    contacts = {r["contact_id"]: r for r in apis.hubspot.export_rows()}
    for c in sim.scenario.customers:
        contact = sim.scenario.contact_for(c.shopify_id)
        row = contacts[str(contact.contact_id)]
        assert row["tier"] == expected[c.erp_id].tier
        assert row["is_vip"] == expected[c.erp_id].is_vip
    assert sim.planned.by_outcome() == {"delivered": len(sim.messages)}
    assert apply_faults(sim.scenario).labels == []
