"""Tiers (spend or points; lifetime, rolling 12 months, calendar year; downgrades), VIP and the
attribute changes they emit."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from handoff.domain.events import CanonicalEvent
from handoff.domain.ledger import (
    Ledger,
    Program,
    advance,
    apply,
    empty,
    next_change_at,
    parse_program,
    project,
    rebuild,
)

from .factory import at, order_event, refund_event, vip_flag

NOW = at(1000)


def program(**table: Any) -> Program:
    return parse_program({"trigger": "paid", **table})


def build(p: Program, *events: CanonicalEvent, now: datetime = NOW) -> Ledger:
    return rebuild(p, events, now=now)


def tier(ledger: Ledger, when: datetime = NOW) -> str | None:
    return project(ledger, as_of=when).tier


# --- lifetime spend (reconcile.md default) -----------------------------------------------------


def test_lifetime_spend_tiers_with_refunds_deducted() -> None:
    ledger = build(
        program(),
        order_event("paid", "A", at(1), net=30_000),
        order_event("paid", "B", at(2), net=25_000),  # 550.00: Silver
        refund_event("B", "R1", 10_000, at(3)),  # 450.00: back to Bronze
    )
    assert tier(ledger, at(1)) == "Bronze"
    assert tier(ledger, at(2)) == "Silver"
    assert tier(ledger, at(3)) == "Bronze"
    state = project(ledger, as_of=NOW)
    assert (state.lifetime_spend, state.tier_spend) == (45_000, 45_000)
    assert state.tier_reason == "spend 450.00 (lifetime)"


def test_no_tier_below_the_first_threshold() -> None:
    p = program(tiers=[{"name": "Silver", "min_spend": "500"}], vip_tiers=[])
    state = project(build(p, order_event("paid", "A", at(1))), as_of=NOW)
    assert state.tier is None
    assert state.tier_reason == "spend 100.00 (lifetime) is below Silver (500.00)"


def test_points_tiers_count_earned_points_not_the_balance() -> None:
    from handoff.domain.ledger import Adjustment, EntryKind

    p = program(
        tier_basis="points",
        tiers=[{"name": "Member", "min_points": 0}, {"name": "Insider", "min_points": 150}],
        vip_tiers=["Insider"],
    )
    ledger = rebuild(
        p,
        [order_event("paid", "A", at(1)), order_event("paid", "B", at(2))],
        now=NOW,
        adjustments=[Adjustment("X", EntryKind.REDEEM, -200, at(3), "reward")],
    )
    state = project(ledger, as_of=NOW)
    assert (state.balance, state.tier_points, state.tier, state.vip) == (0, 200, "Insider", True)


# --- windows ----------------------------------------------------------------------------------


def test_rolling_twelve_months_downgrades_when_spend_leaves_the_window() -> None:
    p = program(tier_window="rolling_12_months")
    ledger = build(p, order_event("paid", "A", datetime(2026, 3, 1, tzinfo=UTC), net=250_000))
    assert tier(ledger, datetime(2027, 2, 28, tzinfo=UTC)) == "Gold"
    assert tier(ledger, datetime(2027, 3, 1, tzinfo=UTC)) == "Bronze"
    assert next_change_at(ledger, after=datetime(2026, 6, 1, tzinfo=UTC)) == datetime(
        2027, 3, 1, tzinfo=UTC
    )


def test_a_refund_counts_against_the_period_of_its_purchase() -> None:
    p = program(tier_window="calendar_year")
    ledger = build(
        p,
        order_event("paid", "A", datetime(2026, 12, 1, tzinfo=UTC), net=60_000),
        order_event("paid", "B", datetime(2027, 1, 5, tzinfo=UTC), net=60_000),
        refund_event("A", "R1", 60_000, datetime(2027, 1, 10, tzinfo=UTC)),
    )
    assert tier(ledger, datetime(2027, 1, 20, tzinfo=UTC)) == "Silver"  # 2027 spend untouched


def test_calendar_year_resets_on_the_first_of_january() -> None:
    p = program(tier_window="calendar_year")
    ledger = build(p, order_event("paid", "A", datetime(2026, 6, 1, tzinfo=UTC), net=250_000))
    assert tier(ledger, datetime(2026, 12, 31, 23, 59, tzinfo=UTC)) == "Gold"
    assert tier(ledger, datetime(2027, 1, 1, tzinfo=UTC)) == "Bronze"
    assert next_change_at(ledger, after=datetime(2026, 7, 1, tzinfo=UTC)) == datetime(
        2027, 1, 1, tzinfo=UTC
    )


# --- downgrades -------------------------------------------------------------------------------


def test_downgrade_never_keeps_the_highest_tier_reached() -> None:
    p = program(tier_downgrade="never")
    ledger = build(
        p, order_event("paid", "A", at(1), net=250_000), refund_event("A", "R1", 250_000, at(5))
    )
    state = project(ledger, as_of=NOW)
    assert state.tier == "Gold" and state.tier_spend == 0
    assert "Gold kept: tiers are never downgraded" in state.tier_reason


def test_downgrade_after_days_holds_the_tier_then_drops() -> None:
    p = program(
        tier_window="rolling_12_months", tier_downgrade="after_days", tier_downgrade_days=90
    )
    ledger = build(p, order_event("paid", "A", datetime(2026, 3, 1, tzinfo=UTC), net=250_000))
    assert tier(ledger, datetime(2027, 3, 2, tzinfo=UTC)) == "Gold"  # out of window, still held
    assert tier(ledger, datetime(2026, 5, 31, tzinfo=UTC)) == "Gold"
    assert tier(ledger, datetime(2027, 5, 31, tzinfo=UTC)) == "Bronze"  # 90 days after qualifying


def test_immediate_downgrade_is_the_open_loyalty_automatic_rule() -> None:
    ledger = build(
        program(),
        order_event("paid", "A", at(1), net=250_000),
        refund_event("A", "R", 100_000, at(2)),
    )
    assert tier(ledger, at(1)) == "Gold" and tier(ledger, at(2)) == "Silver"


# --- VIP --------------------------------------------------------------------------------------


def test_vip_by_tier() -> None:
    state = project(build(program(), order_event("paid", "A", at(1), net=200_000)), as_of=NOW)
    assert state.vip and state.vip_reason == "tier Gold is a VIP tier"


def test_vip_by_spend_threshold() -> None:
    p = program(vip_tiers=[], vip_min_spend="1000")
    assert not project(build(p, order_event("paid", "A", at(1), net=99_999)), as_of=NOW).vip
    state = project(build(p, order_event("paid", "A", at(1), net=100_000)), as_of=NOW)
    assert state.vip and "reaches vip_min_spend 1000" in state.vip_reason


def test_manual_flag_from_the_crm_overrides_and_latest_wins() -> None:
    rich = order_event("paid", "A", at(1), net=200_000)
    ledger = build(program(), rich, vip_flag(False, at(2), version="2"))
    state = project(ledger, as_of=NOW)
    assert not state.vip and state.manual_vip is False
    assert "manual flag False from crm" in state.vip_reason
    assert project(ledger, as_of=at(1.5)).vip  # before the flag: the tier rule
    # Numeric versions compare as numbers when times tie: "10" beats "9".
    ledger = build(
        program(), vip_flag(True, at(2), version="10"), vip_flag(False, at(2), version="9")
    )
    assert project(ledger, as_of=NOW).vip
    # A cleared flag (None) hands VIP back to the rule.
    ledger = build(program(), rich, vip_flag(False, at(2)), vip_flag(None, at(3)))
    assert project(ledger, as_of=NOW).vip


def test_manual_flag_strings_and_sources() -> None:
    ledger = build(program(), vip_flag("true", at(1)))
    assert project(ledger, as_of=NOW).vip
    ledger = build(program(), vip_flag("maybe", at(1)))
    assert not project(ledger, as_of=NOW).vip and "not a yes/no value" in ledger.notes[0].text
    only_hubspot = program(vip_flag_sources=["hubspot"])
    ledger = build(only_hubspot, vip_flag(True, at(1), source="zendesk"))
    assert not project(ledger, as_of=NOW).vip and ledger.flags == ()


def test_manual_override_can_be_switched_off() -> None:
    ledger = build(program(vip_manual_override=False), vip_flag(True, at(1)))
    state = project(ledger, as_of=NOW)
    assert not state.vip and state.manual_vip is True


# --- attribute changes ------------------------------------------------------------------------


def test_first_event_emits_the_initial_tier_and_flag() -> None:
    result = apply(empty(program(), now=at(1)), order_event("paid", "A", at(1)), now=at(1))
    assert [(c.attribute, c.value, c.previous) for c in result.changes] == [
        ("tier", "Bronze", None),
        ("is_vip", False, None),
    ]


def test_tier_and_vip_changes_are_emitted_only_when_they_change() -> None:
    ledger = apply(empty(program(), now=at(1)), order_event("paid", "A", at(1)), now=at(1)).ledger
    same = apply(ledger, order_event("paid", "B", at(2)), now=at(2))
    assert same.changes == ()
    gold = apply(same.ledger, order_event("paid", "C", at(3), net=200_000), now=at(3))
    assert [(c.attribute, c.value, c.previous) for c in gold.changes] == [
        ("tier", "Gold", "Bronze"),
        ("is_vip", True, False),
    ]
    assert gold.changes[0].reason == "spend 2200.00 (lifetime)"
    assert int(gold.changes[0].version) > 0
    flagged = apply(gold.ledger, vip_flag(False, at(4)), now=at(4))
    assert [(c.attribute, c.value) for c in flagged.changes] == [("is_vip", False)]


def test_time_alone_emits_a_downgrade_through_advance() -> None:
    p = program(tier_window="rolling_12_months")
    start = datetime(2026, 3, 1, tzinfo=UTC)
    ledger = apply(
        empty(p, now=start), order_event("paid", "A", start, net=250_000), now=start
    ).ledger
    wake = next_change_at(ledger, after=start)
    assert wake == datetime(2027, 3, 1, tzinfo=UTC)
    assert advance(ledger, now=datetime(2027, 2, 1, tzinfo=UTC)).changes == ()
    moved = advance(ledger, now=wake)
    assert [(c.attribute, c.value) for c in moved.changes] == [
        ("tier", "Bronze"),
        ("is_vip", False),
    ]


def test_vesting_through_advance_can_promote() -> None:
    p = program(pending_days=30)
    ledger = apply(
        empty(p, now=at(1)), order_event("paid", "A", at(1), net=200_000), now=at(1)
    ).ledger
    assert project(ledger, as_of=at(1)).tier == "Bronze"
    assert next_change_at(ledger, after=at(1)) == at(31)
    moved = advance(ledger, now=at(31))
    assert [e.kind.value for e in moved.added] == ["vest"]
    assert ("tier", "Gold") in [(c.attribute, c.value) for c in moved.changes]


def test_attribute_history_lists_every_change_when_it_happened() -> None:
    from handoff.domain.ledger import attribute_history

    p = program(tier_window="rolling_12_months")
    start = datetime(2026, 3, 1, tzinfo=UTC)
    ledger = build(
        p,
        order_event("paid", "A", start, net=60_000),
        order_event("paid", "B", datetime(2026, 6, 1, tzinfo=UTC), net=150_000),
        vip_flag(False, datetime(2026, 7, 1, tzinfo=UTC)),
        now=datetime(2027, 12, 1, tzinfo=UTC),
    )
    history = attribute_history(ledger, until=datetime(2027, 12, 1, tzinfo=UTC))
    assert [(c.effective_at.date().isoformat(), c.attribute, c.value) for c in history] == [
        ("2026-03-01", "tier", "Silver"),
        ("2026-03-01", "is_vip", False),
        ("2026-06-01", "tier", "Gold"),
        ("2026-06-01", "is_vip", True),
        ("2026-07-01", "is_vip", False),  # the CRM's manual flag overrides
        ("2027-03-01", "tier", "Silver"),  # order A leaves the window: 1500.00 left
        ("2027-06-01", "tier", "Bronze"),
    ]
