"""Vendor delivery policies under the SimClock: hours of retries in milliseconds."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from handoff.sim.clock import SimClock
from handoff.sim.delivery import (
    HUBSPOT,
    LOYALTYLION,
    POLICIES,
    SHOPIFY,
    STANDARD,
    DeliveryReport,
    Endpoint,
    HttpTransport,
    Message,
    Reply,
    WebhookSender,
)
from handoff.sim.faults import MessageFaults
from handoff.sim.stack import ServedApp

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def _signer(
    message: Message, attempt: int, now: datetime, url: str
) -> tuple[bytes, dict[str, str]]:
    return b"{}", {"x-id": message.delivery_id, "x-attempt": str(attempt)}


class Scripted:
    """A receiver answering by a rule of (delivery id, how many times it has seen it)."""

    def __init__(self, rule: Callable[[str, int], Reply]) -> None:
        self.rule = rule
        self.seen: dict[str, int] = {}

    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> Reply:
        key = headers["x-id"]
        self.seen[key] = self.seen.get(key, 0) + 1
        return self.rule(key, self.seen[key])


def _msg(system: str, n: int, at: datetime, topic: str = "t") -> Message:
    return Message(f"{system}:{n}", system, topic, at, f"ref{n}", {}, f"d{n}", subscription=topic)


def _run(
    system: str,
    transport: Scripted,
    messages: list[Message],
    faults: Callable[[Message], MessageFaults] | None = None,
    seed: int = 1,
) -> DeliveryReport:
    clock = SimClock(T0)
    endpoint = Endpoint(system, f"http://hub.invalid/hooks/{system}", _signer, POLICIES[system])
    sender = WebhookSender(clock, transport, {system: endpoint}, seed=seed, fault_for=faults)
    sender.add(messages)
    return asyncio.run(sender.run())


def _offsets(report: DeliveryReport, index: int = 0) -> list[float]:
    attempts = report.records[index].attempts
    return [(a.at - attempts[0].at).total_seconds() for a in attempts]


def always(status: int, retry_after: float | None = None) -> Scripted:
    return Scripted(lambda _k, _n: Reply(status, True, retry_after=retry_after))


def test_shopify_retries_8_times_over_4_hours_then_deletes_the_subscription() -> None:
    failing = always(500)
    report = _run(
        "shopify",
        failing,
        [
            _msg("shopify", 1, T0, "orders/paid"),
            _msg("shopify", 2, T0 + timedelta(hours=5), "orders/paid"),
            _msg("shopify", 3, T0 + timedelta(hours=5), "customers/create"),
        ],
    )
    assert _offsets(report) == [0, 60, 180, 420, 900, 1860, 3780, 7620, 14400]
    assert report.records[0].outcome == "exhausted"
    assert report.deleted_subscriptions == {
        "shopify:orders/paid": T0 + timedelta(hours=4),
        "shopify:customers/create": T0 + timedelta(hours=9),
    }
    assert report.records[1].outcome == "subscription_deleted"  # never attempted again
    assert report.records[1].attempts == []
    assert report.records[2].outcome == "exhausted"  # another topic, its own subscription
    assert SHOPIFY.timeout == 5


def test_shopify_recovers_within_the_schedule() -> None:
    flaky = Scripted(lambda _k, n: Reply(200 if n >= 4 else 503, True))
    report = _run("shopify", flaky, [_msg("shopify", 1, T0)])
    assert report.records[0].outcome == "delivered"
    assert _offsets(report) == [0, 60, 180, 420]
    assert report.deleted_subscriptions == {}


def test_hubspot_retries_randomised_within_24_hours() -> None:
    report = _run("hubspot", always(503), [_msg("hubspot", 1, T0)], seed=3)
    offsets = _offsets(report)
    assert 2 <= len(offsets) <= 11  # the first try and at most 10 retries
    assert offsets[-1] <= 24 * 3600
    gaps = [b - a for a, b in itertools.pairwise(offsets)]
    nominal = [min(HUBSPOT.cap, 60 * 2**i) for i in range(len(gaps))]
    assert gaps != nominal  # randomised …
    assert all(0.5 * n <= g <= 1.5 * n for g, n in zip(gaps, nominal, strict=False))
    again = _run("hubspot", always(503), [_msg("hubspot", 1, T0)], seed=3)
    assert _offsets(again) == offsets  # … but reproducible
    assert HUBSPOT.max_retries == 10 and HUBSPOT.window == 24 * 3600


def test_hubspot_does_not_retry_client_errors_and_honours_retry_after() -> None:
    for status in (400, 401, 403, 404, 405):
        report = _run("hubspot", always(status), [_msg("hubspot", 1, T0)])
        assert report.records[0].outcome == "rejected" and len(report.records[0].attempts) == 1
    throttled = Scripted(
        lambda _k, n: Reply(429, True, retry_after=3600) if n == 1 else Reply(200, True)
    )
    report = _run("hubspot", throttled, [_msg("hubspot", 1, T0)])
    assert report.records[0].outcome == "delivered"
    assert _offsets(report)[1] >= 3600


def test_standard_webhooks_schedule_and_410_disables_the_endpoint() -> None:
    report = _run("erp", always(500), [_msg("erp", 1, T0)])
    schedule = [0, 5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400]
    cumulative = [float(sum(schedule[: i + 1])) for i in range(len(schedule))]
    assert _offsets(report) == cumulative
    assert report.records[0].outcome == "exhausted"
    assert report.deleted_subscriptions == {}  # no subscription deletion for the ERP
    gone = _run("erp", always(410), [_msg("erp", 1, T0), _msg("erp", 2, T0 + timedelta(minutes=1))])
    assert [r.outcome for r in gone.records] == ["endpoint_disabled", "endpoint_disabled"]
    assert len(gone.records[1].attempts) == 0
    throttled = Scripted(
        lambda _k, n: Reply(502, True, retry_after=900) if n == 1 else Reply(204, True)
    )
    report = _run("erp", throttled, [_msg("erp", 1, T0)])
    assert _offsets(report) == [0, 900]
    assert STANDARD.timeout == 15


def test_loyaltylion_backs_off_exponentially() -> None:
    report = _run("loyaltylion", always(500), [_msg("loyaltylion", 1, T0)])
    offsets = _offsets(report)
    gaps = [b - a for a, b in itertools.pairwise(offsets)]
    assert gaps[:5] == [60, 120, 240, 480, 960]
    assert max(gaps) == 12 * 3600 and len(gaps) == LOYALTYLION.max_retries
    assert LOYALTYLION.timeout == 5


def test_drop_duplicate_and_hold() -> None:
    faults = {
        "erp:1": MessageFaults(drop=True),
        "erp:2": MessageFaults(duplicate=True),
        "erp:3": MessageFaults(hold_until=T0 + timedelta(days=2)),
    }
    ok = always(200)
    report = _run(
        "erp",
        ok,
        [_msg("erp", n, T0 + timedelta(minutes=n)) for n in (1, 2, 3)],
        faults=lambda m: faults[m.message_id],
    )
    dropped, duplicated, held = report.records
    assert dropped.outcome == "dropped" and "d1" not in ok.seen
    assert [a.outcome for a in duplicated.attempts] == ["acked", "duplicate_sent"]
    assert ok.seen["d2"] == 2
    assert held.attempts[0].at > T0 + timedelta(days=2)
    assert report.expected_receipts() == {("erp", "d2"): 2, ("erp", "d3"): 1}


def test_a_slow_ack_over_real_http_causes_a_redelivery() -> None:
    """The receiver stores the request but answers after the vendor's timeout (5 s, scaled
    to 0.1 s of wall time here): Shopify counts a failure and redelivers the same id."""
    seen: list[str] = []

    async def hook(request: Request) -> JSONResponse:
        webhook_id = request.headers["x-id"]
        seen.append(webhook_id)
        if seen.count(webhook_id) == 1:
            await asyncio.sleep(0.6)  # slower than the scaled timeout
        return JSONResponse({"status": "stored"})

    served = ServedApp(Starlette(routes=[Route("/hooks/shopify", hook, methods=["POST"])]))
    served.start()
    try:
        clock = SimClock(T0)
        endpoint = Endpoint("shopify", f"{served.url}/hooks/shopify", _signer, SHOPIFY)

        async def go() -> DeliveryReport:
            async with httpx.AsyncClient() as client:
                sender = WebhookSender(
                    clock, HttpTransport(client), {"shopify": endpoint}, seed=1, timeout_scale=0.02
                )
                sender.add([_msg("shopify", 1, T0)])
                return await sender.run()

        report = asyncio.run(go())
    finally:
        served.stop()
    record = report.records[0]
    assert [a.outcome for a in record.attempts] == ["timeout", "acked"]
    assert record.outcome == "delivered" and seen == ["d1", "d1"]
    # the retry waits the timeout and then the first back-off step, in simulated time
    assert (record.attempts[1].at - record.attempts[0].at).total_seconds() == 5 + 60


def test_link_outage_window_fails_without_reaching_the_receiver() -> None:
    from handoff.sim.scenario_config import FaultWindow

    clock = SimClock(T0)
    ok = always(200)
    endpoint = Endpoint("erp", "http://hub.invalid/hooks/erp", _signer, STANDARD)
    sender = WebhookSender(
        clock,
        ok,
        {"erp": endpoint},
        seed=1,
        windows=[
            FaultWindow(target="webhooks:erp", kind="outage", start_hours=0, duration_hours=1)
        ],
    )
    sender.add([_msg("erp", 1, T0)])
    report = asyncio.run(sender.run())
    record = report.records[0]
    assert [a.outcome for a in record.attempts] == ["link_down"] * 4 + ["acked"]
    assert [a.reached for a in record.attempts] == [False] * 4 + [True]
    assert ok.seen == {"d1": 1}
