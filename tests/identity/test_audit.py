"""`handoff identity audit` and `identity suspicious` on both databases: the duplicate audit finds
customers a legacy import left split (the batch engine would merge them), lists the largest
customers, and reports identifier values shared by more people than the guard allows (a store
associate's email typed for shoppers) — reading the store without changing it."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from handoff.cli import app
from handoff.hub import Hub
from handoff.store import identity as store
from handoff.store.identity_tables import customers, identity_decisions
from tests.identity.test_stage import profile, run

NOW = datetime(2026, 11, 2, tzinfo=UTC)
STAFF = [
    ("Ana", "Silva"),
    ("Ben", "Novak"),
    ("Chloe", "Dubois"),
    ("Dmitri", "Ivanov"),
    ("Eve", "Moreau"),
    ("Farah", "Haddad"),
    ("Goran", "Petrov"),
    ("Quentin", "Sato"),
]


def legacy_import(hub: Hub, rows: list[dict[str, str]]) -> list[int]:
    """Profiles written straight into the store, one customer each (no resolution), as an old
    system's import would have left them."""
    ids = []
    with hub.db.write() as conn:
        for row in rows:
            cid = store.new_customer(conn, {}, {}, NOW)
            store.add_profile(
                conn,
                record_id=row["record_id"],
                customer_id=cid,
                system=row["system"],
                external_id=row["external_id"],
                profile=row,
                keys=[],
                now=NOW,
            )
            ids.append(cid)
    return ids


def populate(hub: Hub) -> tuple[list[int], dict[str, int]]:
    events = [
        profile("shop", f"t{k}", k, email="till3@shop-example.net", first=first, last=last)
        for k, (first, last) in enumerate(STAFF)
    ]
    events += [
        profile("shop", "101", 20, email="ana.silva@bluewave.net", first="Ana", last="Silva"),
        profile("crm", "c-9", 21, email="ana.silva@bluewave.net", first="Ana", last="Silva"),
        profile("crm", "c-10", 22, email="kim.park@bluewave.net", first="Kim", last="Park"),
    ]
    batch = run(hub, events)
    split = legacy_import(
        hub,
        [
            {
                "record_id": "legacy-1",
                "system": "erp",
                "external_id": "e-1",
                "first_name": "Tomas",
                "last_name": "Brennan",
                "email": "tomas.brennan@wharf-example.com",
                "zip": "4000",
            },
            {
                "record_id": "legacy-2",
                "system": "pos",
                "external_id": "p-77",
                "first_name": "Tom",
                "last_name": "Brennan",
                "email": " Tomas.Brennan@Wharf-Example.com",
                "zip": "4000",
            },
        ],
    )
    return split, batch.customers


def test_audit_finds_split_customers_and_shared_values(
    cli: CliRunner, hub_factory: Callable[..., Hub]
) -> None:
    hub = hub_factory()
    split, resolved = populate(hub)
    with hub.db.read() as conn:
        before = (
            conn.execute(select(func.count()).select_from(customers)).scalar_one(),
            conn.execute(select(func.count()).select_from(identity_decisions)).scalar_one(),
        )

    result = cli.invoke(app, ["identity", "audit", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["profiles"] == 13
    assert len(set(resolved.values())) == 10  # the live step merged Ana's two profiles
    assert report["merged_profiles"] == 1
    assert report["customers"] == report["profiles"] - report["merged_profiles"]
    # the legacy import's two Brennan customers are one person to the engine
    assert report["duplicate_customers"] == 1
    assert [d["customers"] for d in report["duplicates"]] == [sorted(split)]
    assert sorted(report["duplicates"][0]["records"]) == ["legacy-1", "legacy-2"]
    assert report["duplicate_rate"] == pytest.approx(1 / report["customers"])
    assert report["largest"][0]["profiles"] == 2
    assert report["largest"][0]["systems"] in (["crm", "shop"], ["erp"], ["pos"])
    shared = {(v["kind"], v["value"]): v for v in report["suspicious"]}
    till = shared[("email", "till3@shop-example.net")]
    assert till["people"] > 6 and till["records"] == 8
    assert ("email", "ana.silva@bluewave.net") not in shared

    table = cli.invoke(app, ["identity", "audit"])
    assert table.exit_code == 0, table.output
    assert "duplicate rate" in table.output and "till3@shop-example.net" in table.output

    # read-only: nothing was merged or logged
    with hub.db.read() as conn:
        after = (
            conn.execute(select(func.count()).select_from(customers)).scalar_one(),
            conn.execute(select(func.count()).select_from(identity_decisions)).scalar_one(),
        )
    assert after == before


def test_suspicious_lists_values_over_the_limit(
    cli: CliRunner, hub_factory: Callable[..., Hub]
) -> None:
    hub = hub_factory()
    empty = cli.invoke(app, ["identity", "suspicious", "--json"])
    assert empty.exit_code == 0, empty.output
    assert json.loads(empty.output) == []
    none = cli.invoke(app, ["identity", "suspicious"])
    assert none.exit_code == 0 and "no shared values" in none.output

    populate(hub)
    result = cli.invoke(app, ["identity", "suspicious", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    # the email, and its provider-canonical form
    assert {(r["kind"], r["value"]) for r in rows} == {
        ("email", "till3@shop-example.net"),
        ("email_canonical", "till3@shop-example.net"),
    }
    assert {r["people"] for r in rows} == {7}  # counting stops past the limit of 6
    table = cli.invoke(app, ["identity", "suspicious"])
    assert table.exit_code == 0 and "till3@shop-example.net" in table.output


def test_audit_of_an_empty_store(cli: CliRunner, hub_factory: Callable[..., Hub]) -> None:
    hub_factory()
    result = cli.invoke(app, ["identity", "audit", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["profiles"] == 0 and report["duplicate_rate"] == 0.0
    assert report["duplicates"] == [] and report["suspicious"] == []
