"""The outbox and the signed webhook writer end to end, on both databases."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import svix.webhooks as svix
from standardwebhooks import Webhook, WebhookVerificationError

from handoff.delivery.outbox import enqueue
from handoff.delivery.worker import Worker
from handoff.domain.changes import PointsAdjustment, ProfileRelay
from handoff.hub import Hub
from handoff.sim.clock import SimClock
from handoff.sim.receiver import WebhookReceiver
from handoff.sim.stack import ServedApp
from handoff.store import outbox as store
from tests.delivery.conftest import OLD_SECRET, SECRET, hook_destination
from tests.delivery.helpers import vip


def test_changes_reach_the_receiver_once_each(
    hook_hub: Hub, receiver: WebhookReceiver, clock: SimClock
) -> None:
    hub = hook_hub
    now = clock.now()
    changes = [
        vip(1, True, 1, clock),
        PointsAdjustment(1, 50, "goodwill", "adj-1", "test", now),
        PointsAdjustment(1, -20, "refund", "adj-2", "test", now),
        ProfileRelay(2, {"email": "ana@example.com"}, 1, "test", now),
    ]
    with hub.db.write() as conn:
        assert enqueue(conn, changes, now) == 4
    worker = Worker(hub, seed=1)
    try:
        total = worker.drain()
    finally:
        worker.close()
    assert total.delivered == 4
    t = receiver.tally
    assert t.rejected == 0 and t.duplicates == 0
    assert t.attributes == {(1, "is_vip"): (1, True)}
    assert t.points == {"adj-1": (1, 50), "adj-2": (1, -20)}
    assert [key for cust, key in t.order if cust == 1] == ["attr:1:is_vip:v1", "adj-1", "adj-2"]
    with hub.db.read() as conn:
        rows = store.list_rows(conn, store.DeliveryFilter(), 10)
        assert {r.status for r in rows} == {"delivered"}
        assert all(len(store.attempts_of(conn, r.id)) == 1 for r in rows)


def test_pending_states_coalesce_and_older_never_follow_newer(
    hook_hub: Hub, receiver: WebhookReceiver, clock: SimClock
) -> None:
    hub = hook_hub
    now = clock.now()
    with hub.db.write() as conn:
        enqueue(conn, [vip(7, True, 1, clock), vip(7, False, 3, clock)], now)
        enqueue(conn, [vip(7, True, 2, clock)], now)  # older than what is queued: dropped
        assert store.count(conn, store.DeliveryFilter()) == 1
    worker = Worker(hub, seed=1)
    try:
        worker.drain()
        with hub.db.write() as conn:
            assert enqueue(conn, [vip(7, True, 2, clock)], clock.now()) == 0
            enqueue(conn, [vip(7, True, 4, clock)], clock.now())
        worker.drain()
    finally:
        worker.close()
    assert receiver.tally.attributes[(7, "is_vip")] == (4, True)
    assert receiver.tally.regressions == []
    assert receiver.tally.applied == 2


def test_rotation_signs_with_every_live_secret(
    make_hub: Callable[..., Hub], serve: Callable[[Any], ServedApp], clock: SimClock
) -> None:
    seen: list[tuple[dict[str, str], bytes]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        body = (await receive())["body"]
        seen.append(({k.decode(): v.decode() for k, v in scope["headers"]}, body))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    served = serve(app)
    hub = make_hub({"hook": hook_destination(served.url, previous_token_envs=["HOOK_SECRET_OLD"])})
    with hub.db.write() as conn:
        enqueue(conn, [vip(3, True, 1, clock)], clock.now())
    worker = Worker(hub)
    try:
        assert worker.drain().delivered == 1
    finally:
        worker.close()
    headers, body = seen[0]
    assert len(headers["webhook-signature"].split()) == 2
    for secret in (SECRET, OLD_SECRET):
        assert Webhook(secret).verify(body, headers)["data"]["attribute"] == "is_vip"
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "QUJD" * 8).verify(body, headers)
    for secret in (SECRET, OLD_SECRET):
        svix.Webhook(secret).verify(body, headers)  # returns None; raises when a check fails
    with pytest.raises(svix.WebhookVerificationError):
        svix.Webhook("whsec_" + "QUJD" * 8).verify(body, headers)
