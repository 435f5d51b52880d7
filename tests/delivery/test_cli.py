"""`handoff deliveries …` on both databases: a worker round, list, show, replay with a dry run."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from handoff.cli import app
from handoff.clock import system_clock
from handoff.delivery.outbox import enqueue
from handoff.hub import Hub
from handoff.sim.receiver import WebhookReceiver
from handoff.sim.stack import ServedApp
from tests.delivery.conftest import ENV, hook_destination
from tests.delivery.helpers import vip


def test_worker_list_show_replay(
    make_hub: Callable[..., Hub],
    serve: Callable[[Any], ServedApp],
    db_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    receiver = WebhookReceiver(["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"])  # the wall clock
    receiver.fail = lambda msg: (404, {}) if msg["data"]["customer_id"] == 2 else None
    app_ = serve(receiver)
    config = tmp_path / "handoff.toml"
    config.write_text(
        f'[destinations.hook]\nvendor = "webhook"\nrole = "comms"\nbase_url = "{app_.url}"\n'
        'token_env = "HOOK_SECRET"\n'
    )
    monkeypatch.setenv("HANDOFF_DATABASE_URL", db_url)
    monkeypatch.setenv("HANDOFF_CONFIG", str(config))
    hub = make_hub({"hook": hook_destination(app_.url)}, env=ENV)
    with hub.db.write() as conn:  # at the wall clock's now: the CLI runs on it
        enqueue(conn, [vip(c, True, 1, system_clock) for c in (1, 2)], system_clock.now())
    cli = CliRunner()
    result = cli.invoke(app, ["deliveries", "worker", "--once"])
    assert result.exit_code == 0, result.output
    assert "delivered 1" in result.output and "dead 1" in result.output
    listed = cli.invoke(app, ["deliveries", "list", "--status", "dead", "--json"])
    items = json.loads(listed.output)["items"]
    assert [(i["customer_id"], i["last_error"]) for i in items] == [(2, "HTTP 404")]
    shown = json.loads(
        cli.invoke(app, ["deliveries", "show", str(items[0]["id"]), "--json"]).output
    )
    assert [a["status_code"] for a in shown["attempts_made"]] == [404]
    dry = cli.invoke(app, ["deliveries", "replay", "--customer", "2", "--dry-run", "--json"])
    assert json.loads(dry.output) == {"matched": 1, "replayed": 0, "dry_run": True}
    receiver.fail = None
    done = cli.invoke(app, ["deliveries", "replay", "--destination", "hook", "--json"])
    assert json.loads(done.output)["replayed"] == 1
    assert "delivered 1" in cli.invoke(app, ["deliveries", "worker", "--once"]).output
    assert cli.invoke(app, ["deliveries", "list", "--status", "bogus"]).exit_code == 2
    table = cli.invoke(app, ["deliveries", "destinations"])
    assert table.exit_code == 0 and "hook" in table.output
