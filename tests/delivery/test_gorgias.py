"""The Gorgias writer against a stand-in of its documented customer API (no simulator yet)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import httpx

from handoff.connectors.writers.base import Delivery, Recipient
from handoff.connectors.writers.gorgias import GorgiasWriter
from handoff.delivery.policy import Outcome

NOW = datetime(2026, 3, 2, tzinfo=UTC)


def test_finds_the_customer_by_email_writes_its_data_and_honours_the_leaky_bucket() -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        assert request.headers["authorization"].startswith("Basic ")
        if request.method == "GET":
            assert request.url.params["email"] == "ana@example.com"
            return httpx.Response(200, json={"data": [{"id": 77}]})
        if len(calls) > 2:
            return httpx.Response(429, headers={"Retry-after": "7"})
        assert json.loads(request.content) == {"data": {"vip": True}}
        return httpx.Response(200, json={"data": {"vip": True}})

    writer = GorgiasWriter("https://acme.gorgias.com", "ops@acme.com:key", {"is_vip": "vip"})
    delivery = Delivery(
        1, "attribute", 5, "is_vip", 1, {"value": True}, "k", 1, Recipient(5, "ana@example.com")
    )
    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        first = writer.write(client, [delivery], NOW)[0]
        second = writer.write(client, [delivery], NOW)[0]
    assert first.outcome is Outcome.DELIVERED and first.external_id == "77"
    assert str(calls[1].url) == "https://acme.gorgias.com/api/customers/77/data"
    assert second.outcome is Outcome.THROTTLED and second.retry_after == 7
