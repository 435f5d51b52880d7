"""The [program] table: reconcile.md defaults, policy options, and errors that name the key."""

from __future__ import annotations

import tomllib
from datetime import timedelta
from decimal import Decimal

import pytest
from pydantic import BaseModel, ValidationError

from handoff.domain.ledger import Program, ProgramError, parse_program

RECONCILE_TABLE = """
[program]
currency = "USD"
points_per_unit = 1          # points per 1.00 of the earning basis
basis = "net_merchandise"    # subtotal - discount; tax, shipping and gift cards never earn
trigger = "fulfilled"        # or "paid"; "placed" is not allowed
rounding = "floor"           # per order
pending_days = 0             # return window before points vest
timing_tolerance = "24h"     # an event later than this after its trigger is a timing finding
tiers = [ { name = "Bronze", min_spend = "0" },
          { name = "Silver", min_spend = "500" },
          { name = "Gold",   min_spend = "2000" } ]   # on lifetime net spend, refunds deducted
vip_tiers = ["Gold"]
"""


def problems(table: dict[str, object]) -> str:
    with pytest.raises(ProgramError) as info:
        parse_program(table)
    return str(info.value)


def test_defaults_are_exactly_reconcile_md() -> None:
    program = Program()
    assert program == parse_program(tomllib.loads(RECONCILE_TABLE)["program"])
    assert program.currency == "USD"
    assert program.points_per_unit == Decimal(1)
    assert program.basis == "net_merchandise"
    assert not program.include_tax and not program.include_shipping
    assert program.trigger == "fulfilled"
    assert program.rounding == "floor"
    assert program.pending_days == 0
    assert program.tolerance == timedelta(hours=24)
    assert program.tier_thresholds() == (("Bronze", 0), ("Silver", 50_000), ("Gold", 200_000))
    assert program.tier_basis == "spend" and program.tier_window == "lifetime"
    assert program.vip_tiers == ("Gold",)
    assert program.partial_refunds == "proportional"
    assert program.reversal_rate == "original"


def test_empty_table_means_defaults() -> None:
    assert parse_program(None) == Program()
    assert parse_program({}) == Program()


def test_trigger_placed_is_refused_with_a_reason() -> None:
    text = problems({"trigger": "placed"})
    assert text.startswith("program.trigger = 'placed': 'placed' is not allowed")
    assert "cancelled" in text
    assert "allowed: 'paid' or 'fulfilled'" in text


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [
        ("basis", "total", "'net_merchandise' or 'gross_merchandise'"),
        ("rounding", "bankers", "'floor', 'half_up' or 'ceil'"),
        ("partial_refunds", "none", "'proportional' or 'all_or_nothing'"),
        ("reversal_rate", "latest", "'original' or 'current'"),
        ("negative_balance", "debt", "'floor' or 'allow'"),
        ("expiry", "monthly", "'never' or 'inactivity'"),
        ("tier_window", "quarter", "'lifetime', 'rolling_12_months' or 'calendar_year'"),
        ("tier_downgrade", "sometimes", "'immediate', 'never' or 'after_days'"),
        ("trigger", "shipped", "'paid' or 'fulfilled'"),
    ],
)
def test_bad_choices_name_key_value_and_allowed(key: str, value: str, allowed: str) -> None:
    assert problems({key: value}) == f"program.{key} = {value!r}: not allowed; allowed: {allowed}"


def test_unknown_key_is_named() -> None:
    assert problems({"points_per_dollar": 2}) == "program.points_per_dollar: unknown key (value 2)"


def test_every_problem_is_reported_at_once() -> None:
    text = problems({"basis": "total", "pending_days": -1})
    assert "program.basis" in text and "program.pending_days = -1" in text


def test_vip_tier_must_be_a_tier() -> None:
    text = problems({"vip_tiers": ["Platinum"]})
    assert "program.vip_tiers" in text
    assert "'Platinum' is not a tier; allowed: 'Bronze', 'Silver', 'Gold'" in text


def test_tier_thresholds_must_increase() -> None:
    text = problems(
        {"tiers": [{"name": "A", "min_spend": "100"}, {"name": "B", "min_spend": "50"}]}
    )
    assert "program.tiers" in text and "thresholds must increase" in text


def test_points_tiers_need_min_points() -> None:
    text = problems({"tier_basis": "points", "vip_tiers": []})
    assert "needs min_points (tier_basis='points')" in text
    program = parse_program(
        {
            "tier_basis": "points",
            "tiers": [{"name": "Member", "min_points": 0}, {"name": "VIP", "min_points": 1000}],
            "vip_tiers": ["VIP"],
        }
    )
    assert program.tier_thresholds() == (("Member", 0), ("VIP", 1000))


def test_amounts_follow_the_currency() -> None:
    text = problems(
        {"currency": "JPY", "tiers": [{"name": "A", "min_spend": "0.5"}], "vip_tiers": []}
    )
    assert "more decimals than JPY allows" in text
    program = parse_program(
        {"currency": "JPY", "tiers": [{"name": "A", "min_spend": "5000"}], "vip_tiers": []}
    )
    assert program.tier_thresholds() == (("A", 5000),)


def test_min_spend_must_not_be_a_float() -> None:
    assert "decimal string" in problems({"vip_min_spend": 500.5})


def test_rates_are_exact_decimals() -> None:
    assert parse_program({"points_per_unit": 1.5}).points_per_unit == Decimal("1.5")
    assert parse_program({"points_per_unit": "0.1"}).points_per_unit == Decimal("0.1")
    assert "must not be negative" in problems({"points_per_unit": -1})
    assert "not a boolean" in problems({"points_per_unit": True})


def test_rate_changes_need_offsets_and_order() -> None:
    ok = parse_program(
        {"rate_changes": [{"effective_from": "2026-06-01T00:00:00Z", "points_per_unit": 2}]}
    )
    assert ok.rate_changes[0].points_per_unit == 2
    assert "has no UTC offset" in problems(
        {"rate_changes": [{"effective_from": "2026-06-01T00:00:00", "points_per_unit": 2}]}
    )
    assert "strictly increase" in problems(
        {
            "rate_changes": [
                {"effective_from": "2026-06-01T00:00:00Z", "points_per_unit": 2},
                {"effective_from": "2026-05-01T00:00:00Z", "points_per_unit": 3},
            ]
        }
    )


def test_expiry_must_outlast_the_pending_period() -> None:
    text = problems({"pending_days": 30, "expiry": "inactivity", "expiry_days": 30})
    assert "program.expiry_days = 30: 30 must exceed pending_days (30)" in text


def test_tolerance_and_breakage_are_checked() -> None:
    assert "is not a duration" in problems({"timing_tolerance": "a day"})
    assert parse_program({"timing_tolerance": "90m"}).tolerance == timedelta(minutes=90)
    assert "between 0 and 1" in problems({"breakage_rate": "1.5"})


def test_errors_name_the_key_inside_a_larger_config() -> None:
    class Config(BaseModel):
        program: Program = Program()

    with pytest.raises(ValidationError) as info:
        Config.model_validate({"program": {"trigger": "placed"}})
    error = info.value.errors()[0]
    assert error["loc"] == ("program", "trigger")
    assert "'placed' is not allowed" in error["msg"]


def test_the_documented_table_parses() -> None:
    from pathlib import Path

    text = (Path(__file__).parents[3] / "docs" / "ledger.md").read_text(encoding="utf-8")
    block = text.split("```toml", 1)[1].split("```", 1)[0]
    program = parse_program(tomllib.loads(block)["program"])
    assert (
        program.trigger == "fulfilled" and program.tier_thresholds() == Program().tier_thresholds()
    )
