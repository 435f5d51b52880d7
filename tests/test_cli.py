"""The CLI on both databases: db, receipts, events, quarantine, tokens, config check."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from handoff.cli import app
from handoff.pipeline.processor import Processor
from handoff.store import receipts as rs
from handoff.store.db import Database
from tests.conftest import SECRETS, make_settings
from tests.test_contention import write_config
from tests.test_gateway import ORDER

NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)


@pytest.fixture
def cli(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("HANDOFF_DATABASE_URL", db_url)
    monkeypatch.setenv("HANDOFF_CONFIG", str(write_config(tmp_path)))
    for key, value in SECRETS.items():
        monkeypatch.setenv(key, value)
    return CliRunner()


def seed(database: Database, db_url: str) -> None:
    from handoff.hub import Hub

    body = json.dumps(ORDER).encode()
    with database.write() as conn:
        rs.insert_batch(
            conn,
            [
                rs.NewReceipt(
                    "shop",
                    "shopify",
                    "wh-1",
                    NOW,
                    {"x-shopify-topic": "orders/paid"},
                    body,
                    "0" * 64,
                ),
                rs.NewReceipt(
                    "shop",
                    "shopify",
                    "wh-2",
                    NOW,
                    {"x-shopify-topic": "orders/paid"},
                    b"{not json",
                    "0" * 64,
                    quarantine_reason="body is not valid JSON",
                ),
            ],
            NOW,
        )
    hub = Hub.build(make_settings(db_url), env=SECRETS)
    Processor(hub).drain()
    hub.close()


def test_receipts_and_events(cli: CliRunner, database: Database, db_url: str) -> None:
    seed(database, db_url)
    result = cli.invoke(app, ["receipts", "list", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert {r["delivery_id"]: r["status"] for r in rows} == {
        "wh-1": "processed",
        "wh-2": "quarantined",
    }
    table = cli.invoke(app, ["receipts", "list", "--status", "processed"])
    assert table.exit_code == 0 and "wh-1" in table.output and "wh-2" not in table.output
    bad = cli.invoke(app, ["receipts", "list", "--status", "done"])
    assert bad.exit_code == 2 and "is not one of" in bad.output
    bad_time = cli.invoke(app, ["receipts", "list", "--since", "yesterday"])
    assert bad_time.exit_code == 2 and "ISO 8601" in bad_time.output
    shown = json.loads(cli.invoke(app, ["receipts", "show", str(rows[-1]["id"]), "--json"]).output)
    assert shown["events"][0]["type"] == "order.paid"
    assert cli.invoke(app, ["receipts", "show", "9999"]).exit_code == 1
    events = json.loads(
        cli.invoke(app, ["events", "list", "--json", "--order", "450789469"]).output
    )
    assert [e["type"] for e in events] == ["order.paid"]


def test_quarantine_list_and_retry(cli: CliRunner, database: Database, db_url: str) -> None:
    seed(database, db_url)
    listed = json.loads(cli.invoke(app, ["quarantine", "list", "--json"]).output)
    assert [(q["stage"], q["reason"]) for q in listed] == [("gateway", "body is not valid JSON")]
    text = cli.invoke(app, ["quarantine", "list"]).output
    assert "valid JSON" in text and "gateway" in text
    retried = cli.invoke(app, ["quarantine", "retry", "--json"])
    assert json.loads(retried.output) == {"requeued": [listed[0]["receipt_id"]]}
    with database.read() as conn:
        assert rs.count_pending(conn) == 1
    assert json.loads(cli.invoke(app, ["quarantine", "list", "--json"]).output) == []


def test_tokens(cli: CliRunner) -> None:
    created = cli.invoke(app, ["tokens", "create", "--name", "ops", "--role", "operator", "--json"])
    assert created.exit_code == 0, created.output
    token = json.loads(created.output)
    assert token["token"].startswith("hnd_") and token["role"] == "operator"
    listed = cli.invoke(app, ["tokens", "list", "--json"])
    assert token["token"] not in listed.output
    assert cli.invoke(app, ["tokens", "revoke", str(token["id"])]).exit_code == 0
    assert cli.invoke(app, ["tokens", "revoke", str(token["id"])]).exit_code == 1
    assert cli.invoke(app, ["tokens", "create", "--role", "root"]).exit_code == 2


def test_db_upgrade_and_current(cli: CliRunner) -> None:
    up = cli.invoke(app, ["db", "upgrade"])
    assert up.exit_code == 0 and "current" in up.output
    assert cli.invoke(app, ["db", "current"]).exit_code == 0


def test_config_check(cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ok = cli.invoke(app, ["config", "check", "--json"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.output)["missing_secrets"] == []
    monkeypatch.delenv("CRM_SECRET")
    missing = cli.invoke(app, ["config", "check"])
    assert missing.exit_code == 1 and "CRM_SECRET" in missing.output
    bad = tmp_path / "bad.toml"
    bad.write_text('[sources.x]\nvendor = "shopfy"\nrole = "pos"\nsecret_env = "X"\n')
    broken = cli.invoke(app, ["config", "check", "--config", str(bad)])
    assert broken.exit_code == 2
    assert "sources.x.vendor = 'shopfy'" in broken.output


def test_example_config_is_valid_and_vendor_options_are_checked(
    cli: CliRunner, tmp_path: Path
) -> None:
    example = Path(__file__).parent.parent / "handoff.example.toml"
    result = cli.invoke(app, ["config", "check", "--config", str(example), "--json"])
    assert result.exit_code == 1  # valid, but its secrets are not set here
    data = json.loads(result.output)
    assert data["valid"] and len(data["sources"]) == 7
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[sources.x]\nvendor = "hmac"\nrole = "pos"\nsecret_env = "X"\n'
        '[sources.x.options]\nalgorithm = "md5"\n'
    )
    broken = cli.invoke(app, ["config", "check", "--config", str(bad)])
    assert broken.exit_code == 2 and "sources.x.options" in broken.output
    assert "md5" in broken.output


def test_sim_writes_truth_and_exports_deterministically(tmp_path: Path) -> None:
    runner = CliRunner()
    for name in ("a", "b"):
        result = runner.invoke(
            app, ["sim", "--customers", "8", "--seed", "3", "--out", str(tmp_path / name)]
        )
        assert result.exit_code == 0, result.output
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.csv"))
    assert Path("truth/identities.csv") in files and Path("exports/orders.csv") in files
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()
