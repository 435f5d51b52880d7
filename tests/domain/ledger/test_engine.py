"""The engine on worked examples: one test per rule or policy, numbers checked by hand."""

from __future__ import annotations

from datetime import datetime

from handoff.domain.events import CanonicalEvent
from handoff.domain.ledger import (
    Adjustment,
    EntryKind,
    Ledger,
    Program,
    apply,
    apply_adjustment,
    empty,
    parse_program,
    project,
    rebuild,
    statement,
)

from .factory import at, order_event, recorded, refund_event

NOW = at(1000)


def build(program: Program, *events: CanonicalEvent, now: datetime = NOW) -> Ledger:
    return rebuild(program, events, now=now)


def kinds(ledger: Ledger) -> list[tuple[str, int, bool]]:
    return [(e.kind.value, e.points, e.pending) for e in ledger.entries]


def balance(ledger: Ledger, when: datetime = NOW) -> int:
    return project(ledger, as_of=when).balance


PAID = parse_program({"trigger": "paid"})
FULFILLED = Program()  # the reconcile.md default


# --- trigger ----------------------------------------------------------------------------------


def test_placement_never_earns() -> None:
    ledger = build(PAID, order_event("placed", "A", at(0)))
    assert ledger.entries == ()


def test_trigger_fulfilled_paid_but_never_fulfilled_earns_nothing() -> None:
    ledger = build(FULFILLED, order_event("placed", "A", at(0)), order_event("paid", "A", at(1)))
    assert ledger.entries == ()
    ledger = build(FULFILLED, order_event("paid", "A", at(1)), order_event("fulfilled", "A", at(3)))
    assert kinds(ledger) == [("earn", 100, False)]
    assert ledger.entries[0].effective_at == at(3)


def test_trigger_paid_earns_at_payment_even_if_fulfilled_first() -> None:
    ledger = build(PAID, order_event("fulfilled", "A", at(1)), order_event("paid", "A", at(2)))
    assert kinds(ledger) == [("earn", 100, False)]
    assert ledger.entries[0].effective_at == at(2)
    assert balance(ledger, at(1.5)) == 0 and balance(ledger, at(2)) == 100


def test_trigger_fulfilled_earns_on_fulfilment_without_payment() -> None:
    ledger = build(FULFILLED, order_event("fulfilled", "A", at(1)))
    assert kinds(ledger) == [("earn", 100, False)]


def test_duplicate_trigger_from_two_sources_earns_once_at_the_earliest() -> None:
    ledger = build(
        PAID,
        order_event("paid", "A", at(2), source="shopify"),
        order_event("paid", "A", at(1), source="erp"),
    )
    assert kinds(ledger) == [("earn", 100, False)]
    assert ledger.entries[0].event_id == "evt-paid-A-erp"
    assert [n.event_id for n in ledger.notes] == ["evt-paid-A-shopify"]


# --- cancellation -----------------------------------------------------------------------------


def test_cancellation_before_the_trigger_voids_the_order() -> None:
    ledger = build(
        FULFILLED,
        order_event("paid", "A", at(1)),
        order_event("cancelled", "A", at(2)),
        order_event("fulfilled", "A", at(3)),  # a fulfilment after cancellation earns nothing
    )
    assert ledger.entries == ()
    assert ledger.held == ()
    assert "void" in ledger.notes[0].text


def test_cancellation_after_earning_reverses_everything() -> None:
    ledger = build(PAID, order_event("paid", "A", at(1)), order_event("cancelled", "A", at(5)))
    assert kinds(ledger) == [("earn", 100, False), ("reverse", -100, False)]
    assert balance(ledger, at(4)) == 100 and balance(ledger) == 0
    assert project(ledger, as_of=NOW).lifetime_spend == 0


def test_cancellation_after_partial_refund_takes_the_rest() -> None:
    ledger = build(
        PAID,
        order_event("paid", "A", at(1)),
        refund_event("A", "R1", 2_500, at(2)),
        order_event("cancelled", "A", at(3)),
        refund_event("A", "R2", 1_000, at(4)),  # after cancellation: nothing left
    )
    assert [e.points for e in ledger.entries] == [100, -25, -75, 0]
    assert balance(ledger) == 0


def test_cancellation_at_the_current_rate_models_smile() -> None:
    table = {
        "trigger": "paid",
        "rate_changes": [{"effective_from": at(10), "points_per_unit": 2}],
    }
    events = (order_event("paid", "A", at(1)), order_event("cancelled", "A", at(20)))
    original = build(parse_program(table), *events)
    current = build(parse_program({**table, "reversal_rate": "current"}), *events)
    assert [e.points for e in original.entries] == [100, -100]
    assert [e.points for e in current.entries] == [100, -100]  # floor: nothing more to take
    allow = build(
        parse_program({**table, "reversal_rate": "current", "negative_balance": "allow"}), *events
    )
    assert [e.points for e in allow.entries] == [100, -200]  # deducted at the new rule value
    assert balance(allow) == -100


# --- refunds ----------------------------------------------------------------------------------


def test_partial_refunds_reverse_in_proportion() -> None:
    program = PAID
    ledger = build(
        program,
        order_event("paid", "A", at(1), net=11_000),
        refund_event("A", "R1", 3_000, at(2)),  # floor(110 x 3000 / 11000) = 30
    )
    assert [e.points for e in ledger.entries] == [110, -30]
    assert project(ledger, as_of=NOW).lifetime_spend == 8_000
    assert "floor(110 * 3000 / 11000) = 30" in ledger.entries[1].rule


def test_refund_in_pieces_reverses_exactly_what_was_earned() -> None:
    ledger = build(
        PAID,
        order_event("paid", "A", at(1), net=300),  # 3.00 earns 3 points
        refund_event("A", "R1", 100, at(2)),
        refund_event("A", "R2", 100, at(3)),
        refund_event("A", "R3", 100, at(4)),
    )
    assert [e.points for e in ledger.entries] == [3, -1, -1, -1]
    ledger = build(
        parse_program({"trigger": "paid", "points_per_unit": 10}),
        order_event("paid", "A", at(1), net=300),  # 30 points; thirds floor to 10, 10, 10
        refund_event("A", "R1", 99, at(2)),  # floor(30 x 99/300) = 9
        refund_event("A", "R2", 101, at(3)),  # floor(30 x 101/300) = 10
        refund_event("A", "R3", 100, at(4)),  # completes: the 11 left
    )
    assert [e.points for e in ledger.entries] == [30, -9, -10, -11]


def test_all_or_nothing_partial_refunds_model_older_smile() -> None:
    program = parse_program({"trigger": "paid", "partial_refunds": "all_or_nothing"})
    ledger = build(program, order_event("paid", "A", at(1)), refund_event("A", "R1", 5_000, at(2)))
    assert [e.points for e in ledger.entries] == [100, 0]
    ledger = build(
        program,
        order_event("paid", "A", at(1)),
        refund_event("A", "R1", 5_000, at(2)),
        refund_event("A", "R2", 5_000, at(3)),
    )
    assert [e.points for e in ledger.entries] == [100, 0, -100]


def test_the_same_refund_from_two_sources_reverses_once() -> None:
    ledger = build(
        PAID,
        order_event("paid", "A", at(1)),
        refund_event("A", "R1", 5_000, at(2), source="erp"),
        refund_event("A", "R1", 5_000, at(2), source="shopify"),
    )
    assert [e.points for e in ledger.entries] == [100, -50]


def test_refund_before_its_order_is_held_then_applied() -> None:
    refund = refund_event("A", "R1", 5_000, at(2))
    start = apply(empty(PAID, now=at(3)), refund, now=at(3))
    assert start.added == ()
    assert [h.event_id for h in start.ledger.held] == [refund.event_id]
    assert "waiting for order.paid" in start.ledger.held[0].reason
    order = apply(start.ledger, order_event("paid", "A", at(1)), now=at(3))
    assert order.ledger.held == ()
    assert [e.points for e in order.added] == [100, -50]


def test_refund_dated_before_the_trigger_applies_when_the_order_earns() -> None:
    ledger = build(
        FULFILLED,
        order_event("paid", "A", at(1)),
        refund_event("A", "R1", 5_000, at(2)),
        order_event("fulfilled", "A", at(5)),
    )
    assert [(e.kind.value, e.points, e.effective_at) for e in ledger.entries] == [
        ("earn", 100, at(5)),
        ("reverse", -50, at(5)),
    ]
    assert "held until the order earned" in ledger.entries[1].rule


def test_cancellation_with_no_order_at_all_is_held() -> None:
    ledger = build(PAID, order_event("cancelled", "A", at(2)))
    assert [h.type for h in ledger.held] == ["order.cancelled"]
    ledger = build(PAID, order_event("paid", "A", at(1)), order_event("cancelled", "A", at(2)))
    assert ledger.held == () and balance(ledger) == 0


# --- pending (return window) ------------------------------------------------------------------

PENDING = parse_program({"trigger": "paid", "pending_days": 30})


def test_points_pend_then_vest_after_the_return_window() -> None:
    ledger = build(PENDING, order_event("paid", "A", at(1)))
    assert kinds(ledger) == [("earn", 100, True), ("vest", 100, False)]
    inside = project(ledger, as_of=at(10))
    assert (inside.balance, inside.pending) == (0, 100)
    after = project(ledger, as_of=at(31))
    assert (after.balance, after.pending) == (100, 0)


def test_refund_inside_the_window_reduces_pending() -> None:
    ledger = build(PENDING, order_event("paid", "A", at(1)), refund_event("A", "R1", 4_000, at(5)))
    assert kinds(ledger) == [("earn", 100, True), ("reverse", -40, True), ("vest", 60, False)]
    state = project(ledger, as_of=at(6))
    assert (state.balance, state.pending, state.lifetime_spend) == (0, 60, 6_000)
    assert balance(ledger) == 60


def test_refund_after_vesting_reduces_the_balance() -> None:
    ledger = build(PENDING, order_event("paid", "A", at(1)), refund_event("A", "R1", 4_000, at(40)))
    assert kinds(ledger) == [("earn", 100, True), ("vest", 100, False), ("reverse", -40, False)]


def test_refund_at_the_vesting_instant_is_after_the_window() -> None:
    ledger = build(PENDING, order_event("paid", "A", at(1)), refund_event("A", "R1", 4_000, at(31)))
    assert kinds(ledger) == [("earn", 100, True), ("vest", 100, False), ("reverse", -40, False)]


def test_cancellation_inside_the_window_leaves_nothing_to_vest() -> None:
    ledger = build(PENDING, order_event("paid", "A", at(1)), order_event("cancelled", "A", at(2)))
    assert kinds(ledger) == [("earn", 100, True), ("reverse", -100, True)]
    assert project(ledger, as_of=NOW).pending == 0


def test_pending_points_and_spend_do_not_count_towards_tier() -> None:
    program = parse_program({"trigger": "paid", "pending_days": 30})
    ledger = build(program, order_event("paid", "A", at(1), net=60_000), now=at(40))
    assert project(ledger, as_of=at(10)).tier == "Bronze"
    assert project(ledger, as_of=at(10)).lifetime_spend == 60_000
    assert project(ledger, as_of=at(31)).tier == "Silver"


def test_vesting_waits_for_the_horizon() -> None:
    ledger = build(PENDING, order_event("paid", "A", at(1)), now=at(10))
    assert kinds(ledger) == [("earn", 100, True)]
    assert [e.kind for e in ledger.scheduled] == [EntryKind.VEST]
    # A forecast beyond the horizon counts the scheduled line.
    assert project(ledger, as_of=at(40)).balance == 100


# --- floor and negative balances --------------------------------------------------------------


def _redeemed_then_refunded(table: dict[str, object]) -> Ledger:
    ledger = build(
        parse_program({"trigger": "paid", **table}),
        order_event("paid", "A", at(1)),
        refund_event("A", "R1", 10_000, at(5)),
    )
    return rebuild(
        ledger.program,
        ledger.events,
        now=NOW,
        adjustments=[Adjustment("X1", EntryKind.REDEEM, -80, at(3), "reward: free tote")],
    )


def test_floor_at_zero_limits_the_reversal() -> None:
    ledger = _redeemed_then_refunded({})
    assert [e.points for e in ledger.entries] == [100, -80, -20]
    assert "limited to 20 by the floor at zero" in ledger.entries[-1].rule
    assert balance(ledger) == 0


def test_negative_balance_allowed() -> None:
    ledger = _redeemed_then_refunded({"negative_balance": "allow"})
    assert [e.points for e in ledger.entries] == [100, -80, -100]
    assert balance(ledger) == -80


def test_redemption_beyond_the_balance_is_limited_by_the_floor() -> None:
    ledger = rebuild(
        PAID,
        [order_event("paid", "A", at(1))],
        now=NOW,
        adjustments=[Adjustment("X1", EntryKind.REDEEM, -150, at(2), "reward")],
    )
    assert [e.points for e in ledger.entries] == [100, -100]


def test_adjustments_are_idempotent_and_may_count_towards_tier() -> None:
    ledger = empty(
        parse_program(
            {
                "tier_basis": "points",
                "tiers": [{"name": "Member", "min_points": 0}, {"name": "Plus", "min_points": 50}],
                "vip_tiers": [],
            }
        ),
        now=NOW,
    )
    bonus = Adjustment("B1", EntryKind.ADJUST, 60, at(1), "goodwill", counts_toward_tier=True)
    first = apply_adjustment(ledger, bonus, now=NOW)
    assert [e.points for e in first.added] == [60]
    assert project(first.ledger, as_of=NOW).tier == "Plus"
    again = apply_adjustment(first.ledger, bonus, now=NOW)
    assert again.duplicate and again.added == () and again.ledger == first.ledger


# --- expiry -----------------------------------------------------------------------------------

EXPIRING = parse_program({"trigger": "paid", "expiry": "inactivity", "expiry_days": 365})


def test_points_expire_after_inactivity() -> None:
    ledger = build(EXPIRING, order_event("paid", "A", at(1)))
    assert kinds(ledger) == [("earn", 100, False), ("expire", -100, False)]
    assert ledger.entries[-1].effective_at == at(366)
    assert balance(ledger, at(365)) == 100 and balance(ledger, at(366)) == 0


def test_activity_resets_the_inactivity_clock() -> None:
    ledger = build(
        EXPIRING,
        order_event("paid", "A", at(1)),
        order_event("paid", "B", at(300)),
        now=at(600),
    )
    assert kinds(ledger) == [("earn", 100, False), ("earn", 100, False)]
    assert [e.effective_at for e in ledger.scheduled] == [at(665)]
    ledger = build(
        EXPIRING,
        order_event("paid", "A", at(1)),
        order_event("paid", "B", at(400)),  # after the first expiry: a fresh start
        now=at(600),
    )
    assert kinds(ledger) == [("earn", 100, False), ("expire", -100, False), ("earn", 100, False)]


def test_refunds_are_not_activity() -> None:
    ledger = build(
        EXPIRING, order_event("paid", "A", at(1)), refund_event("A", "R1", 2_000, at(200))
    )
    assert [e.points for e in ledger.entries] == [100, -20, -80]
    assert ledger.entries[-1].effective_at == at(366)


def test_never_expiring_program() -> None:
    ledger = build(PAID, order_event("paid", "A", at(1)), now=at(5000))
    assert balance(ledger, at(5000)) == 100


# --- basis, currency, channels -----------------------------------------------------------------


def test_tax_shipping_and_discounts_per_policy() -> None:
    events = (
        order_event(
            "paid", "A", at(1), net=10_000, discounts=2_000, tax=800, shipping=500, gift_cards=5_000
        ),
    )
    assert balance(build(PAID, *events)) == 100
    smile = parse_program({"trigger": "paid", "include_tax": True, "include_shipping": True})
    assert balance(build(smile, *events)) == 113
    gross = parse_program({"trigger": "paid", "basis": "gross_merchandise"})
    assert balance(build(gross, *events)) == 120  # discounts not deducted; gift card never earns


def test_other_currency_earns_nothing_and_says_why() -> None:
    ledger = build(PAID, order_event("paid", "A", at(1), currency="EUR"))
    assert [e.points for e in ledger.entries] == [0]
    assert "order in EUR, program in USD" in ledger.entries[0].rule


def test_channels_that_do_not_earn() -> None:
    program = parse_program({"trigger": "paid", "earn_channels": ["online"]})
    ledger = build(
        program,
        order_event("paid", "A", at(1), channel="pos"),
        order_event("paid", "B", at(2), channel="online"),
    )
    assert [e.points for e in ledger.entries] == [0, 100]
    assert project(ledger, as_of=NOW).lifetime_spend == 20_000  # POS spend still counts


# --- the platform's own log -------------------------------------------------------------------


def test_recorded_points_are_kept_beside_never_mixed() -> None:
    ledger = build(
        PAID,
        order_event("paid", "A", at(1)),
        recorded(100, at(1.1), balance=100, ref="A"),
        recorded(100, at(1.2), balance=200, ref="A"),  # the platform awarded twice
    )
    state = project(ledger, as_of=NOW)
    assert state.balance == 100
    assert (state.recorded_points, state.recorded_balance) == (200, 200)
    assert len(ledger.recorded) == 2 and all(e.kind is EntryKind.EARN for e in ledger.entries)


# --- idempotency, retraction, statements -------------------------------------------------------


def test_applying_an_event_twice_changes_nothing() -> None:
    event = order_event("paid", "A", at(1))
    first = apply(empty(PAID, now=NOW), event, now=NOW)
    second = apply(first.ledger, event, now=NOW)
    assert second.duplicate and second.added == () and second.changes == ()
    assert second.ledger == first.ledger


def test_a_late_earlier_event_retracts_what_it_invalidates() -> None:
    # A redemption limited by the floor is recomputed when an earlier order arrives late.
    ledger = rebuild(
        PAID,
        [order_event("paid", "B", at(10))],
        now=NOW,
        adjustments=[Adjustment("X1", EntryKind.REDEEM, -150, at(20), "reward")],
    )
    assert [e.points for e in ledger.entries] == [100, -100]
    late = apply(ledger, order_event("paid", "A", at(1)), now=NOW)
    assert [e.points for e in late.retracted] == [-100]
    assert sorted(e.points for e in late.added) == [-150, 100]
    assert balance(late.ledger) == 50


def test_statement_explains_every_line_with_a_running_balance() -> None:
    ledger = build(
        PENDING,
        order_event("paid", "A", at(1), net=11_000),
        refund_event("A", "R1", 3_000, at(3)),
        order_event("paid", "B", at(40), net=5_000),
    )
    lines = statement(ledger.entries, as_of=NOW)
    assert [(ln.entry.kind.value, ln.balance, ln.pending) for ln in lines] == [
        ("earn", 0, 110),
        ("reverse", 0, 80),
        ("vest", 80, 0),
        ("earn", 80, 50),
        ("vest", 130, 0),
    ]
    assert all(ln.entry.rule for ln in lines)
    # Time travel: the statement as of day 35 stops after the first vest.
    assert [ln.balance for ln in statement(ledger.entries, as_of=at(35))] == [0, 0, 80]


def test_cancelling_a_non_earning_channel_order_takes_nothing_at_the_current_rate() -> None:
    program = parse_program(
        {
            "trigger": "paid",
            "earn_channels": ["online"],
            "reversal_rate": "current",
            "negative_balance": "allow",
        }
    )
    ledger = build(
        program,
        order_event("paid", "A", at(1), channel="pos"),
        order_event("cancelled", "A", at(2), channel="pos"),
    )
    assert [e.points for e in ledger.entries] == [0, 0]
