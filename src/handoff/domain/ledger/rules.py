"""The arithmetic of the program: earning basis, points per order, reversals. Integers only.

Rates are kept as exact integer ratios (a Decimal from the config turned into numerator and
denominator), so 1.5 points per unit on 12.99 is computed exactly and rounded once, per order.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from handoff.domain.events import OrderBody
from handoff.domain.ledger.program import Program, Rounding
from handoff.domain.money import exponent, from_minor


def divide(numerator: int, denominator: int, rounding: Rounding) -> int:
    """numerator / denominator rounded as the program says (denominator > 0)."""
    if denominator <= 0:
        raise ValueError("denominator must be positive")
    quotient, remainder = divmod(numerator, denominator)
    if rounding == "floor" or remainder == 0:
        return quotient
    if rounding == "ceil":
        return quotient + 1
    return quotient + (1 if 2 * remainder >= denominator else 0)  # half_up


def proportion(total: int, part: int, whole: int) -> int:
    """floor(total * part / whole): the reconcile.md reversal formula, 0 when whole is 0."""
    if whole <= 0 or total <= 0 or part <= 0:
        return 0
    return (total * min(part, whole)) // whole


def ratio(value: Decimal) -> tuple[int, int]:
    numerator, denominator = value.as_integer_ratio()
    return numerator, denominator


def rate_at(program: Program, at: datetime) -> Decimal:
    """Points per 1.00 of basis in effect at `at` (the base rate until the first change)."""
    rate = program.points_per_unit
    for change in program.rate_changes:
        if change.effective_from <= at:
            rate = change.points_per_unit
    return rate


@dataclass(frozen=True, slots=True)
class Basis:
    """What one order earns on, and why (for the entry's rule text)."""

    earning: int  # minor units the points are computed on
    spend: int  # minor units the order adds to tier / lifetime spend
    merchandise: int  # net merchandise: the denominator of refunds (refunds are merchandise)
    explanation: str


def order_basis(program: Program, order: OrderBody) -> Basis:
    """The earning basis: net (or gross) merchandise, plus tax and shipping if the program says.

    Gift cards never earn. 'gross_merchandise' ignores discounts (coupon discounts not deducted);
    the canonical order carries one discount total, so coupon and automatic discounts go together.
    """
    cur = order.currency
    gift = max(order.gift_cards, 0)
    if program.basis == "net_merchandise":
        earning = order.net_merchandise
        parts = [f"net merchandise {from_minor(order.net_merchandise, cur)}"]
    else:
        earning = order.subtotal - gift
        subtotal = from_minor(order.subtotal, cur)
        parts = [
            f"gross merchandise {from_minor(earning, cur)} (subtotal {subtotal}"
            f" less gift cards {from_minor(gift, cur)}; discounts not deducted)"
        ]
    if program.include_tax:
        earning += order.tax
        parts.append(f"tax {from_minor(order.tax, cur)}")
    if program.include_shipping:
        earning += order.shipping
        parts.append(f"shipping {from_minor(order.shipping, cur)}")
    earning = max(earning, 0)
    merchandise = max(order.net_merchandise, 0)
    spend = merchandise if program.spend_basis == "net_merchandise" else earning
    return Basis(
        earning=earning,
        spend=spend,
        merchandise=merchandise,
        explanation=" + ".join(parts),
    )


def points_for(program: Program, earning_minor: int, at: datetime) -> int:
    """Points for one order: basis * rate, rounded once (per order) as the program says."""
    numerator, denominator = ratio(rate_at(program, at))
    scale = 10 ** exponent(program.currency)
    return divide(max(earning_minor, 0) * numerator, denominator * scale, program.rounding)


def refund_amount(order: OrderBody) -> int:
    """Merchandise refunded: the event's amount, else the sum of its refund lines."""
    if order.refund_amount is not None:
        return max(order.refund_amount, 0)
    return max(sum(line.amount for line in order.refund_lines), 0)


@dataclass(frozen=True, slots=True)
class Reversal:
    points: int
    spend: int
    explanation: str


def refund_reversal(
    program: Program,
    *,
    points_base: int,
    already_reversed: int,
    spend_base: int,
    spend_reversed: int,
    merchandise: int,
    refunded_before: int,
    refunded_now: int,
    currency: str,
) -> Reversal:
    """Points and spend one refund takes back.

    Proportional: floor(points * refunded / merchandise) (reconcile.md), except that the refund
    which completes a full refund takes everything left, so refunding in pieces reverses exactly
    what was earned. All-or-nothing: nothing until the order is fully refunded, then everything.
    Never more than what is left on the order; spend always goes down in proportion.
    """
    cur = currency
    if merchandise <= 0:
        return Reversal(0, 0, "the order has no merchandise to refund against")
    after = min(refunded_before + refunded_now, merchandise)
    counted = after - refunded_before
    complete = after >= merchandise
    points_left = max(points_base - already_reversed, 0)
    spend_left = max(spend_base - spend_reversed, 0)
    spend = (
        spend_left if complete else min(proportion(spend_base, counted, merchandise), spend_left)
    )
    share = f"{from_minor(counted, cur)} of {from_minor(merchandise, cur)} merchandise refunded"
    if counted < refunded_now:
        share += f" (refund of {from_minor(refunded_now, cur)} exceeds what was left)"
    if complete:
        return Reversal(points_left, spend, f"{share}; order now fully refunded: all points left")
    if program.partial_refunds == "all_or_nothing":
        return Reversal(0, spend, f"{share}; partial refunds reverse nothing (all_or_nothing)")
    points = min(proportion(points_base, counted, merchandise), points_left)
    return Reversal(
        points,
        spend,
        f"{share}: floor({points_base} * {counted} / {merchandise}) = {points}",
    )
