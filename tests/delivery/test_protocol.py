"""The seeds' end-to-end protocol: a CRM user ticks VIP in the simulated HubSpot; the flag shows
on the simulated Shopify customer, Zendesk user and Klaviyo profile.

The whole path runs — HubSpot's signed webhook, the gateway, the processor, the ledger stage
(which turns the manual VIP flag into an `is_vip` change), the outbox stage, the worker and the
vendors' APIs — except identity resolution, which a stand-in stage replaces (every event is the
same golden customer) until identity's stage is in the pipeline.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import Connection

from handoff.connectors import hubspot as hubspot_connector
from handoff.delivery.worker import Worker
from handoff.hub import Hub
from handoff.pipeline.ledger_stage import LedgerStage
from handoff.pipeline.outbox_stage import OutboxStage
from handoff.pipeline.processor import Processor, StageBatch
from handoff.sim.clock import SimClock
from handoff.sim.stack import SIM_SECRETS, SIM_SOURCES, SimStack
from handoff.sim.vendors.hubspot import epoch_ms
from handoff.web.server import ServerThread
from tests.delivery.test_vendors import EMAIL, TOKENS, Identity, _destinations

CUSTOMER = 42


class OneCustomer:
    """Identity's place in the pipeline, reduced to: every event is customer 42."""

    def handle(self, conn: Connection, batch: StageBatch) -> None:
        for event in batch.events:
            batch.customers[event.event_id] = CUSTOMER


def test_crm_vip_flag_reaches_pos_helpdesk_and_email(
    make_hub: Callable[..., Hub],
    stack: SimStack,
    clock: SimClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    found = Identity()
    from handoff.delivery import recipients

    monkeypatch.setattr(recipients, "remember", found.remember)
    for name, value in (TOKENS | SIM_SECRETS).items():
        monkeypatch.setenv(name, value)
    dests = {k: v for k, v in _destinations(stack).items() if k in ("till", "helpdesk", "email")}
    hub = make_hub(dests, env=TOKENS | SIM_SECRETS)
    hub = Hub.build(
        hub.settings.model_copy(
            update={
                "config": hub.settings.config.model_copy(
                    update={"sources": {"crm": _source("hubspot")}}
                )
            }
        ),
        env=TOKENS | SIM_SECRETS,
        clock=clock,
    )
    server = ServerThread(hub, run_worker=False).start()
    try:
        url = f"{server.url}/hooks/crm"
        event = {
            "eventId": 1001,
            "subscriptionId": 7,
            "portalId": 12345678,
            "appId": 987654,
            "occurredAt": epoch_ms(clock.now()),
            "subscriptionType": "contact.propertyChange",
            "attemptNumber": 0,
            "objectId": 65059681032,
            "propertyName": "vip_status",
            "propertyValue": "true",
            "changeSource": "CRM_UI",
            "sourceId": "userId:45678",
        }
        body = json.dumps([event]).encode()
        secret = SIM_SECRETS["SIM_HUBSPOT_SECRET"].encode()
        headers = hubspot_connector.sign_v3(secret, "POST", url, body, epoch_ms(clock.now()))
        answer = httpx.post(
            url, content=body, headers=headers | {"content-type": "application/json"}
        )
        assert answer.status_code == 200, answer.text
        processor = Processor(
            hub, stages=[OneCustomer(), LedgerStage.from_hub(hub), OutboxStage.from_hub(hub)]
        )
        assert processor.drain().processed == 1
        worker = Worker(hub, seed=1, lookup=found.lookup)
        try:
            assert worker.drain().delivered == 3
        finally:
            worker.close()
    finally:
        server.stop()
        hub.close()
    assert "VIP" in stack.apis.shopify.customers[501].tags
    assert stack.apis.shopify.customers[501].metafields[("custom", "vip_status")].value == "true"
    assert stack.apis.zendesk.users[9001].user_fields["vip"] is True
    profile = next(
        p for p in stack.apis.klaviyo.profiles.values() if p.attributes.get("email") == EMAIL
    )
    assert profile.properties["is_vip"] is True


def _source(system: str) -> Any:
    from handoff.config import SourceConfig

    return SourceConfig(**SIM_SOURCES[system])
