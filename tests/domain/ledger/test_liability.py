"""The liability report: outstanding points, value, breakage and ages, on a worked example."""

from __future__ import annotations

from typing import Any

import pytest

from handoff.domain.ledger import Adjustment, EntryKind, liability_report, parse_program, rebuild

from .factory import at, order_event, refund_event

TABLE: dict[str, Any] = {
    "trigger": "paid",
    "negative_balance": "allow",
    "expiry": "inactivity",
    "expiry_days": 365,
}
PROGRAM = parse_program(TABLE)
AS_OF = at(400)


def customers(table: dict[str, Any] | None = None) -> list[Any]:
    program = parse_program({**TABLE, **(table or {})})
    c1 = rebuild(  # 100 + 200 earned, 50 redeemed from the oldest lot
        program,
        [order_event("paid", "A", at(1)), order_event("paid", "B", at(200), net=20_000)],
        now=AS_OF,
        adjustments=[Adjustment("R1", EntryKind.REDEEM, -50, at(250), "reward")],
    )
    c2 = rebuild(  # spent its points, then the order was refunded: -50 (allowed)
        program,
        [order_event("paid", "C", at(10), net=5_000), refund_event("C", "RC", 5_000, at(30))],
        now=AS_OF,
        adjustments=[Adjustment("R2", EntryKind.REDEEM, -50, at(20), "reward")],
    )
    c3 = rebuild(program, [order_event("paid", "D", at(1))], now=AS_OF)  # expired on day 366
    return [c1.entries, c2.entries, c3.entries]


def test_worked_example() -> None:
    report = liability_report(PROGRAM, customers(), as_of=AS_OF)
    assert report.customers == 3
    assert report.outstanding_points == 250
    assert report.negative_points == 50
    assert report.outstanding_value == 250  # 250 points x 0.01 USD = 2.50 = 250 cents
    assert (report.redeemed_points, report.expired_points) == (100, 100)
    assert (report.breakage_source, report.breakage_rate_bp) == ("history", 5_000)
    assert (report.breakage_points, report.breakage_value, report.net_liability) == (125, 125, 125)
    assert [(b.label, b.points) for b in report.by_age] == [
        ("0-89 days", 0),
        ("90-179 days", 0),
        ("180-364 days", 200),  # order B, day 200
        ("365+ days", 50),  # what is left of order A after the redemption took the oldest points
    ]
    assert sum(b.points for b in report.by_age) == report.outstanding_points


def test_configured_breakage_rate_wins() -> None:
    program = parse_program({**TABLE, "breakage_rate": "0.2"})
    report = liability_report(program, customers(), as_of=AS_OF)
    assert (report.breakage_source, report.breakage_rate_bp, report.breakage_points) == (
        "configured",
        2_000,
        50,
    )


def test_no_history_means_no_breakage() -> None:
    program = parse_program({"trigger": "paid"})
    ledger = rebuild(program, [order_event("paid", "A", at(1))], now=AS_OF)
    report = liability_report(program, [ledger.entries], as_of=AS_OF)
    assert (report.breakage_source, report.breakage_points, report.net_liability) == (
        "none",
        0,
        100,
    )


def test_pending_points_and_value_are_reported_apart() -> None:
    program = parse_program({"trigger": "paid", "pending_days": 30, "point_value": "0.005"})
    ledger = rebuild(program, [order_event("paid", "A", at(1), net=30_100)], now=at(10))
    report = liability_report(program, [ledger.entries], as_of=at(10))
    assert (report.outstanding_points, report.pending_points) == (0, 301)
    assert report.pending_value == 151  # 301 x 0.5 cent = 150.5, rounded half up once


def test_time_travel_and_reversal_of_own_lot() -> None:
    program = parse_program({"trigger": "paid"})
    ledger = rebuild(
        program,
        [
            order_event("paid", "A", at(1)),
            order_event("paid", "B", at(100)),
            refund_event("B", "RB", 10_000, at(150)),  # takes back B's own points, not A's
        ],
        now=AS_OF,
    )
    report = liability_report(program, [ledger.entries], as_of=at(120))
    assert report.outstanding_points == 200
    report = liability_report(program, [ledger.entries], as_of=at(160))
    assert [b.points for b in report.by_age] == [0, 100, 0, 0]  # A's lot, 159 days old


def test_bucket_bounds_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        liability_report(PROGRAM, [], as_of=AS_OF, age_buckets=(0, 30))
