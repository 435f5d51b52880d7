"""/api/identity over real HTTP on both databases: find a customer, read its decisions, decide a
review item, undo a merge; viewers read masked contacts and cannot act."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from tests.conftest import LiveServer
from tests.identity.test_unmerge import ANA_AT_ERP, customer_of, processor, shop
from tests.ledger.helpers import erp, seed
from tests.ledger.helpers import erp_fixture as fx
from tests.test_api import token


def test_find_history_unmerge_and_roles(live_server: Callable[..., LiveServer]) -> None:
    server = live_server(run_worker=False)
    hub = server.hub
    run = processor(hub)
    seed(hub, [shop("customers/create", "s1", "customer.json")])
    run.drain()
    seed(hub, [erp("e1", fx("customer_profile_captured", customer=ANA_AT_ERP))])
    run.drain()
    root = customer_of(hub, "shop", "7001")
    viewer, operator = token(server, "viewer"), token(server, "operator")
    api = f"{server.url}/api/identity"

    found = httpx.get(f"{api}/customers", params={"q": "7001"}, headers=operator).json()
    assert [c["customer_id"] for c in found] == [root]
    assert found[0]["phone"] == "+14155550123" and found[0]["first_name"] == "Ana"
    assert found[0]["external_ids"] == {"shop": "7001", "erp": "C-42"}
    masked = httpx.get(f"{api}/customers", params={"q": "7001"}, headers=viewer).json()
    assert masked[0]["phone"] == "•••23"

    detail = httpx.get(f"{api}/customers/{root}", headers=viewer).json()
    [merge] = [d for d in detail["decisions"] if d["kind"] == "merge"]
    assert detail["profiles"] == 2
    assert httpx.get(f"{api}/customers/999999", headers=viewer).status_code == 404

    url = f"{api}/decisions/{merge['id']}/unmerge"
    assert httpx.post(url, headers=viewer).status_code == 403
    preview = httpx.post(url, params={"dry_run": "true"}, headers=operator).json()
    assert preview["applied"] is False and len(preview["parts"]) == 2
    assert customer_of(hub, "erp", "C-42") == root
    done = httpx.post(url, headers=operator)
    assert done.status_code == 200, done.text
    assert done.json()["applied"] is True
    assert customer_of(hub, "erp", "C-42") != root
    again = httpx.post(url, headers=operator)
    assert again.status_code == 409 and "already undone" in again.json()["detail"]
    assert httpx.post(f"{api}/decisions/999999/unmerge", headers=operator).status_code == 404


def test_review_queue_through_the_api(live_server: Callable[..., LiveServer]) -> None:
    server = live_server(run_worker=False)
    hub = server.hub
    run = processor(hub)
    seed(hub, [shop("customers/create", "s1", "customer.json")])
    seed(hub, [shop("customers/create", "s2", "customer.json", id=7002, first_name="Marta")])
    run.drain()
    viewer, operator = token(server, "viewer"), token(server, "operator")
    api = f"{server.url}/api/identity/review"
    items = httpx.get(api, headers=viewer).json()
    assert items, "a shared email with another first name waits for review"
    metrics = httpx.get(f"{server.url}/metrics").text
    assert f"handoff_identity_review_open {float(len(items))}" in metrics
    assert "handoff_identity_review_oldest_seconds" in metrics
    assert "handoff_receipts_oldest_pending_seconds 0.0" in metrics  # everything processed
    assert 'handoff_source_to_receipt_seconds_count{source="shop"}' in metrics
    assert 'handoff_source_to_process_seconds_count{source="shop"}' in metrics
    first = items[0]
    shown = httpx.get(f"{api}/{first['id']}", headers=viewer).json()
    assert shown["status"] == "open" and shown["evidence"] is not None
    assert (
        httpx.post(f"{api}/{first['id']}", json={"action": "merge"}, headers=viewer).status_code
        == 403
    )
    bad = httpx.post(f"{api}/{first['id']}", json={"action": "fuse"}, headers=operator)
    assert bad.status_code == 422
    merged = httpx.post(f"{api}/{first['id']}", json={"action": "merge"}, headers=operator)
    assert merged.status_code == 200, merged.text
    assert merged.json()["action"] == "merged"
    assert customer_of(hub, "shop", "7001") == customer_of(hub, "shop", "7002")
    again = httpx.post(f"{api}/{first['id']}", json={"action": "split"}, headers=operator)
    assert again.status_code == 409
    assert httpx.get(f"{api}/424242", headers=viewer).status_code == 404
    spec = httpx.get(f"{server.url}/openapi.json").json()
    assert "/api/identity/decisions/{decision_id}/unmerge" in spec["paths"]
