"""A running hub with a dashboard worth looking at: users, a failing source, a dead delivery.

Everything arrives the real way: signed webhooks over loopback HTTP (a malformed one is
quarantined at the door), and a change queued in the outbox that the server's own delivery
worker sends to a loopback receiver which refuses it (400 → dead-letter) until a test says so.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from handoff.connectors import shopify
from handoff.delivery.outbox import enqueue
from handoff.domain.changes import AttributeChange
from handoff.sim.receiver import WebhookReceiver
from handoff.sim.stack import ServedApp
from handoff.store import outbox as outbox_store
from handoff.store import users as user_store
from handoff.web.session import hash_password
from tests.conftest import SECRETS, LiveServer
from tests.test_gateway import ORDER

HOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
PASSWORD = "correct horse battery"
USERS = {"ops": "operator", "viewer": "viewer"}


@dataclass
class Dashboard:
    server: LiveServer
    receiver: WebhookReceiver
    refusing: dict[str, bool]
    dead_id: int

    @property
    def url(self) -> str:
        return self.server.url

    def wait_for(self, outbox_id: int, status: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.server.hub.db.read() as conn:
                row = outbox_store.get(conn, outbox_id)
            if row is not None and row.status == status:
                return
            time.sleep(0.05)
        raise AssertionError(f"delivery {outbox_id} never became {status}")


def _post_webhooks(url: str) -> None:
    secret = SECRETS["SHOP_SECRET"].encode()
    with httpx.Client(timeout=10) as client:
        bodies: list[bytes] = [json.dumps(ORDER | {"id": 9_100 + i}).encode() for i in range(5)]
        bodies += [b'{"id": 1, "this is": not json' for _ in range(3)]
        for i, body in enumerate(bodies):
            headers = shopify.sign(secret, body, topic="orders/paid", webhook_id=f"dash-{i}")
            response = client.post(f"{url}/hooks/shop", content=body, headers=headers)
            assert response.status_code == 200, response.text


@pytest.fixture
def dashboard(live_server: Callable[..., LiveServer]) -> Iterator[Dashboard]:
    refusing = {"on": True}

    def fail(message: dict[str, Any]) -> tuple[int, dict[str, str]] | None:
        return (400, {}) if refusing["on"] else None

    receiver = WebhookReceiver([HOOK_SECRET], fail=fail)
    sink = ServedApp(receiver, "sink")
    sink.start()
    destinations = {
        "sink": {
            "vendor": "webhook",
            "role": "comms",
            "base_url": sink.url,
            "token_env": "HOOK_SECRET",
        }
    }
    server = live_server(env=SECRETS | {"HOOK_SECRET": HOOK_SECRET}, destinations=destinations)
    hub = server.hub
    now = hub.clock.now()
    with hub.db.write() as conn:
        for name, role in USERS.items():
            user_store.create_user(
                conn, username=name, password_hash=hash_password(PASSWORD), role=role, now=now
            )
        change = AttributeChange(42, "is_vip", True, 1, "test", now)
        enqueue(conn, [change], now, destinations=hub.settings.config.destinations)
        dead_id = outbox_store.list_rows(conn, outbox_store.DeliveryFilter(), 1)[0].id
    _post_webhooks(server.url)
    board = Dashboard(server, receiver, refusing, dead_id)
    board.wait_for(dead_id, "dead")
    try:
        yield board
    finally:
        sink.stop()


def sign_in(client: httpx.Client, url: str, user: str, password: str = PASSWORD) -> httpx.Response:
    return client.post(f"{url}/login", data={"username": user, "password": password, "next": "/"})
