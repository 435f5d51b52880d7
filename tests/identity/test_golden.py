"""The golden record's survivorship rules and the `[identity]` settings: pure rules first, then
through the live stage on both databases."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from handoff.config import ConfigError, IdentityConfig, parse_config
from handoff.domain.identity import NormalizeConfig, Profile, normalize, screen
from handoff.hub import Hub
from handoff.pipeline.identity_stage import GoldenRules, IdentityStage, engine_settings, survive
from handoff.store import identity as store
from handoff.store.identity import Golden
from tests.identity.test_stage import profile, run

EMPTY = Golden(
    1, dict.fromkeys(("email", "phone", "first_name", "last_name", "zip", "birth_date")), {}, 1
)


def offer(record: Golden, system: str, rules: GoldenRules, **fields: str) -> Golden:
    p = Profile(record_id=f"r-{system}-{len(record.sources)}", system=system, **fields)
    norm = screen(normalize(p, NormalizeConfig(default_region="US")))
    return survive(record, p, norm, system, rules) or record


def test_most_recent_by_default() -> None:
    rules = GoldenRules()
    g = offer(EMPTY, "erp", rules, first_name="Ana", date_of_birth="1990-04-02")
    g = offer(g, "shop", rules, first_name="Anna")
    assert g.fields["first_name"] == "Anna" and g.sources["first_name"] == "shop"


def test_most_trusted_and_first_seen() -> None:
    rules = GoldenRules({"first_name": "most_trusted", "birth_date": "first_seen"}, ("erp", "crm"))
    g = offer(EMPTY, "shop", rules, first_name="Anna", date_of_birth="1990-04-02")
    assert g.fields["first_name"] == "Anna"  # anything beats nothing
    g = offer(g, "erp", rules, first_name="Ana", date_of_birth="1990-02-04")
    assert (g.fields["first_name"], g.sources["first_name"]) == ("Ana", "erp")
    assert g.fields["birth_date"] == "19900402"  # the first one stays
    g = offer(g, "shop", rules, first_name="Annie")  # less trusted than the ERP: ignored
    assert g.fields["first_name"] == "Ana"
    g = offer(g, "erp", rules, first_name="Ana Maria")  # as trusted, newer: taken
    assert g.fields["first_name"] == "Ana Maria"
    g = offer(g, "crm", rules, first_name="A.")
    assert g.fields["first_name"] == "Ana Maria"


def test_identity_settings_are_validated() -> None:
    assert IdentityConfig().merge_threshold == 0.99
    for bad, words in (
        ({"review_threshold": 0.995}, "review_threshold"),
        ({"survivorship": {"shoe_size": "most_recent"}}, "unknown fields"),
        ({"survivorship": {"email": "most_trusted"}}, "needs `trust`"),
        ({"survivorship": {"email": "loudest"}}, "most_recent"),
    ):
        with pytest.raises(ConfigError, match=words):
            parse_config({"identity": bad})
    thresholds, guards = engine_settings(
        IdentityConfig(
            merge_threshold=0.95,
            placeholder_emails=["FrontDesk@OakStreetShoes.com"],
            placeholder_phones=["(212) 555-0100"],
            exclusive_systems=["loyaltylion"],
        )
    )
    assert (thresholds.merge, thresholds.review) == (0.95, 0.80)
    assert "frontdesk@oakstreetshoes.com" in guards.placeholder_emails
    assert "test@test.com" in guards.placeholder_emails  # added to the built-in list
    assert "2125550100" in guards.placeholder_phones
    assert guards.exclusive_systems == frozenset({"loyaltylion"})


def test_the_stage_takes_its_settings_from_the_config(hub_factory: Callable[..., Hub]) -> None:
    hub = hub_factory(
        identity={
            "placeholder_emails": ["frontdesk@oakstreetshoes.com"],
            "survivorship": {"last_name": "most_trusted"},
            "trust": ["erp"],
        }
    )
    stage = IdentityStage.from_hub(hub)
    assert "frontdesk@oakstreetshoes.com" in stage.guards.placeholder_emails
    a = profile("shop", "1", 1, email="frontdesk@oakstreetshoes.com", first="Ana", last="Reyes")
    b = profile("crm", "2", 2, email="frontdesk@oakstreetshoes.com", first="Ana", last="Reyes")
    batch = run(hub, [a, b])
    # the configured placeholder identifies nobody: no exact-email merge (names alone are not
    # enough for the default thresholds without a zip or birth date)
    assert batch.customers[a.event_id] != batch.customers[b.event_id]
    c = profile("erp", "E-1", 3, email="ana.reyes@gmail.com", first="Ana", last="Reyes")
    d = profile("shop", "7", 4, email="ana.reyes@gmail.com", first="Ana", last="Reyes-Cruz")
    batch = run(hub, [c, d])
    customer = batch.customers[c.event_id]
    assert batch.customers[d.event_id] == customer
    with hub.db.read() as conn:
        found = store.contact(conn, customer)
    assert found is not None and found.last_name == "Reyes"  # the ERP is trusted for it


def test_when_golden_fields_change_the_version_moves() -> None:
    rules = GoldenRules()
    g = offer(EMPTY, "erp", rules, email="ana@gmail.com")
    again = offer(g, "erp", rules, email="ana@gmail.com")
    assert again is g  # nothing changed
    newer = offer(g, "erp", rules, email="ana.reyes@gmail.com")
    assert newer.version == g.version + 1
