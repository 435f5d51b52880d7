"""The review queue through the CLI: a shared email with a different first name waits; an
operator merges it (the absorbed customer's ids and events follow, the decision is logged), or
keeps a pair apart."""

from __future__ import annotations

import json
from collections.abc import Callable

from typer.testing import CliRunner

from handoff.cli import app
from handoff.hub import Hub
from handoff.store import identity as store
from tests.identity.test_stage import profile, run


def test_merge_and_split_from_the_queue(cli: CliRunner, hub_factory: Callable[..., Hub]) -> None:
    hub = hub_factory()
    a = profile("shop", "1", 1, email="lopez.home@bluewave.net", first="Maria", last="Lopez")
    b = profile("crm", "2", 2, email="lopez.home@bluewave.net", first="Jorge", last="Lopez")
    c = profile("shop", "3", 3, email="kim.home@bluewave.net", first="Ana", last="Kim")
    d = profile("crm", "4", 4, email="kim.home@bluewave.net", first="Bo", last="Kim")
    batch = run(hub, [a, b, c, d])

    listed = cli.invoke(app, ["identity", "review", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    items = json.loads(listed.output)
    assert len(items) == 2
    first, second = sorted(items, key=lambda i: i["id"])

    merged = cli.invoke(app, ["identity", "review", "merge", str(first["id"]), "--by", "ana"])
    assert merged.exit_code == 0, merged.output
    assert "merged customer" in merged.output
    split = cli.invoke(app, ["identity", "review", "split", str(second["id"]), "--by", "ana"])
    assert split.exit_code == 0, split.output
    again = cli.invoke(app, ["identity", "review", "merge", str(first["id"])])
    assert again.exit_code == 2 and "already decided" in again.output

    with hub.db.read() as conn:
        one = {store.survivor_of(conn, batch.customers[e.event_id]) for e in (a, b)}
        two = {store.survivor_of(conn, batch.customers[e.event_id]) for e in (c, d)}
        [survivor] = one
        found = store.contact(conn, survivor)
        log = store.decisions_of(conn, survivor)
        assert store.list_review(conn) == []
    assert len(two) == 2  # kept apart
    assert found is not None and found.external_ids == {"shop": "1", "crm": "2"}
    assert any(d["kind"] == "merge" and d["actor"] == "ana" for d in log)

    shown = cli.invoke(app, ["identity", "show", "lopez.home@bluewave.net", "--json"])
    assert shown.exit_code == 0, shown.output
    [customer] = json.loads(shown.output)
    assert customer["customer_id"] == survivor
