"""`handoff identity train` and `identity models` on both databases: EM on the store's own
profiles, the model kept as a new version (the same parameters are not stored twice), listed
newest first, and the live stage scoring with the newest trained model instead of the default."""

from __future__ import annotations

import json
from collections.abc import Callable

from sqlalchemy import select
from typer.testing import CliRunner

from handoff.cli import app
from handoff.domain.identity import default_model
from handoff.hub import Hub
from handoff.pipeline.identity_stage import IdentityStage
from handoff.store import identity_models as models
from handoff.store.identity_models_tables import identity_models
from tests.identity.test_stage import profile, run

FIRST = ["Ana", "Ben", "Chloe", "Dmitri", "Eve", "Farah", "Goran", "Hana", "Ines", "Jon"]
LAST = ["Silva", "Novak", "Dubois", "Ivanov", "Moreau", "Haddad", "Petrov", "Sato"]


def populate(hub: Hub, people: int = 40) -> None:
    """People seen by two systems each (the second time with a typo or without the email)."""
    events = []
    n = 0
    for k in range(people):
        first, last = FIRST[k % len(FIRST)], LAST[k // len(FIRST) % len(LAST)]
        email = f"{first}.{last}{k}@mailbox-example.org".lower()
        n += 1
        events.append(profile("shop", f"s{k}", n, email=email, first=first, last=last, zip="2600"))
        n += 1
        twin = first if k % 3 else first + "a"
        events.append(
            profile(
                "crm",
                f"c{k}",
                n,
                email=email if k % 2 else None,
                first=twin,
                last=last,
                zip="2600",
            )
        )
    run(hub, events)


def test_train_stores_a_version_the_live_stage_uses(
    cli: CliRunner, hub_factory: Callable[..., Hub]
) -> None:
    hub = hub_factory()
    listed = cli.invoke(app, ["identity", "models", "--json"])
    assert listed.exit_code == 0, listed.output
    empty = json.loads(listed.output)
    assert empty["models"] == [] and empty["current"] == default_model().version
    with hub.db.read() as conn:
        assert models.load_current_model(conn) is None

    populate(hub)
    trained = cli.invoke(app, ["identity", "train", "--json"])
    assert trained.exit_code == 0, trained.output
    first = json.loads(trained.output)
    assert first["created"] is True
    assert first["records"] == 80
    assert first["version"].startswith("fs-") and first["version"] != default_model().version
    assert first["report"]["candidate_pairs"] > 0
    assert first["report"]["passes"]

    # deterministic for a seed: the same data gives the same version, stored once
    again = cli.invoke(app, ["identity", "train", "--json"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.output)["version"] == first["version"]
    assert json.loads(again.output)["created"] is False
    other = cli.invoke(app, ["identity", "train", "--seed", "7", "--json"])
    assert other.exit_code == 0, other.output
    second = json.loads(other.output)

    with hub.db.read() as conn:
        stored = conn.execute(select(identity_models.c.version)).scalars().all()
        current = models.load_current_model(conn)
        stage = IdentityStage.from_hub(hub)
        scorer = stage._scorer(conn)
    assert len(stored) == len(set(stored)) == (2 if second["created"] else 1)
    newest = second["version"] if second["created"] else first["version"]
    assert current is not None and current.version == newest
    assert current.meta.get("trained_on") == "store"
    # the live stage scores with the newest trained model (rescaled to the store's size)
    assert stage.model.version == newest
    assert scorer.model.fields == current.fields

    shown = cli.invoke(app, ["identity", "models", "--json"])
    assert shown.exit_code == 0, shown.output
    listing = json.loads(shown.output)
    assert listing["current"] == newest
    assert listing["models"][0]["version"] == newest
    assert listing["models"][-1]["version"] == first["version"]
    table = cli.invoke(app, ["identity", "models"])
    assert table.exit_code == 0 and first["version"] in table.output


def test_train_refuses_an_empty_store(cli: CliRunner, hub_factory: Callable[..., Hub]) -> None:
    hub_factory()
    result = cli.invoke(app, ["identity", "train"])
    assert result.exit_code == 1
    assert "too few" in result.output
