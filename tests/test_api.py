"""REST API: bearer tokens with roles, receipts, events, quarantine retry, health, OpenAPI."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx

from handoff.store import tokens
from tests.conftest import LiveServer
from tests.test_gateway import ORDER, receipts, shop_post, wait_for


def token(server: LiveServer, role: str) -> dict[str, str]:
    with server.hub.db.write() as conn:
        _, value = tokens.create_token(conn, name=role, role=role, now=server.hub.clock.now())
    return {"Authorization": f"Bearer {value}"}


def test_health_and_readiness(live_server: Callable[..., LiveServer]) -> None:
    server = live_server(run_worker=False)
    assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{server.url}/readyz").json() == {"status": "ready"}
    spec = httpx.get(f"{server.url}/openapi.json").json()
    assert "/api/receipts" in spec["paths"] and "/api/events" in spec["paths"]
    assert httpx.get(f"{server.url}/docs").status_code == 200


def test_api_needs_a_valid_token_with_the_right_role(
    live_server: Callable[..., LiveServer],
) -> None:
    server = live_server(run_worker=False)
    url = f"{server.url}/api/receipts"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"Authorization": "Bearer hnd_wrong"}).status_code == 401
    viewer = token(server, "viewer")
    assert httpx.get(url, headers=viewer).status_code == 200
    retry = f"{server.url}/api/quarantine/retry"
    assert httpx.post(retry, json={}, headers=viewer).status_code == 403
    assert httpx.post(retry, json={}, headers=token(server, "operator")).status_code == 200
    with server.hub.db.write() as conn:
        for row in tokens.list_tokens(conn):
            tokens.revoke(conn, row.id, server.hub.clock.now())
    assert httpx.get(url, headers=viewer).status_code == 401


def test_receipts_events_and_quarantine_retry(live_server: Callable[..., LiveServer]) -> None:
    server = live_server()
    auth = token(server, "operator")
    body = json.dumps(ORDER).encode()
    shop_post(server, body, webhook_id="a")
    shop_post(server, b"not json", webhook_id="q")
    wait_for(lambda: all(r.status != "pending" for r in receipts(server)))

    page = httpx.get(f"{server.url}/api/receipts", params={"limit": 1}, headers=auth).json()
    assert len(page["items"]) == 1 and page["next_before_id"] is not None
    rest = httpx.get(
        f"{server.url}/api/receipts", params={"before_id": page["next_before_id"]}, headers=auth
    ).json()
    assert len(rest["items"]) == 1 and rest["next_before_id"] is None

    quarantined = httpx.get(
        f"{server.url}/api/receipts", params={"status": "quarantined"}, headers=auth
    ).json()["items"]
    [q] = quarantined
    detail = httpx.get(f"{server.url}/api/receipts/{q['id']}", headers=auth).json()
    assert detail["body"] == "not json" and detail["body_encoding"] == "utf-8"
    assert httpx.get(f"{server.url}/api/receipts/999999", headers=auth).status_code == 404

    events = httpx.get(
        f"{server.url}/api/events", params={"type": "order.paid"}, headers=auth
    ).json()["items"]
    assert [e["order_id"] for e in events] == ["450789469"]
    assert events[0]["customer"]["email"] == "bob@example.com"

    [entry] = httpx.get(f"{server.url}/api/quarantine", headers=auth).json()
    assert entry["receipt_id"] == q["id"] and entry["stage"] == "gateway"
    result = httpx.post(
        f"{server.url}/api/quarantine/retry", json={"receipt_ids": [q["id"]]}, headers=auth
    ).json()
    assert result == {"requeued": [q["id"]]}
    # still not JSON: the processor quarantines it again, with the history kept
    wait_for(lambda: all(r.status != "pending" for r in receipts(server)))
    history = httpx.get(
        f"{server.url}/api/quarantine", params={"include_resolved": True}, headers=auth
    ).json()
    assert [(h["stage"], h["resolution"]) for h in history] == [
        ("processor", None),
        ("gateway", "retried"),
    ]
