"""The scenario generator: seeded, arithmetically sound, and as noisy as the field."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import phonenumbers
import pytest

from handoff.sim.scenario import PLACEHOLDER_EMAILS, WEB, generate
from handoff.sim.scenario_config import (
    NoiseConfig,
    ScenarioConfigError,
    load_scenario_config,
    scenario_config_from_dict,
)
from tests.sim.conftest import small

NOISY = NoiseConfig(
    placeholder_email_rate=0.15,
    typo_email_rate=0.15,
    no_email_rate=0.1,
    staff_email_rate=0.1,
    placeholder_phone_rate=0.1,
    nickname_rate=0.5,
    name_case_rate=0.2,
    household_rate=0.2,
    cross_location_duplicate_rate=0.8,
)


def test_same_seed_same_world_other_seed_other_world() -> None:
    a, b = generate(small(seed=5)), generate(small(seed=5))
    assert a.people == b.people and a.customers == b.customers and a.orders == b.orders
    assert a.refunds == b.refunds and a.contacts == b.contacts
    other = generate(small(seed=6))
    assert other.orders != a.orders


def test_orders_add_up() -> None:
    s = generate(small(customers=80))
    assert s.orders and s.refunds
    for order in s.orders:
        assert order.net_merchandise == order.subtotal - order.discount - order.gift_card
        assert order.total == order.subtotal - order.discount + order.tax + order.shipping
        assert s.start <= order.placed_at <= order.paid_at <= s.end
        if order.channel == "pos":
            assert order.shipping == 0 and order.fulfilled_at is not None
        assert not (order.cancelled_at and order.fulfilled_at)
        refunded = sum(r.amount for r in s.refunds_of(order.order_id))
        assert 0 <= refunded <= order.net_merchandise
        for refund in s.refunds_of(order.order_id):
            assert order.fulfilled_at is not None and order.fulfilled_at < refund.refunded_at
            assert refund.refunded_at <= s.end
    kinds = Counter(o.status for o in s.orders)
    assert kinds["fulfilled"] and kinds["cancelled"]
    assert any(o.discount for o in s.orders) and any(o.gift_card for o in s.orders)
    assert any(o.shipping for o in s.orders) and any(r.full for r in s.refunds)
    assert any(not r.full for r in s.refunds)


def test_the_fields_noise_is_there() -> None:
    s = generate(small(customers=150, noise=NOISY))
    noise = Counter(n for c in s.customers for n in c.noise)
    for kind in (
        "placeholder_email",
        "typo_email",
        "no_email",
        "staff_email",
        "placeholder_phone",
        "nickname",
        "name_case",
        "cross_location_duplicate",
        "shared_household_email_phone",
    ):
        assert noise[kind] > 0, kind
    people = {p.person_id: p for p in s.people}
    for c in s.customers:
        person = people[c.person_id]
        if "placeholder_email" in c.noise:
            assert c.email in PLACEHOLDER_EMAILS
        if "typo_email" in c.noise:
            assert c.email != person.email
        if "staff_email" in c.noise:
            assert c.email is not None and c.email.startswith("staff.")
        if c.phone and "placeholder_phone" not in c.noise:
            parsed = phonenumbers.parse(c.phone, "US")
            assert phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164) == (
                person.phone
            )
    formats = {re.sub(r"\d", "9", c.phone) for c in s.customers if c.phone}
    assert len(formats) >= 6  # every phone format
    households = Counter(p.household_id for p in s.people if p.household_id)
    assert households and all(n == 2 for n in households.values())
    for hid in households:
        pair = [p for p in s.people if p.household_id == hid]
        assert pair[0].email == pair[1].email and pair[0].phone == pair[1].phone
        assert pair[0].first_name != pair[1].first_name
    # store staff and placeholders collapse different people onto one CRM contact
    assert any(len(c.person_ids) > 1 for c in s.contacts)
    # one person, several Shopify customers (cross-location, or till vs online account)
    per_person = Counter(c.person_id for c in s.customers)
    assert max(per_person.values()) > 1
    assert {c.store_id for c in s.customers} >= {WEB}


def test_vip_threshold_is_crossed_and_set_by_hand() -> None:
    from handoff.sim.truth import expected_by_person

    s = generate(small(customers=150))
    states = expected_by_person(s)
    assert any(st.vip_source == "tier" for st in states.values())
    assert any(st.vip_source == "manual" for st in states.values())
    assert s.manual_vips


def test_toml_config(tmp_path: Path) -> None:
    path = tmp_path / "retailer.toml"
    path.write_text(
        """
[scenario]
seed = 42
customers = 12
start = 2026-02-01T00:00:00Z
days = 30
stores = ["N1", "N2"]

[noise]
placeholder_email_rate = 0.2

[program]
pending_days = 14
tiers = [ { name = "Member", min_spend = "0" }, { name = "Star", min_spend = "300" } ]
vip_tiers = ["Star"]

[faults]
silent_pos_stores = ["N2"]
drop_rate = 0.05

[[faults.windows]]
target = "hubspot"
kind = "throttle"
start_hours = 10
duration_hours = 2
"""
    )
    config = load_scenario_config(path)
    assert config.seed == 42 and config.scenario.stores == ("N1", "N2")
    assert config.program.tiers[1].min_spend_minor == 30_000
    assert config.faults.windows[0].retry_after == 10
    s = generate(config)
    assert len(s.people) == 12 and (s.end - s.start).days == 30
    assert {o.store_id for o in s.orders} <= {"N1", "N2", WEB}


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(ScenarioConfigError, match=r"noise\.placeholder_emial_rate: unknown key"):
        scenario_config_from_dict({"noise": {"placeholder_emial_rate": 0.1}})
    with pytest.raises(ScenarioConfigError, match="drop_rate"):
        scenario_config_from_dict({"faults": {"drop_rate": 2}})
    with pytest.raises(ScenarioConfigError, match="ordered by min_spend"):
        scenario_config_from_dict(
            {
                "program": {
                    "tiers": [{"name": "A", "min_spend": "10"}, {"name": "B", "min_spend": "0"}]
                }
            }
        )
    with pytest.raises(ScenarioConfigError, match="no such file"):
        load_scenario_config(tmp_path / "missing.toml")


def test_the_documented_scenario_file_is_the_default(tmp_path: Path) -> None:
    """docs/simulator.md's example TOML parses and states the defaults."""
    from handoff.sim.scenario_config import ScenarioConfig

    doc = Path(__file__).parents[2] / "docs" / "simulator.md"
    block = re.findall(r"```toml\n(.*?)```", doc.read_text(), re.S)[0]
    (tmp_path / "doc.toml").write_text(block)
    config = load_scenario_config(tmp_path / "doc.toml")
    assert config.model_copy(update={"faults": ScenarioConfig().faults}) == ScenarioConfig()
    assert config.faults.windows[0].target == "webhooks:shopify"
