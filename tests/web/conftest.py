"""A running hub with a dashboard worth looking at: users, a failing source, a dead delivery.

Everything arrives the real way: signed webhooks over loopback HTTP (a malformed one is
quarantined at the door), and a change queued in the outbox that the server's own delivery
worker sends to a loopback receiver which refuses it (400 → dead-letter) until a test says so.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from handoff.connectors import loyaltylion, shopify, standard
from handoff.delivery.outbox import enqueue
from handoff.domain.changes import AttributeChange
from handoff.sim.receiver import WebhookReceiver
from handoff.sim.stack import ServedApp
from handoff.store import identity as identity_store
from handoff.store import ledger as ledger_store
from handoff.store import outbox as outbox_store
from handoff.store import users as user_store
from handoff.web.session import hash_password
from tests.conftest import SECRETS, LiveServer
from tests.identity.test_stage import profile as stage_profile
from tests.identity.test_stage import run as stage_run
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


# --- the customer 360, review and reconciliation pages: a world made through the pipeline ---

FIXTURES = Path(__file__).parents[1] / "connectors" / "fixtures"
ANA = "ana.lopez@bluewave.net"  # example.com is a placeholder domain to identity


@dataclass
class World:
    """Ana bought through the ERP (the ledger expects her points) while the loyalty platform
    reports a balance of its own; the Garcias, sharing one email, were merged by the pipeline;
    the Lopezes, sharing another, wait in the review queue; one reconciliation run sits in the
    runs directory."""

    server: LiveServer
    ana: int
    garcias: int  # the customer the pipeline merged Maria and Jorge Garcia into
    merge_decision: int
    review_id: int
    run: Path  # one run directory under the runs directory

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def hub(self) -> Any:
        return self.server.hub


def _erp(client: httpx.Client, url: str, body: dict[str, Any]) -> None:
    raw = json.dumps(body).encode()
    headers = standard.sign(SECRETS["ERP_SECRET"], str(uuid.uuid4()), int(time.time()), raw)
    response = client.post(f"{url}/hooks/erp", content=raw, headers=headers)
    assert response.status_code == 200, response.text


def _profile(customer: dict[str, Any]) -> dict[str, Any]:
    body = json.loads((FIXTURES / "erp" / "customer_profile_captured.json").read_text())
    body["data"]["customer"] = customer
    return dict(body)


def _wait(check: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"never happened: {what}")


def write_run(runs: Path, name: str = "2026-11-24") -> Path:
    """A small reconciliation run from hand-written exports: Ana's order earned nothing on
    the loyalty platform (missing) and another customer's order earned twice (duplicate)."""
    from handoff.domain.ledger.program import Program
    from handoff.recon.engine import Options, reconcile
    from handoff.recon.output import write_run as write

    exports = runs.parent / f"exports-{name}"
    exports.mkdir(parents=True, exist_ok=True)
    files = {
        "orders": (
            "order_id,customer_id,email,first_name,last_name,currency,subtotal,status,"
            "placed_at,paid_at,fulfilled_at\n"
            f"SO-1001,C-42,{ANA},Ana,Lopez,USD,150.00,fulfilled,"
            "2026-03-01T14:05:02Z,2026-03-01T14:06:00Z,2026-03-03T09:12:30Z\n"
            "SO-2001,C-77,bo.kim@example.com,Bo,Kim,USD,80.00,fulfilled,"
            "2026-03-02T10:00:00Z,2026-03-02T10:01:00Z,2026-03-02T12:00:00Z\n"
        ),
        "loyalty_events": (
            "event_id,member_id,kind,points,occurred_at,order_id\n"
            "LE-1,1077,earn,80,2026-03-02T12:05:00Z,SO-2001\n"
            "LE-2,1077,earn,80,2026-03-02T12:06:00Z,SO-2001\n"
        ),
        "loyalty_members": (
            "member_id,points_balance,email,customer_id\n"
            f"1001,0,{ANA},C-42\n"
            "1077,160,bo.kim@example.com,C-77\n"
        ),
    }
    paths = {}
    for table, text in files.items():
        path = exports / f"{table}.csv"
        path.write_text(text, encoding="utf-8")
        paths[table] = path
    result = reconcile(paths, Program(), Options(as_of=datetime(2026, 4, 1, tzinfo=UTC)))
    try:
        write(result, runs / name)
    finally:
        result.con.close()
    return runs / name


@pytest.fixture
def world(live_server: Callable[..., LiveServer], tmp_path: Path) -> Iterator[World]:
    runs = tmp_path / "runs"
    receiver = WebhookReceiver([HOOK_SECRET])
    sink = ServedApp(receiver, "sink")
    sink.start()
    destinations = {
        "pos-out": {
            "vendor": "webhook",
            "role": "pos",
            "base_url": sink.url,
            "token_env": "HOOK_SECRET",
        }
    }
    server = live_server(
        env=SECRETS | {"HOOK_SECRET": HOOK_SECRET},
        destinations=destinations,
        program={"trigger": "paid"},
        reconcile={"runs_dir": str(runs)},
    )
    hub = server.hub
    now = hub.clock.now()
    with hub.db.write() as conn:
        for name, role in USERS.items():
            user_store.create_user(
                conn, username=name, password_hash=hash_password(PASSWORD), role=role, now=now
            )
    order = json.loads((FIXTURES / "erp" / "order_paid.json").read_text())
    points = json.loads((FIXTURES / "loyaltylion" / "points_earned.json").read_text())
    points["payload"]["properties"]["customer"]["email"] = ANA
    with httpx.Client(timeout=10) as client:
        _erp(
            client,
            server.url,
            _profile(
                {
                    "id": "C-42",
                    "email": ANA,
                    "first_name": "Ana",
                    "last_name": "Lopez",
                    "zip": "94107",
                }
            ),
        )
        _erp(client, server.url, order)
        raw = json.dumps(points).encode()
        signed = loyaltylion.sign(SECRETS["LOYALTY_SECRET"].encode(), raw)
        assert client.post(f"{server.url}/hooks/loyalty", content=raw, headers=signed).is_success
        for n, first in ((50, "Maria"), (51, "Jorge")):
            _erp(
                client,
                server.url,
                _profile(
                    {
                        "id": f"C-{n}",
                        "email": "family@bluewave.net",
                        "first_name": first,
                        "last_name": "Garcia",
                    }
                ),
            )

    def ana_settled() -> int | None:
        with hub.db.read() as conn:
            found = identity_store.find_customers(conn, ANA)
            if len(found) != 1:
                return None
            projection = ledger_store.projection_of(conn, found[0].customer_id)
        ok = projection is not None and projection.recorded_balance is not None
        return found[0].customer_id if ok and projection.balance > 0 else None

    ana = _wait(ana_settled, "Ana's order and the platform's points in the ledger")

    def merged() -> tuple[int, int] | None:
        with hub.db.read() as conn:
            [garcias] = identity_store.find_customers(conn, "family@bluewave.net") or [None]
            if garcias is None:
                return None
            log = identity_store.decisions_of(conn, garcias.customer_id)
        merges = [d["id"] for d in log if d["kind"] == "merge"]
        return (garcias.customer_id, merges[0]) if merges else None

    garcias, merge_decision = _wait(merged, "the Garcias merged on their shared email")
    # the Lopezes reach the identity stage as the processor runs it, from two systems
    maria = stage_profile(
        "shop", "1", 1, email="lopez.home@bluewave.net", first="Maria", last="Lopez"
    )
    jorge = stage_profile(
        "crm", "2", 2, email="lopez.home@bluewave.net", first="Jorge", last="Lopez"
    )
    stage_run(hub, [maria, jorge])
    with hub.db.read() as conn:
        [item] = identity_store.list_review(conn)
    run = write_run(runs)
    try:
        yield World(server, ana, garcias, merge_decision, item.id, run)
    finally:
        sink.stop()
