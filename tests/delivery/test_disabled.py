"""A destination whose token is not set is disabled, not fatal: `serve` starts, the other
destinations deliver, its deliveries wait (nothing lost) and every view says why; once the token
is set, a worker delivers what waited. `config check` lists destination tokens, never values."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from typer.testing import CliRunner

from handoff.cli import app
from handoff.clock import system_clock
from handoff.delivery import breaker, recipients
from handoff.delivery import metrics as m
from handoff.delivery.outbox import enqueue
from handoff.delivery.worker import Worker
from handoff.hub import Hub
from handoff.sim.clock import SimClock
from handoff.sim.receiver import WebhookReceiver
from handoff.sim.stack import ServedApp, SimStack
from handoff.store import outbox as store
from handoff.store import tokens
from handoff.web.server import ServerThread
from tests.delivery.conftest import SECRET, hook_destination
from tests.delivery.helpers import vip
from tests.delivery.test_vendors import TOKENS, Identity, _destinations


@pytest.fixture(name="identity")
def _identity(monkeypatch: pytest.MonkeyPatch) -> Identity:
    found = Identity()
    monkeypatch.setattr(recipients, "remember", found.remember)
    for name, value in TOKENS.items():
        monkeypatch.setenv(name, value)
    return found


def _states(hub: Hub) -> dict[str, dict[str, Any]]:
    with hub.db.read() as conn:
        return {s.destination: state for s, state in store.overview(conn)}


def test_missing_token_disables_the_destination_and_its_deliveries_wait(
    make_hub: Callable[..., Hub],
    stack: SimStack,
    clock: SimClock,
    identity: Identity,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SIM_ZENDESK_TOKEN")
    without = {k: v for k, v in TOKENS.items() if k != "SIM_ZENDESK_TOKEN"}
    dests = {k: v for k, v in _destinations(stack).items() if k in ("till", "helpdesk")}
    hub = make_hub(dests, env=without)
    # `serve` with its background worker starts; the worker marks the destination disabled
    server = ServerThread(hub, run_worker=True).start()
    try:
        deadline = time.monotonic() + 20
        while "helpdesk" not in _states(hub) and time.monotonic() < deadline:
            time.sleep(0.05)
        with hub.db.write() as conn:
            _, value = tokens.create_token(conn, name="viewer", role="viewer", now=clock.now())
        answer = httpx.get(
            f"{server.url}/api/deliveries/destinations",
            headers={"Authorization": f"Bearer {value}"},
        )
    finally:
        server.stop()
    assert answer.status_code == 200, answer.text
    shown = {d["destination"]: d for d in answer.json()}
    assert shown["helpdesk"]["breaker"] == "disabled"
    assert "SIM_ZENDESK_TOKEN is not set" in shown["helpdesk"]["disabled"]
    assert shown["till"]["breaker"] == "closed" and shown["till"]["disabled"] is None

    worker = Worker(hub, seed=1, lookup=identity.lookup)
    try:
        assert set(worker.disabled) == {"helpdesk"} and set(worker.destinations) == {"till"}
        with hub.db.write() as conn:
            assert enqueue(conn, [vip(42, True, 1, clock)], clock.now()) == 2
        assert worker.drain().delivered == 1
        clock.advance(timedelta(days=2))  # waiting does not use attempts or dead-letter it
        assert worker.drain().claimed == 0
        with hub.db.read() as conn:
            m.refresh(conn, clock.now().timestamp(), ["till", "helpdesk"])
            rows = {r.destination: r for r in store.list_rows(conn, store.DeliveryFilter(), 10)}
    finally:
        worker.close()
    assert rows["till"].status == "delivered"
    assert (rows["helpdesk"].status, rows["helpdesk"].attempts) == ("pending", 0)
    assert "VIP" in stack.apis.shopify.customers[501].tags
    assert "vip" not in stack.apis.zendesk.users[9001].user_fields
    labels = {"destination": "helpdesk"}
    assert REGISTRY.get_sample_value("handoff_delivery_destination_disabled", labels) == 1.0
    assert REGISTRY.get_sample_value("handoff_delivery_queue_depth", labels) == 1.0

    # the operator sets the token: a worker that can run it clears the mark and delivers
    monkeypatch.setenv("SIM_ZENDESK_TOKEN", TOKENS["SIM_ZENDESK_TOKEN"])
    fixed = make_hub(dests, env=TOKENS)
    worker = Worker(fixed, seed=1, lookup=identity.lookup)
    try:
        assert worker.disabled == {}
        assert worker.drain().delivered == 1
    finally:
        worker.close()
    assert stack.apis.zendesk.users[9001].user_fields["vip"] is True
    state = _states(fixed)["helpdesk"]
    assert breaker.disabled_reason(state) is None and breaker.shown(state) == "closed"
    with fixed.db.read() as conn:
        m.refresh(conn, clock.now().timestamp(), ["till", "helpdesk"])
    assert REGISTRY.get_sample_value("handoff_delivery_destination_disabled", labels) == 0.0


def test_cli_checks_tokens_and_runs_without_the_missing_one(
    make_hub: Callable[..., Hub],
    serve: Callable[[Any], ServedApp],
    db_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    receiver = WebhookReceiver([SECRET])  # the wall clock, as the CLI's
    url = serve(receiver).url
    config = tmp_path / "handoff.toml"
    config.write_text(
        f'[destinations.hook]\nvendor = "webhook"\nrole = "comms"\nbase_url = "{url}"\n'
        'token_env = "HOOK_SECRET"\nprevious_token_envs = ["HOOK_SECRET_OLD"]\n'
        f'[destinations.other]\nvendor = "webhook"\nrole = "comms"\nbase_url = "{url}"\n'
        'token_env = "OTHER_SECRET"\n'
    )
    monkeypatch.setenv("HANDOFF_DATABASE_URL", db_url)
    monkeypatch.setenv("HANDOFF_CONFIG", str(config))
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    monkeypatch.delenv("HOOK_SECRET_OLD", raising=False)
    monkeypatch.delenv("OTHER_SECRET", raising=False)
    cli = CliRunner()

    checked = cli.invoke(app, ["config", "check", "--json"])
    assert checked.exit_code == 1, checked.output
    assert SECRET not in checked.output
    data = json.loads(checked.output)
    assert data["destinations"]["hook"]["tokens"] == [
        {"env": "HOOK_SECRET", "kind": "token", "present": True},
        {"env": "HOOK_SECRET_OLD", "kind": "previous", "present": False},
    ]
    assert data["destinations"]["other"]["tokens"] == [
        {"env": "OTHER_SECRET", "kind": "token", "present": False}
    ]
    assert data["missing_tokens"] == [{"destination": "other", "env": "OTHER_SECRET"}]
    table = cli.invoke(app, ["config", "check"], terminal_width=200)
    assert "$OTHER_SECRET" in table.output and "will be disabled" in table.output
    assert SECRET not in table.output

    assert cli.invoke(app, ["db", "upgrade"]).exit_code == 0
    hub = make_hub(
        {"hook": hook_destination(url), "other": hook_destination(url, token_env="OTHER_SECRET")}
    )
    with hub.db.write() as conn:
        assert enqueue(conn, [vip(7, True, 1, system_clock)], system_clock.now()) == 2
    ran = cli.invoke(app, ["deliveries", "worker", "--once"], terminal_width=200)
    assert ran.exit_code == 0, ran.output
    assert "disabled other" in ran.output and "delivered 1," in ran.output
    assert receiver.tally.applied == 1
    listed = json.loads(cli.invoke(app, ["deliveries", "destinations", "--json"]).output)
    by_name = {d["destination"]: d for d in listed}
    assert by_name["other"]["breaker"] == "disabled"
    assert "OTHER_SECRET is not set" in by_name["other"]["disabled"]
    assert by_name["other"]["by_status"] == {"pending": 1}
    assert by_name["hook"]["by_status"] == {"delivered": 1}

    monkeypatch.setenv("OTHER_SECRET", SECRET)
    assert cli.invoke(app, ["config", "check"]).exit_code == 0
    again = cli.invoke(app, ["deliveries", "worker", "--once"])
    assert "delivered 1," in again.output and "disabled" not in again.output
