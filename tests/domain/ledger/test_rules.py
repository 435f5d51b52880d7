"""Earning basis, per-order rounding and reversal arithmetic, on worked examples."""

from __future__ import annotations

import pytest

from handoff.domain.events import OrderBody
from handoff.domain.ledger import Program, parse_program
from handoff.domain.ledger.rules import (
    divide,
    order_basis,
    points_for,
    proportion,
    rate_at,
    refund_amount,
    refund_reversal,
)

from .factory import T0, at

# docs/erp-events.md §5: subtotal 150.00, discount 15.00, tax 9.45, shipping 7.50, gift card 25.00
ERP_EXAMPLE = OrderBody(
    order_id="SO-1001",
    currency="USD",
    subtotal=15_000,
    discounts=1_500,
    tax=945,
    shipping=750,
    gift_cards=2_500,
    net_merchandise=11_000,
    total=15_195,
)


@pytest.mark.parametrize(
    ("table", "earning"),
    [
        ({}, 11_000),  # net merchandise: 150 - 15 - 25 (gift card)
        ({"include_tax": True}, 11_945),
        ({"include_shipping": True}, 11_750),
        ({"include_tax": True, "include_shipping": True}, 12_695),  # Smile: tax and shipping in
        (
            {"basis": "gross_merchandise"},
            12_500,
        ),  # coupon discounts not deducted; gift card still out
    ],
)
def test_earning_basis(table: dict[str, object], earning: int) -> None:
    basis = order_basis(parse_program(table), ERP_EXAMPLE)
    assert basis.earning == earning
    assert basis.merchandise == 11_000  # refunds are always measured against net merchandise


def test_gift_cards_never_earn_whatever_the_basis() -> None:
    gift_only = ERP_EXAMPLE.model_copy(
        update={"subtotal": 2_500, "discounts": 0, "gift_cards": 2_500, "net_merchandise": 0}
    )
    for table in ({}, {"basis": "gross_merchandise"}):
        assert order_basis(parse_program(table), gift_only).earning == 0


def test_spend_basis_follows_the_program() -> None:
    smile = parse_program({"include_tax": True, "include_shipping": True})
    assert order_basis(smile, ERP_EXAMPLE).spend == 11_000
    smile = parse_program(
        {"include_tax": True, "include_shipping": True, "spend_basis": "earning_basis"}
    )
    assert order_basis(smile, ERP_EXAMPLE).spend == 12_695


@pytest.mark.parametrize(
    ("rounding", "cents", "points"),
    [
        ("floor", 1_299, 19),  # 12.99 x 1.5 = 19.485
        ("half_up", 1_299, 19),
        ("ceil", 1_299, 20),
        ("floor", 1_300, 19),  # 13.00 x 1.5 = 19.5
        ("half_up", 1_300, 20),
        ("ceil", 1_300, 20),  # exact halves round up, exact wholes stay
        ("ceil", 1_000, 15),
    ],
)
def test_rounding_is_per_order(rounding: str, cents: int, points: int) -> None:
    program = parse_program({"points_per_unit": "1.5", "rounding": rounding})
    assert points_for(program, cents, T0) == points


def test_zero_decimal_currency() -> None:
    program = parse_program(
        {"currency": "JPY", "points_per_unit": "0.01", "tiers": [], "vip_tiers": []}
    )
    assert points_for(program, 1_280, T0) == 12  # 1 point per 100 yen


def test_rate_changes_apply_from_their_instant() -> None:
    program = parse_program(
        {
            "rate_changes": [
                {"effective_from": at(10), "points_per_unit": 2},
                {"effective_from": at(20), "points_per_unit": "0.5"},
            ]
        }
    )
    assert rate_at(program, at(9)) == 1
    assert rate_at(program, at(10)) == 2
    assert rate_at(program, at(25)) == pytest.approx(0.5)
    assert points_for(program, 10_000, at(15)) == 200


def test_divide_and_proportion() -> None:
    assert divide(7, 2, "floor") == 3 and divide(7, 2, "half_up") == 4 and divide(7, 2, "ceil") == 4
    assert proportion(110, 3_000, 11_000) == 30  # floor(110 x 3000 / 11000)
    assert proportion(110, 20_000, 11_000) == 110  # never more than the whole
    assert proportion(110, 3_000, 0) == 0
    with pytest.raises(ValueError, match="positive"):
        divide(1, 0, "floor")


def test_refund_amount_falls_back_to_lines() -> None:
    from handoff.domain.events import RefundLine

    body = ERP_EXAMPLE.model_copy(
        update={
            "refund_amount": None,
            "refund_lines": (
                RefundLine(quantity=1, amount=700),
                RefundLine(quantity=1, amount=300),
            ),
        }
    )
    assert refund_amount(body) == 1_000


def _refund(program: Program, before: int, now: int, reversed_: int = 0) -> tuple[int, int]:
    r = refund_reversal(
        program,
        points_base=10,
        already_reversed=reversed_,
        spend_base=300,
        spend_reversed=before,
        merchandise=300,
        refunded_before=before,
        refunded_now=now,
        currency="USD",
    )
    return r.points, r.spend


def test_proportional_refund_in_pieces_reverses_exactly_what_was_earned() -> None:
    program = Program()
    assert _refund(program, 0, 100) == (3, 100)  # floor(10 x 100/300)
    assert _refund(program, 100, 100, 3) == (3, 100)
    assert _refund(program, 200, 100, 6) == (4, 100)  # completes the refund: all that is left


def test_all_or_nothing_reverses_only_a_full_refund() -> None:
    program = parse_program({"partial_refunds": "all_or_nothing"})
    assert _refund(program, 0, 299) == (0, 299)  # spend still goes down
    assert _refund(program, 299, 1) == (10, 1)


def test_over_refund_is_capped() -> None:
    assert _refund(Program(), 200, 500, 6) == (4, 100)
    assert _refund(Program(), 300, 100, 10) == (0, 0)
