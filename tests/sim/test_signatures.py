"""Every look-alike's signatures verify with independent libraries and with handoff's connectors.

The independent verifiers (hubspot-api-client, standardwebhooks) check freshness against the
wall clock, so those messages are signed at the real now; nothing here asserts a wall time.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hubspot.utils.signature import Signature
from standardwebhooks import Webhook, WebhookVerificationError

from handoff.connectors.base import Inbound, SignatureError, SourceOptions
from handoff.connectors.registry import build_connector
from handoff.sim.delivery import Message
from handoff.sim.stack import SIM_SECRETS, SIM_SOURCES, Simulation
from tests.sim.conftest import small

URL = "http://127.0.0.1:8080/hooks/"


@pytest.fixture(scope="module")
def sim() -> Simulation:
    return Simulation.build(small(customers=12))


def _one(sim: Simulation, system: str, topic: str | None = None) -> Message:
    return next(
        m
        for m in sim.messages
        if m.system == system and (topic is None or m.topic == topic) and not m.never_fired
    )


def _verify_with_handoff(system: str, body: bytes, headers: dict[str, str], now: datetime) -> None:
    source = SIM_SOURCES[system]
    connector = build_connector(source["vendor"], SourceOptions(name=system, role=source["role"]))
    inbound = Inbound(
        method="POST",
        url=URL + system,
        headers={k.lower(): v for k, v in headers.items()},
        body=body,
        received_at=now,
    )
    connector.verify(inbound, [SIM_SECRETS[source["secret_env"]].encode()])


def _sign(
    sim: Simulation, message: Message, attempt: int, now: datetime
) -> tuple[bytes, dict[str, str]]:
    endpoint = sim.endpoints(URL.removesuffix("/hooks/"))[message.system]
    return endpoint.signer(message, attempt, now, endpoint.url)


def test_hubspot_v3_verifies_with_the_official_client(sim: Simulation) -> None:
    now = datetime.now(UTC)
    message = _one(sim, "hubspot")
    body, headers = _sign(sim, message, 3, now)
    assert Signature.is_valid(
        signature=headers["X-HubSpot-Signature-v3"],
        client_secret=SIM_SECRETS["SIM_HUBSPOT_SECRET"],
        request_body=body.decode(),
        http_uri=URL + "hubspot",
        http_method="POST",
        signature_version="v3",
        timestamp=headers["X-HubSpot-Request-Timestamp"],
    )
    assert body.startswith(b"[") and b'"attemptNumber":2' in body  # an array; retry 2 says so
    _verify_with_handoff("hubspot", body, headers, now)
    assert not Signature.is_valid(
        signature=headers["X-HubSpot-Signature-v3"],
        client_secret="another-secret",
        request_body=body.decode(),
        http_uri=URL + "hubspot",
        signature_version="v3",
        timestamp=headers["X-HubSpot-Request-Timestamp"],
    )


def test_erp_standard_webhooks_verify_with_the_reference_library(sim: Simulation) -> None:
    now = datetime.now(UTC)
    message = _one(sim, "erp", "order.paid")
    body, headers = _sign(sim, message, 2, now)
    assert headers["webhook-id"] == message.delivery_id and "." not in message.delivery_id
    payload = Webhook(SIM_SECRETS["SIM_ERP_SECRET"]).verify(body, headers)
    assert payload["type"] == "order.paid"
    assert payload["data"]["order_id"] == message.order_id
    _verify_with_handoff("erp", body, headers, now)
    with pytest.raises(WebhookVerificationError):
        Webhook(SIM_SECRETS["SIM_ERP_SECRET"]).verify(body + b" ", headers)


def test_erp_retries_are_re_signed_with_a_fresh_timestamp(sim: Simulation) -> None:
    message = _one(sim, "erp")
    first = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    later = datetime(2026, 3, 1, 14, 0, tzinfo=UTC)
    body1, h1 = _sign(sim, message, 1, first)
    body2, h2 = _sign(sim, message, 5, later)
    assert body1 == body2 and h1["webhook-id"] == h2["webhook-id"]
    assert h1["webhook-timestamp"] != h2["webhook-timestamp"]
    _verify_with_handoff("erp", body2, h2, later)
    with pytest.raises(SignatureError):
        _verify_with_handoff("erp", body1, h1, later)  # a 5-hour-old signature is stale


@pytest.mark.parametrize("topic", ["customers/create", "orders/paid", "refunds/create"])
def test_shopify_hmac_verifies_with_handoff(sim: Simulation, topic: str) -> None:
    message = _one(sim, "shopify", topic)
    now = datetime(2026, 3, 1, tzinfo=UTC)
    body, headers = _sign(sim, message, 1, now)
    again, headers2 = _sign(sim, message, 4, now)
    assert (body, headers) == (again, headers2)  # Shopify retries the original payload
    assert headers["X-Shopify-Topic"] == topic
    assert headers["X-Shopify-Webhook-Id"] == message.delivery_id
    assert headers["X-Shopify-Shop-Domain"] == sim.config.scenario.shop_domain
    _verify_with_handoff("shopify", body, headers, now)
    with pytest.raises(SignatureError):
        _verify_with_handoff("shopify", body.replace(b"}", b" }", 1), headers, now)


@pytest.mark.parametrize("topic", ["customers/update", "program_events/customer.points_earned"])
def test_loyaltylion_hmac_verifies_with_handoff(sim: Simulation, topic: str) -> None:
    message = _one(sim, "loyaltylion", topic)
    now = datetime(2026, 3, 1, tzinfo=UTC)
    body, headers = _sign(sim, message, 1, now)
    _verify_with_handoff("loyaltylion", body, headers, now)
    with pytest.raises(SignatureError):
        _verify_with_handoff("loyaltylion", body + b"\n", headers, now)
