"""Unmerge through the real identity and ledger stages, on both databases: undoing a bad merge
restores exactly the customers and ledger balances that exist when the link was never made, and
the absorbed side's ids, events and entries move with it."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from typer.testing import CliRunner

from handoff.cli import app
from handoff.hub import Hub
from handoff.identity_review import ReviewError, decide_review, unmerge
from handoff.pipeline.identity_stage import IdentityStage
from handoff.pipeline.ledger_stage import LedgerStage
from handoff.pipeline.processor import Processor
from handoff.store import identity as store
from handoff.store import ledger as ls
from tests.ledger.helpers import FIXTURES, NOW, Collect, FixedClock, erp, seed
from tests.ledger.helpers import erp_fixture as fx

PAID = {"trigger": "paid"}
# the ERP's customer typed with the Shopify customer's email: the engine merges them
ANA_AT_ERP = {
    "id": "C-42",
    "email": "ana.silva@example.com",
    "first_name": "Ana",
    "last_name": "Silva",
    "phone": "+14155550123",
    "zip": "94107",
}
SHOP_ONLY = {
    "shop": {"vendor": "shopify", "role": "pos", "secret_env": "SHOP_SECRET"},
}


def processor(hub: Hub) -> Processor:
    hub.clock = FixedClock(NOW)
    stages: list[Any] = [IdentityStage.from_hub(hub), LedgerStage.from_hub(hub), Collect()]
    return Processor(hub, stages=stages, batch_size=50)


def shop(
    topic: str, key: str, fixture: str, **fields: Any
) -> tuple[str, str, str, dict[str, str], bytes]:
    body = json.loads((FIXTURES / "shopify" / fixture).read_text())
    customer = fields.pop("customer", None)
    body.update(fields)
    if customer is not None:
        if "customer" in body:
            body["customer"].update(customer)
        else:
            body.update(customer)
    return ("shop", "shopify", key, {"x-shopify-topic": topic}, json.dumps(body).encode())


def customer_of(hub: Hub, system: str, external_id: str) -> int:
    with hub.db.read() as conn:
        return store.customers_of_identities(conn, [(system, external_id)])[(system, external_id)]


def balance(hub: Hub, customer: int) -> tuple[int, int, str | None, bool] | None:
    with hub.db.read() as conn:
        p = ls.projection_of(conn, customer)
    return None if p is None else (p.balance, p.pending, p.tier, p.is_vip)


def merge_decisions(hub: Hub, customer: int) -> list[dict[str, Any]]:
    with hub.db.read() as conn:
        return [d for d in store.decisions_of(conn, customer) if d["kind"] == "merge"]


def test_undoing_an_automatic_merge_moves_ids_events_and_points(
    hub_factory: Callable[..., Hub],
) -> None:
    hub = hub_factory(program=PAID)
    run = processor(hub)
    # a Shopify customer first; then an ERP customer typed with the same email merges into it
    seed(hub, [shop("customers/create", "s1", "customer.json")])
    run.drain()
    erp_profile = fx("customer_profile_captured", customer=ANA_AT_ERP)
    seed(hub, [erp("e1", erp_profile), erp("e2", fx("order_paid"))])
    assert run.drain().quarantined == 0
    root = customer_of(hub, "shop", "7001")
    assert customer_of(hub, "erp", "C-42") == root  # the link an operator will call wrong
    assert balance(hub, root) == (110, 0, "Bronze", False)
    [bad] = merge_decisions(hub, root)

    preview = unmerge(hub, int(bad["id"]), actor="ana", dry_run=True)
    assert not preview.applied and [p.customer_id for p in preview.parts] == [root, None]
    assert customer_of(hub, "erp", "C-42") == root  # a dry run writes nothing

    done = unmerge(hub, int(bad["id"]), actor="ana")
    assert done.applied and done.cluster == root
    kept, split_off = done.parts
    assert kept.customer_id == root and not kept.created
    assert split_off.created and split_off.customer_id is not None
    erp_customer = customer_of(hub, "erp", "C-42")
    assert erp_customer == split_off.customer_id != root
    assert len(split_off.records) == 2  # the ERP profile and its order
    # the points follow the order: the Shopify customer earned nothing
    assert balance(hub, erp_customer) == (110, 0, "Bronze", False)
    assert balance(hub, root) in (None, (0, 0, None, False), (0, 0, "Bronze", False))
    with hub.db.read() as conn:
        assert store.contact(conn, root).external_ids == {"shop": "7001"}  # type: ignore[union-attr]
        erp_side = store.contact(conn, erp_customer)
        assert erp_side is not None and erp_side.external_ids == {"erp": "C-42"}
        assert erp_side.phone == "+14155550123"
        log = store.decisions_of(conn, root)
    assert log[-1]["kind"] == "unmerge" and log[-1]["evidence"]["undoes"] == bad["id"]

    with pytest.raises(ReviewError, match="already undone"):
        unmerge(hub, int(bad["id"]), actor="ana")
    # later events from either system land on their own customer
    seed(hub, [erp("e3", fx("order_paid", order_id="SO-1002"))])
    run.drain()
    assert balance(hub, erp_customer) == (220, 0, "Bronze", False)


def test_undoing_a_reviewers_merge_restores_both_customers_balances(
    hub_factory: Callable[..., Hub],
) -> None:
    """Two shoppers sharing an email wait for review; an operator merges them by mistake and
    undoes it. The balances equal those of a control pair that was never linked."""
    hub = hub_factory(program=PAID, sources=SHOP_ONLY)
    run = processor(hub)

    def pair(tag: str, email: str, a: int, b: int) -> list[Any]:
        return [
            shop(
                "orders/paid",
                f"{tag}a",
                "order.json",
                id=a * 10,
                name=f"#{a}",
                customer={"id": a, "email": email, "first_name": "Ana"},
            ),
            shop(
                "orders/paid",
                f"{tag}b",
                "order.json",
                id=b * 10,
                name=f"#{b}",
                total_line_items_price="60.00",
                subtotal_price="60.00",
                customer={"id": b, "email": email, "first_name": "Marta"},
            ),
        ]

    seed(hub, pair("x", "home@bluewave.net", 8001, 8002))
    seed(hub, pair("c", "control-a@bluewave.net", 9001, 9002)[:1])
    seed(hub, pair("c", "control-b@bluewave.net", 9001, 9002)[1:])
    assert run.drain().quarantined == 0
    a, b = customer_of(hub, "shop", "8001"), customer_of(hub, "shop", "8002")
    assert a != b
    control = (
        balance(hub, customer_of(hub, "shop", "9001")),
        balance(hub, customer_of(hub, "shop", "9002")),
    )
    assert control[0] is not None and control[1] is not None and control[0] != control[1]
    before = (balance(hub, a), balance(hub, b))
    assert before == control

    with hub.db.read() as conn:
        item = next(
            r for r in store.list_review(conn) if {r.customer_id, r.candidate_customer_id} == {a, b}
        )
    outcome = decide_review(hub, item.id, "merge", "ana")
    assert outcome.survivor == a and outcome.absorbed == b
    assert customer_of(hub, "shop", "8002") == a
    merged = balance(hub, a)
    assert merged is not None and merged[0] == control[0][0] + control[1][0]

    [wrong] = [d for d in merge_decisions(hub, a) if d["rule"] == "reviewer"]
    done = unmerge(hub, int(wrong["id"]), actor="ana")
    assert [p.customer_id for p in done.parts] == [a, b]  # the absorbed customer comes back
    assert not any(p.created for p in done.parts)
    assert customer_of(hub, "shop", "8002") == b
    assert (balance(hub, a), balance(hub, b)) == control


def test_unmerge_from_the_cli(cli: CliRunner, hub_factory: Callable[..., Hub]) -> None:
    hub = hub_factory()
    run = processor(hub)
    seed(hub, [shop("customers/create", "s1", "customer.json")])
    run.drain()
    seed(hub, [erp("e1", fx("customer_profile_captured", customer=ANA_AT_ERP))])
    run.drain()
    root = customer_of(hub, "shop", "7001")
    history = cli.invoke(app, ["identity", "history", str(root), "--json"])
    assert history.exit_code == 0, history.output
    [merge] = [d for d in json.loads(history.output) if d["kind"] == "merge"]
    preview = cli.invoke(app, ["identity", "unmerge", str(merge["id"])])
    assert preview.exit_code == 0, preview.output
    assert "dry run" in preview.output and customer_of(hub, "erp", "C-42") == root
    done = cli.invoke(app, ["identity", "unmerge", str(merge["id"]), "--yes", "--by", "ana"])
    assert done.exit_code == 0, done.output
    assert customer_of(hub, "erp", "C-42") != root
    again = cli.invoke(app, ["identity", "unmerge", str(merge["id"]), "--yes"])
    assert again.exit_code == 2 and "already undone" in again.output
    not_a_merge = cli.invoke(app, ["identity", "unmerge", "999999", "--yes"])
    assert not_a_merge.exit_code == 2 and "no decision 999999" in not_a_merge.output
