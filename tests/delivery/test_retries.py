"""Retries, Retry-After, 429 storms, permanent errors, the breaker and a day-long outage,
all under the simulated clock, on both databases."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import timedelta
from email.utils import format_datetime
from typing import Any

from handoff.delivery import breaker
from handoff.delivery.outbox import enqueue
from handoff.delivery.worker import Worker
from handoff.domain.changes import PointsAdjustment
from handoff.hub import Hub
from handoff.sim.clock import SimClock
from handoff.sim.receiver import WebhookReceiver
from handoff.sim.stack import ServedApp
from handoff.store import outbox as store
from tests.delivery.conftest import hook_destination
from tests.delivery.helpers import run_until_done, vip

SCHEDULE = [0, 5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400]


def _setup(
    make_hub: Callable[..., Hub],
    serve: Callable[[Any], ServedApp],
    receiver: WebhookReceiver,
    **dest: Any,
) -> tuple[Hub, Worker]:
    app = serve(receiver)
    hub = make_hub({"hook": hook_destination(app.url, **dest)})
    return hub, Worker(hub, seed=3)


def _only_row(hub: Hub) -> store.OutboxRow:
    with hub.db.read() as conn:
        rows = store.list_rows(conn, store.DeliveryFilter(), 10)
    assert len(rows) == 1
    return rows[0]


def test_permanent_error_is_dead_at_once_and_replay_keeps_the_key(
    make_hub: Callable[..., Hub],
    serve: Callable[[Any], ServedApp],
    receiver: WebhookReceiver,
    clock: SimClock,
) -> None:
    receiver.fail = lambda msg: (422, {})
    hub, worker = _setup(make_hub, serve, receiver)
    try:
        with hub.db.write() as conn:
            enqueue(conn, [vip(1, True, 1, clock)], clock.now())
        worker.drain()
        row = _only_row(hub)
        assert (row.status, row.attempts, row.last_status) == ("dead", 1, 422)
        assert row.last_error == "HTTP 422"
        receiver.fail = None
        flt = store.DeliveryFilter(destination="hook", statuses=("dead",))
        with hub.db.read() as conn:
            assert store.replay_count(conn, flt) == 1
        with hub.db.write() as conn:
            assert store.replay(conn, flt, clock.now()) == 1
        worker.drain()
    finally:
        worker.close()
    row = _only_row(hub)
    assert row.status == "delivered"
    assert list(receiver.tally.first_seen) == [row.idem_key]
    with hub.db.read() as conn:
        assert [a["outcome"] for a in store.attempts_of(conn, row.id)] == ["permanent", "delivered"]


def test_redirects_and_server_errors_retry_on_the_schedule(
    make_hub: Callable[..., Hub],
    serve: Callable[[Any], ServedApp],
    receiver: WebhookReceiver,
    clock: SimClock,
) -> None:
    answers = iter([(302, {"location": "/elsewhere"}), (500, {}), (408, {})])
    receiver.fail = lambda msg: next(answers, None)
    hub, worker = _setup(make_hub, serve, receiver)
    try:
        with hub.db.write() as conn:
            enqueue(conn, [vip(1, True, 1, clock)], clock.now())
        start = clock.now()
        run_until_done(worker, hub, clock)
    finally:
        worker.close()
    row = _only_row(hub)
    assert (row.status, row.attempts) == ("delivered", 4)
    with hub.db.read() as conn:
        attempts = store.attempts_of(conn, row.id)
    assert [a["status_code"] for a in attempts] == [302, 500, 408, 200]
    gaps = [(b["at"] - a["at"]).total_seconds() for a, b in itertools.pairwise(attempts)]
    for gap, planned in zip(gaps, SCHEDULE[1:], strict=False):
        assert planned * 0.8 <= gap <= planned * 1.2
    assert attempts[0]["at"] == start


def test_retry_after_in_seconds_and_as_an_http_date(
    make_hub: Callable[..., Hub],
    serve: Callable[[Any], ServedApp],
    receiver: WebhookReceiver,
    clock: SimClock,
) -> None:
    hub, worker = _setup(make_hub, serve, receiver)
    try:
        receiver.fail = lambda msg: (503, {"Retry-After": "900"})
        with hub.db.write() as conn:
            enqueue(conn, [vip(1, True, 1, clock)], clock.now())
        worker.drain()
        row = _only_row(hub)
        assert row.next_attempt_at - clock.now() == timedelta(seconds=900)
        clock.advance_to(row.next_attempt_at)
        when = clock.now() + timedelta(seconds=1200)
        receiver.fail = lambda msg: (503, {"Retry-After": format_datetime(when, usegmt=True)})
        worker.drain()
        row = _only_row(hub)
        assert row.next_attempt_at == when
        assert (row.attempts, row.throttled) == (2, 0)
    finally:
        worker.close()


def test_429_storm_waits_without_using_attempts(
    make_hub: Callable[..., Hub],
    serve: Callable[[Any], ServedApp],
    receiver: WebhookReceiver,
    clock: SimClock,
) -> None:
    storm = {"left": 6}

    def throttle(msg: dict[str, Any]) -> tuple[int, dict[str, str]] | None:
        if storm["left"] > 0:
            storm["left"] -= 1
            return 429, {"Retry-After": "120"}
        return None

    receiver.fail = throttle
    hub, worker = _setup(make_hub, serve, receiver)
    try:
        with hub.db.write() as conn:
            enqueue(
                conn,
                [PointsAdjustment(c, 10, "promo", f"k{c}", "t", clock.now()) for c in range(1, 4)],
                clock.now(),
            )
        start = clock.now()
        run_until_done(worker, hub, clock)
    finally:
        worker.close()
    with hub.db.read() as conn:
        rows = store.list_rows(conn, store.DeliveryFilter(), 10)
    assert {r.status for r in rows} == {"delivered"}
    assert all(r.attempts == 1 for r in rows)  # 429s used none of the ten attempts
    assert sum(r.throttled for r in rows) >= 6
    assert sorted(receiver.tally.points) == ["k1", "k2", "k3"]
    assert clock.now() - start >= timedelta(seconds=120 * 2)  # each storm answer was honoured


def test_breaker_trips_waits_and_recovers(
    make_hub: Callable[..., Hub],
    serve: Callable[[Any], ServedApp],
    receiver: WebhookReceiver,
    clock: SimClock,
) -> None:
    receiver.fail = lambda msg: (500, {})
    app = serve(receiver)
    hub = make_hub({"hook": hook_destination(app.url)}, batch_size=5)
    worker = Worker(hub, seed=5)
    try:
        with hub.db.write() as conn:
            enqueue(conn, [vip(c, True, 1, clock) for c in range(1, 31)], clock.now())
        worker.drain()
        with hub.db.read() as conn:
            state = store.read_states(conn)["hook"][1]
            rows = store.list_rows(conn, store.DeliveryFilter(), 100)
        assert breaker.state_of(state) == breaker.OPEN
        tried = [r for r in rows if r.attempts > 0]
        assert 10 <= len(tried) < 30  # it opened before every row was tried
        assert all(r.attempts == 0 and r.throttled >= 1 for r in rows if r not in tried)
        sent = receiver.tally.requests
        clock.advance(10)
        worker.drain()
        assert receiver.tally.requests == sent  # still open: nothing sent
        receiver.fail = None
        clock.advance(25)
        run_until_done(worker, hub, clock)
        with hub.db.read() as conn:
            state = store.read_states(conn)["hook"][1]
            rows = store.list_rows(conn, store.DeliveryFilter(), 100)
    finally:
        worker.close()
    assert breaker.state_of(state) == breaker.CLOSED
    assert {r.status for r in rows} == {"delivered"}
    assert len(receiver.tally.attributes) == 30


def test_a_day_long_outage_then_everything_arrives_in_order(
    make_hub: Callable[..., Hub],
    serve: Callable[[Any], ServedApp],
    receiver: WebhookReceiver,
    clock: SimClock,
) -> None:
    back = clock.now() + timedelta(hours=24)
    receiver.fail = lambda msg: (503, {}) if clock.now() < back else None
    hub, worker = _setup(make_hub, serve, receiver)
    keys = {c: [f"c{c}-{i}" for i in range(4)] for c in range(1, 4)}
    try:
        with hub.db.write() as conn:
            for i in range(4):
                enqueue(
                    conn,
                    [PointsAdjustment(c, i + 1, "r", keys[c][i], "t", clock.now()) for c in keys],
                    clock.now(),
                )
        run_until_done(worker, hub, clock)
        with hub.db.read() as conn:
            rows = store.list_rows(conn, store.DeliveryFilter(), 100)
            heads = [r for r in rows if r.idem_key.endswith("-0")]
            attempts = {r.id: store.attempts_of(conn, r.id) for r in heads}
    finally:
        worker.close()
    assert {r.status for r in rows} == {"delivered"}
    for c, expected in keys.items():
        assert [k for cust, k in receiver.tally.order if cust == c] == expected
    for row in heads:
        tries = attempts[row.id]
        # the head of each customer's line was tried on the schedule until the day was over
        assert [a["outcome"] for a in tries[:-1]] == ["retry"] * (len(tries) - 1)
        assert tries[-1]["outcome"] == "delivered" and tries[-1]["at"] >= back
        assert tries[-2]["at"] < back
        gaps = [(b["at"] - a["at"]).total_seconds() for a, b in itertools.pairwise(tries)]
        for gap, planned in zip(gaps, SCHEDULE[1:], strict=False):
            assert planned * 0.8 <= gap <= planned * 1.2 + 1
        assert 7 <= len(tries) <= 9
