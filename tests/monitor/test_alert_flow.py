"""Alerts end to end under the simulator's clock, on both databases, to real loopback sinks.

A POS sends a webhook every five minutes for two days (quiet), then a burst of unusable ones
(failure rate opens), then nothing (silence opens); repeats back off and an acknowledged alert
stops repeating; once the POS sends good webhooks again for a day, both resolve by themselves.
Every notice reaches a Slack-style receiver, an SMTP server (aiosmtpd) and a signed webhook.
"""

from __future__ import annotations

import email
import email.policy
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from handoff.hub import Hub
from handoff.monitor.alerting import Evaluator
from handoff.sim.clock import SimClock
from handoff.sim.stack import ServedApp
from handoff.store import alerts as alert_store
from handoff.store import identity as store_identity
from handoff.store import receipts as rs
from tests.conftest import SECRETS, make_settings

aiosmtpd_controller = pytest.importorskip("aiosmtpd.controller")

START = datetime(2026, 11, 1, tzinfo=UTC)
HOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SOURCES = {"till": {"vendor": "shopify", "role": "pos", "secret_env": "SHOP_SECRET"}}


class Recorder:
    """A loopback HTTP receiver that keeps every JSON body and its headers."""

    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, str], bytes]] = []
        self.lock = threading.Lock()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        with self.lock:
            self.calls.append((headers, body))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


class Mailbox:
    def __init__(self) -> None:
        self.subjects: list[str] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.subjects.append(str(message["Subject"]))
        return "250 OK"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Sinks:
    slack: Recorder
    slack_url: str
    hook: Recorder
    hook_url: str
    mailbox: Mailbox
    smtp_port: int


@pytest.fixture
def sinks() -> Iterator[Sinks]:
    slack, hook, mailbox = Recorder(), Recorder(), Mailbox()
    served = [ServedApp(slack, "slack"), ServedApp(hook, "hook")]
    for app in served:
        app.start()
    port = free_port()
    smtp = aiosmtpd_controller.Controller(mailbox, hostname="127.0.0.1", port=port)
    smtp.start()
    try:
        yield Sinks(slack, served[0].url, hook, served[1].url, mailbox, port)
    finally:
        smtp.stop()
        for app in served:
            app.stop()


def send(hub: Hub, clock: SimClock, n: int, *, bad: bool = False, every: float = 300) -> None:
    """`n` webhooks from the till, one every `every` seconds of simulated time."""
    for _ in range(n):
        clock.advance(every)
        now = clock.now()
        stamp = now.strftime("%Y%m%d%H%M%S%f")
        receipt = rs.NewReceipt(
            "till",
            "shopify",
            f"t-{stamp}",
            now,
            {},
            b"{}",
            "0" * 64,
            quarantine_reason="body is not valid JSON" if bad else None,
        )
        with hub.db.write() as conn:
            [stored] = rs.insert_batch(conn, [receipt], now)
            if not bad:
                assert stored.receipt_id is not None
                rs.mark_many(conn, [rs.Outcome(stored.receipt_id, "processed")], now=now)


def test_alerts_open_repeat_ack_and_resolve(db_url: str, sinks: Sinks) -> None:
    slack, hook, mailbox = sinks.slack, sinks.hook, sinks.mailbox
    clock = SimClock(START)
    settings = make_settings(
        db_url,
        sources=SOURCES,
        alerts={
            "slack_webhook_env": "SLACK_URL",
            "smtp_host": "127.0.0.1",
            "smtp_port": sinks.smtp_port,
            "smtp_to": ["ops@example.com"],
            "webhook_url": sinks.hook_url,
            "webhook_secret_env": "ALERT_HOOK_SECRET",
        },
    )
    env = SECRETS | {"SLACK_URL": sinks.slack_url, "ALERT_HOOK_SECRET": HOOK_SECRET}
    hub = Hub.build(settings, env=env, clock=clock)
    try:
        evaluator = Evaluator(hub)
        assert len(evaluator.sinks) == 3

        send(hub, clock, 576)  # two quiet days
        assert evaluator.run_once().open == 0
        assert slack.calls == [] and mailbox.subjects == []

        send(hub, clock, 12, bad=True, every=60)  # unusable webhooks: 12 of ~300 in 24 h
        result = evaluator.run_once()
        assert (result.opened, result.open) == (1, 1)
        assert "ALERT" in json.loads(slack.calls[-1][1])["text"]
        assert any("failed in 24 h" in s for s in mailbox.subjects)
        headers, body = hook.calls[-1]
        # signed as Standard Webhooks (checked with the reference library; its verify() would
        # also compare the timestamp, which is simulated time here, with the wall clock)
        stamp = datetime.fromtimestamp(int(headers["webhook-timestamp"]), UTC)
        expected = Webhook(HOOK_SECRET).sign(headers["webhook-id"], stamp, body.decode())
        assert expected in headers["webhook-signature"].split()
        assert json.loads(body)["data"]["rule"] == "failure_rate"

        clock.advance(timedelta(hours=2))  # and then the till stops sending
        result = evaluator.run_once()
        assert result.opened == 1 and result.repeated == 1  # silence opens; failure repeats
        with hub.db.read() as conn:
            opened = {a.rule: a for a in alert_store.open_alerts(conn)}
        assert set(opened) == {"failure_rate", "source_silent"}
        with hub.db.write() as conn:
            assert alert_store.ack(conn, opened["source_silent"].id, "ana", clock.now())

        clock.advance(timedelta(minutes=31))
        before = len(slack.calls)
        assert evaluator.run_once().repeated == 1  # only the unacknowledged one repeats
        assert "STILL FAILING" in json.loads(slack.calls[before][1])["text"]

        send(hub, clock, 300)  # the till is fixed: a good day and a bit
        result = evaluator.run_once()
        assert (result.resolved, result.open) == (2, 0)
        texts = [json.loads(b)["text"] for _, b in slack.calls[-2:]]
        assert all(t.startswith("[handoff] RESOLVED") for t in texts)
        assert sum(s.startswith("[handoff] RESOLVED") for s in mailbox.subjects) == 2
        assert evaluator.run_once().open == 0  # and stays quiet
    finally:
        hub.close()


def test_review_age_and_reconciliation_findings_open_and_resolve(
    db_url: str, tmp_path: Path
) -> None:
    """Under the simulator clock: a review item left undecided past 72 h opens an alert that
    deciding it resolves; a reconciliation run with findings opens one that a clean newer run
    resolves."""
    from handoff.identity_review import decide_review
    from tests.identity.test_stage import profile, run

    clock = SimClock(START)
    runs = tmp_path / "runs"
    settings = make_settings(db_url, sources=SOURCES, reconcile={"runs_dir": str(runs)})
    hub = Hub.build(settings, env=SECRETS, clock=clock)
    try:
        evaluator = Evaluator(hub, sinks=[])
        a = profile("till", "1", 1, email="lopez.home@gmail.com", first="Maria", last="Lopez")
        b = profile("till", "2", 2, email="lopez.home@gmail.com", first="Jorge", last="Lopez")
        run(hub, [a, b])  # a shared email with two first names: a review item
        assert evaluator.run_once().open == 0
        clock.advance(timedelta(hours=36 + 70))  # the item is from T0 + 1 day: 70 h old
        assert evaluator.run_once().open == 0
        clock.advance(timedelta(hours=3))  # 73 h
        assert evaluator.run_once().opened == 1
        with hub.db.read() as conn:
            [alert] = alert_store.open_alerts(conn)
            [item] = store_identity.list_review(conn)
        assert alert.rule == "review_age" and alert.customers == 2
        decide_review(hub, item.id, "split", "ana")
        assert evaluator.run_once().resolved == 1

        def write_run(name: str, findings: int) -> None:
            (runs / name).mkdir(parents=True)
            summary = {"findings": findings, "by_handoff": {"erp->loyalty": findings}}
            (runs / name / "summary.json").write_text(json.dumps(summary))

        write_run("2026-11-24", 17)
        result = evaluator.run_once()
        assert (result.opened, result.open) == (1, 1)
        with hub.db.read() as conn:
            [alert] = alert_store.open_alerts(conn)
        assert alert.rule == "reconciliation_findings" and "17 finding(s)" in alert.summary
        time.sleep(0.05)  # the newer run's summary is younger by its file time
        write_run("2026-11-25", 0)
        assert evaluator.run_once().resolved == 1
    finally:
        hub.close()
