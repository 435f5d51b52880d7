"""The vendor writers against the simulator's look-alikes: the VIP flag fanned out to Shopify,
Zendesk and Klaviyo (and HubSpot), points to LoyaltyLion, ids learned by email, read-back."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pytest
from sqlalchemy import Connection

from handoff.connectors.writers.base import Recipient
from handoff.delivery import recipients
from handoff.delivery.outbox import enqueue
from handoff.delivery.worker import Worker
from handoff.domain.changes import PointsAdjustment, ProfileRelay
from handoff.hub import Hub
from handoff.sim.clock import SimClock
from handoff.sim.stack import SIM_TOKENS, SimStack
from handoff.store import outbox as store
from tests.delivery.conftest import EMAIL
from tests.delivery.helpers import run_until_done, vip

TOKENS = {f"SIM_{k.upper()}_TOKEN": v for k, v in SIM_TOKENS.items()}


def _destinations(stack: SimStack) -> dict[str, Any]:
    urls = stack.urls
    return {
        "till": {
            "vendor": "shopify",
            "role": "pos",
            "base_url": urls["shopify"],
            "token_env": "SIM_SHOPIFY_TOKEN",
            "verify": True,
            "fields": {"is_vip": {"metafield": "custom.vip_status", "tag": "VIP"}},
        },
        "helpdesk": {
            "vendor": "zendesk",
            "role": "helpdesk",
            "base_url": urls["zendesk"],
            "token_env": "SIM_ZENDESK_TOKEN",
            "verify": True,
            "fields": {"is_vip": {"user_field": "vip"}},
        },
        "email": {
            "vendor": "klaviyo",
            "role": "comms",
            "base_url": urls["klaviyo"],
            "token_env": "SIM_KLAVIYO_TOKEN",
            "fields": {"is_vip": "is_vip"},
        },
        "crm": {
            "vendor": "hubspot",
            "role": "crm",
            "base_url": urls["hubspot"],
            "token_env": "SIM_HUBSPOT_TOKEN",
            "fields": {"is_vip": "vip_status"},
        },
        "loyalty": {
            "vendor": "loyaltylion",
            "role": "loyalty",
            "base_url": urls["loyaltylion"],
            "token_env": "SIM_LOYALTYLION_TOKEN",
        },
    }


class Identity:
    """A stand-in for identity's contact lookup that remembers the ids writers learn."""

    def __init__(self) -> None:
        self.ids: dict[str, str] = {}

    def lookup(self, conn: Connection, ids: Iterable[int]) -> dict[int, Recipient]:
        return {i: Recipient(i, EMAIL, first_name="Ana", external_ids=dict(self.ids)) for i in ids}

    def remember(self, conn: Connection, customer: int, system: str, ext: str, now: Any) -> None:
        self.ids[system] = ext


@pytest.fixture
def identity(monkeypatch: pytest.MonkeyPatch) -> Identity:
    found = Identity()
    monkeypatch.setattr(recipients, "remember", found.remember)
    for name, value in TOKENS.items():
        monkeypatch.setenv(name, value)
    return found


def test_vip_flag_fans_out_to_every_destination(
    make_hub: Callable[..., Hub], stack: SimStack, clock: SimClock, identity: Identity
) -> None:
    hub = make_hub(_destinations(stack), env=TOKENS)
    worker = Worker(hub, seed=1, lookup=identity.lookup)
    try:
        with hub.db.write() as conn:
            assert enqueue(conn, [vip(42, True, 1, clock)], clock.now()) == 4
        run_until_done(worker, hub, clock)
        shop = stack.apis.shopify.customers[501]
        assert shop.metafields[("custom", "vip_status")].value == "true"
        assert "VIP" in shop.tags
        assert stack.apis.zendesk.users[9001].user_fields["vip"] is True
        profiles = [
            p for p in stack.apis.klaviyo.profiles.values() if p.attributes.get("email") == EMAIL
        ]
        assert len(profiles) == 1 and profiles[0].properties["is_vip"] is True
        contacts = [
            c for c in stack.apis.hubspot.contacts.values() if c.properties.get("email") == EMAIL
        ]
        assert len(contacts) == 1 and contacts[0].properties["vip_status"] == "true"
        # ids found by email were remembered, so the next change goes straight to the record
        assert identity.ids == {
            "till": "501",
            "helpdesk": "9001",
            "email": profiles[0].id,
            "crm": str(contacts[0].id),
        }
        searches = len(stack.apis.shopify.log)
        with hub.db.write() as conn:
            enqueue(conn, [vip(42, False, 2, clock)], clock.now())
        run_until_done(worker, hub, clock)
    finally:
        worker.close()
    assert "VIP" not in shop.tags
    assert shop.metafields[("custom", "vip_status")].value == "false"
    assert stack.apis.zendesk.users[9001].user_fields["vip"] is False
    assert profiles[0].properties["is_vip"] is False
    assert contacts[0].properties["vip_status"] == "false"
    shopify_calls = [r.body for r in stack.apis.shopify.log[searches:]]
    assert not any(b"customers(first" in body for body in shopify_calls)
    with hub.db.read() as conn:
        assert {r.status for r in store.list_rows(conn, store.DeliveryFilter(), 20)} == {
            "delivered"
        }


def test_stale_compare_digest_is_retried_against_the_new_state(
    make_hub: Callable[..., Hub], stack: SimStack, clock: SimClock, identity: Identity
) -> None:
    dests = {"till": _destinations(stack)["till"]}
    hub = make_hub(dests, env=TOKENS)
    api = stack.apis.shopify
    real = api._metafields_set
    raced = {"done": False}

    def someone_else_first(args: dict[str, Any]) -> dict[str, Any]:
        if not raced["done"]:  # another app writes between our read and our write
            raced["done"] = True
            real({"metafields": [dict(args["metafields"][0], value="false", compareDigest=None)]})
        return real(args)

    api._metafields_set = someone_else_first  # type: ignore[method-assign]
    worker = Worker(hub, seed=1, lookup=identity.lookup)
    try:
        with hub.db.write() as conn:
            enqueue(conn, [vip(42, True, 1, clock)], clock.now())
        run_until_done(worker, hub, clock)
        with hub.db.read() as conn:
            row = store.list_rows(conn, store.DeliveryFilter(), 5)[0]
            attempts = store.attempts_of(conn, row.id)
    finally:
        worker.close()
    assert [a["outcome"] for a in attempts] == ["retry", "delivered"]
    assert "STALE_OBJECT" in (attempts[0]["error"] or "")
    assert api.customers[501].metafields[("custom", "vip_status")].value == "true"


def test_points_reach_loyaltylion_once_even_when_the_first_answer_is_lost(
    make_hub: Callable[..., Hub], stack: SimStack, clock: SimClock, identity: Identity
) -> None:
    hub = make_hub({"loyalty": _destinations(stack)["loyalty"]}, env=TOKENS)
    api = stack.apis.loyaltylion
    real = api._points
    lost = {"left": 1}

    async def applied_but_timed_out(request: Any, sign: int) -> Any:
        response = await real(request, sign)
        if lost["left"]:
            lost["left"] -= 1
            from starlette.responses import Response

            return Response(b"gateway timeout", 504)  # applied, but we never hear so
        return response

    api._points = applied_but_timed_out  # type: ignore[method-assign]
    worker = Worker(hub, seed=1, lookup=identity.lookup)
    try:
        with hub.db.write() as conn:
            enqueue(
                conn,
                [
                    PointsAdjustment(42, 150, "goodwill", "adj-1", "t", clock.now()),
                    PointsAdjustment(42, -40, "refund", "adj-2", "t", clock.now()),
                    ProfileRelay(42, {"email": EMAIL}, 1, "t", clock.now()),
                ],
                clock.now(),
            )
        run_until_done(worker, hub, clock)
    finally:
        worker.close()
    adjustments = [a for a in api.activity if a.member_id == "501" and a.kind == "adjust"]
    assert [a.points for a in adjustments] == [150, -40]  # the lost answer did not double it
    assert all("[hk:adj-" in a.reason for a in adjustments)
