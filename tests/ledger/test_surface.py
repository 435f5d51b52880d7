"""`handoff ledger …` and `/api/ledger/…` over a ledger the processor filled, on both databases."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from typer.testing import CliRunner

from handoff.cli import app
from handoff.domain.changes import AttributeChange
from handoff.hub import Hub
from handoff.pipeline.ledger_stage import LedgerStage, changes_from_history
from handoff.pipeline.processor import Processor
from handoff.store import ledger as ls
from handoff.store import tokens
from handoff.store.ledger_tables import ledger_projections
from handoff.web.app import create_app
from tests.conftest import SECRETS
from tests.ledger.helpers import NOW, FixedClock, MapIdentity, by_external_id, erp, seed
from tests.ledger.helpers import erp_fixture as fx
from tests.test_contention import write_config

PROGRAM = {"trigger": "paid", "point_value": "0.01"}
BIG = {"order_id": "SO-2", "subtotal": "2500.00", "discount": "0", "gift_card": "0"}


@pytest.fixture
def filled(hub_factory: Callable[..., Hub]) -> Hub:
    hub = hub_factory(program=PROGRAM)
    hub.clock = FixedClock(NOW)
    seed(
        hub,
        [
            erp("r1", fx("order_paid")),
            erp("r2", fx("order_refunded")),
            erp("r3", fx("order_paid", paid_at="2026-04-01T10:00:00Z", **BIG)),
        ],
    )
    stages = [MapIdentity(by_external_id({"C-42": 7})), LedgerStage.from_hub(hub)]
    assert Processor(hub, stages=stages).drain().quarantined == 0
    return hub


@pytest.fixture
def cli(filled: Hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    config = write_config(tmp_path)
    config.write_text(config.read_text() + '\n[program]\ntrigger = "paid"\n')
    monkeypatch.setenv("HANDOFF_DATABASE_URL", filled.settings.database_url)
    monkeypatch.setenv("HANDOFF_CONFIG", str(config))
    for key, value in SECRETS.items():
        monkeypatch.setenv(key, value)
    return CliRunner()


def run(cli: CliRunner, *args: str) -> dict[str, object]:
    result = cli.invoke(app, ["ledger", *args])
    assert result.exit_code == 0, (result.output, repr(result.exception))
    data: dict[str, object] = json.loads(result.stdout)
    return data


def test_show_with_rules_and_time_travel(cli: CliRunner) -> None:
    now = run(cli, "show", "7", "--json")
    assert (now["balance"], now["tier"], now["is_vip"]) == (2586, "Gold", True)
    entries = now["entries"]
    assert isinstance(entries, list)
    assert [e["points"] for e in entries] == [110, -24, 2500]
    assert "floor(110 * 2400 / 11000) = 24" in entries[1]["rule"]
    march = run(cli, "show", "7", "--as-of", "2026-03-05T00:00:00Z", "--json")
    assert (march["balance"], march["tier"], march["is_vip"]) == (110, "Bronze", False)
    table = cli.invoke(app, ["ledger", "show", "7"])
    assert table.exit_code == 0 and "2586" in table.stdout and "Gold" in table.stdout
    missing = cli.invoke(app, ["ledger", "show", "999"])
    assert missing.exit_code == 1


def test_rebuild_equals_live_and_travels(cli: CliRunner, tmp_path: Path) -> None:
    rebuilt = run(cli, "rebuild", "--json")
    assert (rebuilt["customers"], rebuilt["balance"], rebuilt["changes"]) == (1, 2586, 0)
    assert rebuilt["tiers"] == {"Gold": 1}
    out = tmp_path / "march.csv"
    march = run(cli, "rebuild", "--as-of", "2026-03-05T00:00:00Z", "--json", "--csv", str(out))
    assert (march["balance"], march["tiers"], march["vip"]) == (110, {"Bronze": 1}, 0)
    rows = list(csv.DictReader(out.open()))
    assert [(r["customer_id"], r["balance"], r["tier"]) for r in rows] == [("7", "110", "Bronze")]
    again = run(cli, "rebuild", "--from-events", "--json")
    assert (again["balance"], again["changes"]) == (2586, 0)


def test_liability_table_json_and_csv(cli: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "liability.csv"
    report = run(cli, "liability", "--json", "--csv", str(out))
    assert (report["outstanding_points"], report["outstanding_value"]) == (2586, 2586)
    rows = {r["measure"]: r for r in csv.DictReader(out.open())}
    assert rows["outstanding (vested)"]["value"] == "25.86"
    table = cli.invoke(app, ["ledger", "liability"])
    assert table.exit_code == 0 and "net liability" in table.stdout


def test_api_for_viewers(filled: Hub) -> None:
    with filled.db.write() as conn:
        _, viewer = tokens.create_token(conn, name="finance", role="viewer", now=NOW)
    auth = {"Authorization": f"Bearer {viewer}"}
    with TestClient(create_app(filled, run_worker=False)) as client:
        assert client.get("/api/ledger/customers/7").status_code == 401
        balance = client.get("/api/ledger/customers/7", headers=auth).json()
        assert (balance["balance"], balance["tier"], balance["is_vip"]) == (2586, "Gold", True)
        march = client.get(
            "/api/ledger/customers/7/entries",
            params={"as_of": "2026-03-05T00:00:00Z"},
            headers=auth,
        ).json()
        assert [e["kind"] for e in march["entries"]] == ["earn"]
        tiers = client.get("/api/ledger/customers/7/tiers", headers=auth).json()
        assert [(t["attribute"], t["value"]) for t in tiers] == [
            ("tier", "Gold"),
            ("is_vip", "true"),
        ]
        report = client.get("/api/ledger/liability", headers=auth).json()
        assert report["outstanding_points"] == 2586
        assert client.get("/api/ledger/customers/999", headers=auth).status_code == 404


def test_rebuild_repairs_a_stale_projection_with_a_newer_version(
    cli: CliRunner, filled: Hub
) -> None:
    with filled.db.write() as conn:
        conn.execute(update(ledger_projections).values(tier="Bronze", is_vip=False, balance=0))
        before = ls.projection_of(conn, 7)
    assert before is not None
    rebuilt = run(cli, "rebuild", "--json")
    assert (rebuilt["balance"], rebuilt["changes"]) == (2586, 1)
    with filled.db.read() as conn:
        after = ls.projection_of(conn, 7)
        history = ls.history_of(conn, 7)
    assert after is not None and (after.tier, after.is_vip) == ("Gold", True)
    assert after.version > before.version
    repaired = [h for h in history if h.cause.startswith("ledger rebuild")]
    assert sorted((h.attribute, h.value, h.previous) for h in repaired) == [
        ("is_vip", "true", "false"),
        ("tier", "Gold", "Bronze"),
    ]
    assert {h.version for h in repaired} == {after.version}
    changes = changes_from_history(repaired)
    assert sorted((c.attribute, c.value) for c in changes if isinstance(c, AttributeChange)) == [
        ("is_vip", True),
        ("tier", "Gold"),
    ]
