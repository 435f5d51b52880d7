"""CRM read-back over real HTTP against the simulated HubSpot, on both databases: a contact that a
webhook named by id alone is read through the CRM API and joins the customer its email belongs
to; a contact the CRM no longer has is quarantined with the reason; nothing is read twice."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from handoff.connectors.base import SourceOptions
from handoff.connectors.hubspot import HubSpotConnector
from handoff.hub import Hub
from handoff.pipeline.read_back import read_backs
from handoff.pipeline.stages import build_processor
from handoff.sim.clock import SimClock
from handoff.sim.stack import SIM_TOKENS, SimStack
from handoff.store import receipts as rs
from tests.conftest import SECRETS
from tests.identity.test_unmerge import customer_of, shop
from tests.ledger.helpers import NOW, seed

TOKEN_ENV = "HUBSPOT_PRIVATE_APP_TOKEN"


@pytest.fixture
def crm() -> Iterator[SimStack]:
    with SimStack(SimClock(NOW)) as stack:
        yield stack


def contact_created(contact_id: str, event_id: int) -> tuple[str, str, str, dict[str, str], bytes]:
    body = json.dumps(
        [
            {
                "eventId": event_id,
                "subscriptionId": 101,
                "portalId": 424242,
                "appId": 987654,
                "occurredAt": 1767571405000,
                "subscriptionType": "contact.creation",
                "attemptNumber": 0,
                "objectId": int(contact_id),
                "changeFlag": "CREATED",
                "changeSource": "CRM_UI",
            }
        ]
    ).encode()
    return ("crm", "hubspot", f"hs-{event_id}", {}, body)


def test_thin_contacts_are_read_back_and_join_their_customer(
    crm: SimStack, hub_factory: Callable[..., Hub]
) -> None:
    api = crm.urls["hubspot"]
    sources: dict[str, Any] = {
        "shop": {"vendor": "shopify", "role": "pos", "secret_env": "SHOP_SECRET"},
        "crm": {
            "vendor": "hubspot",
            "role": "crm",
            "secret_env": "CRM_SECRET",
            "options": {"api_base_url": api, "api_token_env": TOKEN_ENV},
        },
    }
    hub = hub_factory(env=SECRETS | {TOKEN_ENV: SIM_TOKENS["hubspot"]}, sources=sources)
    made = httpx.post(
        f"{api}/crm/v3/objects/contacts",
        json={
            "properties": {"email": "ana.silva@gmail.com", "firstname": "Ana", "lastname": "Silva"}
        },
        headers={"Authorization": f"Bearer {SIM_TOKENS['hubspot']}"},
    )
    assert made.status_code == 201, made.text
    contact_id = str(made.json()["id"])

    seed(hub, [shop("customers/create", "s1", "customer.json", email="ana.silva@gmail.com")])
    seed(hub, [contact_created(contact_id, 1), contact_created("999999", 2)])
    processor = build_processor(hub)
    processor.drain()
    shopper = customer_of(hub, "shop", "7001")
    assert customer_of(hub, "crm", contact_id) != shopper  # an id alone: a customer of its own

    [task] = read_backs(hub)
    assert task.run_once() == 2  # the contact, and the one the CRM does not have
    processor.drain()
    assert customer_of(hub, "crm", contact_id) == shopper
    with hub.db.read() as conn:
        rows = rs.list_receipts(conn, rs.ReceiptFilter(), 100)
    missing = [r for r in rows if r.delivery_id == "read-back:999999:missing"]
    assert len(missing) == 1 and missing[0].status == "quarantined"
    assert "not found in the CRM" in (missing[0].status_reason or "")
    assert task.run_once() == 0  # read once
    task.stop()


def test_read_back_options_are_checked() -> None:
    for extra, words in (
        ({"api_base_url": "http://127.0.0.1:1"}, "go together"),
        ({"api_base_url": "ftp://x", "api_token_env": "T"}, "http"),
        ({"api_base_url": "http://127.0.0.1:1", "api_token_env": ""}, "environment variable"),
    ):
        with pytest.raises(ValueError, match=words):
            HubSpotConnector(SourceOptions(name="crm", role="crm", extra=extra))
