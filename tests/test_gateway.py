"""The webhook gateway over real HTTP on loopback, on both databases."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from handoff.connectors import shopify
from handoff.store import receipts as rs
from tests.conftest import SECRETS, LiveServer

ORDER = {
    "id": 450789469,
    "email": "bob@example.com",
    "currency": "USD",
    "financial_status": "paid",
    "created_at": "2026-11-20T10:00:00-05:00",
    "processed_at": "2026-11-20T10:00:00-05:00",
    "total_line_items_price": "398.00",
    "subtotal_price": "398.00",
    "total_discounts": "0.00",
    "total_tax": "11.94",
    "total_price": "409.94",
    "source_name": "pos",
    "customer": {"id": 207119551, "email": "bob@example.com"},
    "line_items": [
        {"id": 1, "sku": "IPOD", "quantity": 2, "price": "199.00", "total_discount": "0.00"}
    ],
}


def shop_post(
    server: LiveServer,
    body: bytes,
    *,
    webhook_id: str = "wh-1",
    topic: str = "orders/paid",
    secret: str = SECRETS["SHOP_SECRET"],
    source: str = "shop",
) -> httpx.Response:
    headers = shopify.sign(secret.encode(), body, topic=topic, webhook_id=webhook_id)
    headers["Content-Type"] = "application/json"
    return httpx.post(f"{server.url}/hooks/{source}", content=body, headers=headers)


def receipts(server: LiveServer) -> list[rs.ReceiptRow]:
    with server.hub.db.read() as conn:
        return rs.list_receipts(conn, rs.ReceiptFilter(), 1000)


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def test_valid_webhook_is_stored_once_and_redelivery_acknowledged(
    live_server: Callable[..., LiveServer],
) -> None:
    server = live_server(run_worker=False)
    body = json.dumps(ORDER).encode()
    first = shop_post(server, body)
    assert first.status_code == 200
    assert first.json()["status"] == "stored"
    again = shop_post(server, body)
    assert again.status_code == 200 and again.json() == {"status": "duplicate", "receipt_id": None}
    [row] = receipts(server)
    assert row.id == first.json()["receipt_id"]
    assert row.delivery_id == "wh-1" and row.body == body and row.status == "pending"
    assert row.headers["x-shopify-topic"] == "orders/paid"
    assert "x-shopify-hmac-sha256" not in row.headers


def test_bad_signatures_are_rejected_and_nothing_is_stored(
    live_server: Callable[..., LiveServer],
) -> None:
    server = live_server(run_worker=False)
    body = json.dumps(ORDER).encode()
    wrong = shop_post(server, body, secret="not-the-secret")
    assert wrong.status_code == 401
    assert wrong.json() == {"error": "invalid_signature", "detail": wrong.json()["detail"]}
    headers = shopify.sign(SECRETS["SHOP_SECRET"].encode(), body, webhook_id="x")
    tampered = httpx.post(f"{server.url}/hooks/shop", content=body + b" ", headers=headers)
    assert tampered.status_code == 401
    missing = httpx.post(f"{server.url}/hooks/shop", content=body)
    assert missing.status_code == 401 and "X-Shopify-Hmac-Sha256" in missing.json()["detail"]
    assert receipts(server) == []
    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'handoff_webhooks_total{outcome="rejected_signature",source="shop"}' in metrics


def test_previous_secret_is_accepted_during_rotation(
    live_server: Callable[..., LiveServer],
) -> None:
    server = live_server(run_worker=False)
    response = shop_post(server, b'{"id": 1}', secret=SECRETS["SHOP_SECRET_OLD"])
    assert response.status_code == 200


def test_unknown_source_and_oversized_body(live_server: Callable[..., LiveServer]) -> None:
    server = live_server(run_worker=False, gateway={"body_limit_bytes": 2048})
    assert httpx.post(f"{server.url}/hooks/nope", content=b"{}").status_code == 404
    big = b'{"pad": "' + b"x" * 4096 + b'"}'
    response = shop_post(server, big)
    assert response.status_code == 413
    assert response.json() == {"error": "body_too_large", "limit_bytes": 2048}

    def chunks() -> Any:  # no Content-Length: the limit is enforced while streaming
        yield big[:1000]
        yield big[1000:]

    headers = shopify.sign(SECRETS["SHOP_SECRET"].encode(), big, webhook_id="s")
    streamed = httpx.post(f"{server.url}/hooks/shop", content=chunks(), headers=headers)
    assert streamed.status_code == 413
    assert receipts(server) == []


def test_signed_but_unusable_body_is_quarantined_not_dropped(
    live_server: Callable[..., LiveServer],
) -> None:
    server = live_server(run_worker=False)
    response = shop_post(server, b"<xml>not json</xml>", webhook_id="bad-1")
    assert response.status_code == 200
    data = response.json()
    assert data["status"] == "quarantined" and "JSON" in data["detail"]
    [row] = receipts(server)
    assert row.status == "quarantined" and row.body == b"<xml>not json</xml>"
    with server.hub.db.read() as conn:
        [entry] = rs.list_quarantine(conn)
    assert entry.stage == "gateway" and entry.receipt_id == row.id


def test_two_malformed_deliveries_are_two_receipts(
    live_server: Callable[..., LiveServer],
) -> None:
    """Their webhook ids differ, so they are not deduplicated on the body's hash; a redelivery
    of the same id still is."""
    server = live_server(run_worker=False)
    for webhook_id in ("bad-1", "bad-2", "bad-1"):
        assert shop_post(server, b"not json", webhook_id=webhook_id).status_code == 200
    rows = receipts(server)
    assert sorted(r.delivery_id for r in rows) == ["bad-1", "bad-2"]
    assert {r.status for r in rows} == {"quarantined"}


def test_missing_secret_gives_retryable_status(live_server: Callable[..., LiveServer]) -> None:
    server = live_server(run_worker=False, env={})
    response = shop_post(server, b"{}")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "30"
    assert response.json()["error"] == "source_not_configured"


@pytest.mark.parametrize("transient", [503, 429])
def test_store_unavailable_is_retryable(
    transient: int, tmp_path: Any, hub_factory: Callable[..., Any]
) -> None:
    from handoff.config import Settings
    from handoff.hub import Hub
    from tests.conftest import SOURCES, make_settings

    sources = {"shop": SOURCES["shop"] | {"transient_status": transient}}
    base = make_settings(f"sqlite:///{tmp_path}/no/such/dir/h.db", sources=sources)
    settings = Settings(config=base.config, database_url=base.database_url, config_path=None)
    server = LiveServer(Hub.build(settings, env=SECRETS), run_worker=False)
    try:
        response = shop_post(server, b'{"id": 2}')
    finally:
        server.stop()
    assert response.status_code == transient
    assert response.headers["retry-after"] == "30"
    assert response.json()["error"] == "store_unavailable"


def test_processor_turns_receipts_into_events(live_server: Callable[..., LiveServer]) -> None:
    server = live_server()
    body = json.dumps(ORDER).encode()
    assert shop_post(server, body).status_code == 200
    assert shop_post(server, body, webhook_id="wh-2").status_code == 200  # same fact, new id
    assert (
        shop_post(server, b'{"id": 5}', topic="orders/unknown", webhook_id="u").status_code == 200
    )
    assert shop_post(server, b'{"id": "x"}', webhook_id="broken").status_code == 200

    def settled() -> list[rs.ReceiptRow] | None:
        rows = receipts(server)
        return rows if all(r.status != "pending" for r in rows) else None

    rows = {r.delivery_id: r for r in wait_for(settled)}
    assert rows["wh-1"].status == "processed" and rows["wh-1"].event_count == 1
    assert rows["wh-2"].status == "processed"
    assert rows["u"].status == "skipped" and rows["u"].status_reason
    assert rows["broken"].status == "quarantined" and rows["broken"].status_reason
    with server.hub.db.read() as conn:
        from handoff.store import events as es

        events = es.list_events(conn, es.EventFilter(), 100)
    assert len(events) == 1  # the same order.paid twice is one canonical event
    [event] = events
    assert event.type == "order.paid" and event.order_id == "450789469"
    assert event.body["net_merchandise"] == 39800 and event.body["tax"] == 1194


def test_only_post_to_a_source_path_takes_the_fast_route(
    live_server: Callable[..., LiveServer],
) -> None:
    server = live_server(run_worker=False)
    assert httpx.get(f"{server.url}/hooks/shop").status_code == 405
    assert httpx.post(f"{server.url}/hooks/shop/extra", content=b"{}").status_code == 404
    assert httpx.post(f"{server.url}/hooks/", content=b"{}").status_code == 404
