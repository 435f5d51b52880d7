"""`handoff serve` delivers (its background worker) and the deliveries API lists, shows and
replays, on both databases."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
from prometheus_client import generate_latest

from handoff.delivery.outbox import enqueue
from handoff.hub import Hub
from handoff.sim.clock import SimClock
from handoff.sim.receiver import WebhookReceiver
from handoff.sim.stack import ServedApp
from handoff.store import tokens
from handoff.web.server import ServerThread
from tests.delivery.conftest import hook_destination
from tests.delivery.helpers import vip


def _wait(predicate: Callable[[], bool], seconds: float = 15) -> None:
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_serve_delivers_and_the_api_replays(
    make_hub: Callable[..., Hub],
    serve: Callable[[Any], ServedApp],
    receiver: WebhookReceiver,
    clock: SimClock,
) -> None:
    receiver.fail = lambda msg: (400, {}) if msg["data"]["customer_id"] == 2 else None
    app = serve(receiver)
    hub = make_hub({"hook": hook_destination(app.url)}, idle_poll_seconds=0.02)
    server = ServerThread(hub, run_worker=True).start()
    try:
        with hub.db.write() as conn:
            enqueue(conn, [vip(1, True, 1, clock), vip(2, True, 1, clock)], clock.now())
            _, value = tokens.create_token(conn, name="op", role="operator", now=clock.now())
        auth = {"Authorization": f"Bearer {value}"}
        api = f"{server.url}/api/deliveries"

        def settled() -> bool:
            items = httpx.get(api, headers=auth).json()["items"]
            return {i["status"] for i in items} == {"delivered", "dead"}

        _wait(settled)
        dead = httpx.get(api, params={"status": "dead"}, headers=auth).json()["items"]
        assert [(d["customer_id"], d["last_error"]) for d in dead] == [(2, "HTTP 400")]
        detail = httpx.get(f"{api}/{dead[0]['id']}", headers=auth).json()
        assert [a["outcome"] for a in detail["attempts_made"]] == ["permanent"]
        assert detail["payload"] == {"value": True}
        body = {"destination": "hook", "customer_id": 2, "dry_run": True}
        assert httpx.post(f"{api}/replay", json=body, headers=auth).json() == {
            "matched": 1,
            "replayed": 0,
        }
        receiver.fail = None
        body["dry_run"] = False
        assert httpx.post(f"{api}/replay", json=body, headers=auth).json()["replayed"] == 1
        _wait(lambda: (2, "is_vip") in receiver.tally.attributes)
        dests = httpx.get(f"{api}/destinations", headers=auth).json()
        assert dests[0]["destination"] == "hook" and dests[0]["breaker"] == "closed"
        assert httpx.get(api).status_code == 401
    finally:
        server.stop()
    exposition = generate_latest().decode()
    assert 'handoff_delivery_attempts_total{destination="hook",outcome="delivered"}' in exposition
