"""Customer 360, identity review and reconciliation pages over real HTTP, on both databases:
what each shows, what each action does, and that a viewer is refused every action (the page
offers none, and a forced POST with a valid CSRF token gets 403) and sees emails masked."""

from __future__ import annotations

import json
import re
import time

import httpx

from handoff.store import identity as identity_store
from handoff.store import outbox as outbox_store
from tests.web.conftest import ANA, World, sign_in


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, "no CSRF token on the page"
    return match.group(1)


def test_new_pages_need_a_session(world: World) -> None:
    for path in ("/customers", f"/customers/{world.ana}", "/review", "/reconciliation"):
        response = httpx.get(world.url + path)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/login")


def test_customer_360_shows_the_balance_mismatch(world: World) -> None:
    with httpx.Client() as ops:
        assert sign_in(ops, world.url, "ops").status_code == 303
        for query in (ANA, "C-42", "7001", "Ana Lopez", str(world.ana)):
            found = ops.get(world.url + "/customers", params={"q": query})
            assert f'data-customer="{world.ana}"' in found.text, query
        page = ops.get(f"{world.url}/customers/{world.ana}").text
    # the golden record, with the system each value came from, and both systems' ids
    assert re.search(
        r'data-field="email"><td>email</td><td>ana.lopez@bluewave.net</td>'
        r'<td class="idle">erp</td>',
        page,
    )
    assert "<td>erp</td><td>C-42</td>" in page and "<td>loyalty</td><td>7001</td>" in page
    # the ledger expects 110 points (net merchandise 110.00); the platform reports 500
    balance = re.search(
        r'<tr data-mismatch="yes"[^>]*>\s*<td>balance</td><td>(\d+)</td>'
        r"\s*<td>(\d+)</td>\s*<td><strong>([-+]\d+)</strong>",
        page,
    )
    assert balance and balance.groups() == ("110", "500", "-390")
    # the timeline across systems: the ERP's profile and order, the platform's points
    assert re.findall(r'<tr data-event="\d+">\s*<td>[^<]+</td><td>(\w+)</td>', page) == [
        "loyalty",
        "erp",
        "erp",
    ]


def delivered_page(client: httpx.Client, url: str) -> tuple[str, str | None]:
    """The customer page once the worker has delivered the VIP flag (or given up waiting)."""
    deadline = time.monotonic() + 20
    while True:
        page = client.get(url).text
        row = re.search(
            r'<tr data-destination="pos-out" data-field="is_vip" data-delivered="([^"]*)"', page
        )
        if (row and row.group(1) != "null") or time.monotonic() > deadline:
            return page, row.group(1) if row else None
        time.sleep(0.1)


def test_customer_360_shows_each_destinations_vip_flag(world: World) -> None:
    """The worker delivers the ledger's VIP flag (false: Bronze) to the destination."""
    with httpx.Client() as ops:
        sign_in(ops, world.url, "ops")
        page, vip = delivered_page(ops, f"{world.url}/customers/{world.ana}")
    assert vip == "false", page
    assert 'data-field="profile"' in page  # the golden record relayed there too


def test_timeline_pages_by_id(world: World) -> None:
    with httpx.Client() as ops:
        sign_in(ops, world.url, "ops")
        page = ops.get(f"{world.url}/customers/{world.ana}").text
        newest = re.findall(r'<tr data-event="(\d+)">', page)
        older = ops.get(f"{world.url}/customers/{world.ana}/timeline", params={"before": newest[0]})
    assert re.findall(r'<tr data-event="(\d+)">', older.text) == newest[1:]


def test_operator_merges_a_review_item_and_sees_the_merge(world: World) -> None:
    with httpx.Client() as ops:
        sign_in(ops, world.url, "ops")
        queue = ops.get(world.url + "/review").text
        assert f'data-review="{world.review_id}"' in queue
        item = ops.get(f"{world.url}/review/{world.review_id}").text
        # side by side, with the per-field evidence (the first names disagree)
        assert item.count("lopez.home@bluewave.net") >= 2
        assert re.search(
            r'data-field="first_name">\s*<td>first_name</td>\s*<td>\w+</td><td>\w+</td>', item
        )
        assert "Merge</button>" in item and "Keep apart</button>" in item
        done = ops.post(
            f"{world.url}/review/{world.review_id}/merge", data={"csrf_token": csrf_of(item)}
        )
        assert done.status_code == 303
        survivor = int(done.headers["location"].rsplit("/", 1)[1])
        page = ops.get(world.url + done.headers["location"]).text
        again = ops.post(
            f"{world.url}/review/{world.review_id}/merge", data={"csrf_token": csrf_of(item)}
        )
    assert again.status_code == 409  # already decided
    with world.hub.db.read() as conn:
        decided = identity_store.get_review(conn, world.review_id)
    assert decided is not None and decided.status == "merged"
    [absorbed] = {decided.customer_id, decided.candidate_customer_id} - {survivor}
    with httpx.Client() as ops:
        sign_in(ops, world.url, "ops")
        gone = ops.get(f"{world.url}/customers/{absorbed}")
    assert gone.status_code == 303  # a merged-away customer's page leads to the survivor
    assert gone.headers["location"] == f"/customers/{survivor}?from={absorbed}"
    assert re.search(
        r'data-kind="merge">\s*<td>\d+</td><td>[^<]+</td><td>merge</td>'
        r"<td>reviewer</td>\s*<td>[^<]*</td><td>ops</td>",
        page,
    )
    assert "<td>shop</td><td>1</td>" in page and "<td>crm</td><td>2</td>" in page
    with world.hub.db.read() as conn:
        assert identity_store.list_review(conn) == []
        assert identity_store.contact(conn, survivor).external_ids == {"shop": "1", "crm": "2"}  # type: ignore[union-attr]


def test_operator_keeps_a_pair_apart(world: World) -> None:
    with httpx.Client() as ops:
        sign_in(ops, world.url, "ops")
        item = ops.get(f"{world.url}/review/{world.review_id}").text
        done = ops.post(
            f"{world.url}/review/{world.review_id}/split", data={"csrf_token": csrf_of(item)}
        )
        assert done.status_code == 303 and done.headers["location"] == "/review"
        closed = ops.get(world.url + "/review", params={"status": "split"}).text
    assert f'data-review="{world.review_id}"' in closed


def test_operator_undoes_the_pipelines_merge(world: World) -> None:
    with httpx.Client() as ops:
        sign_in(ops, world.url, "ops")
        page = ops.get(f"{world.url}/customers/{world.garcias}").text
        assert f'href="/customers/{world.garcias}/unmerge/{world.merge_decision}"' in page
        preview = ops.get(f"{world.url}/customers/{world.garcias}/unmerge/{world.merge_decision}")
        assert preview.status_code == 200
        assert preview.text.count("<tr><td>") == 2  # two customers once the merge is undone
        with world.hub.db.read() as conn:
            assert len(identity_store.find_customers(conn, "family@bluewave.net")) == 1
        done = ops.post(
            f"{world.url}/customers/{world.garcias}/unmerge/{world.merge_decision}",
            data={"csrf_token": csrf_of(preview.text)},
        )
        assert done.status_code == 303
        after = ops.get(f"{world.url}/customers/{world.garcias}").text
    with world.hub.db.read() as conn:
        assert len(identity_store.find_customers(conn, "family@bluewave.net")) == 2
    assert 'data-kind="unmerge"' in after and '<span class="idle">undone</span>' in after
    assert f'/unmerge/{world.merge_decision}"' not in after  # no second undo offered


def test_viewer_sees_masks_and_is_refused_every_action(world: World) -> None:
    with httpx.Client() as viewer:
        assert sign_in(viewer, world.url, "viewer").status_code == 303
        page, vip = delivered_page(viewer, f"{world.url}/customers/{world.ana}")
        assert vip == "false"  # the relayed profile (with the email) is on the page too
        assert ANA not in page and "a•••@bluewave.net" in page
        assert 'data-mismatch="yes"' in page  # reading is allowed
        item = viewer.get(f"{world.url}/review/{world.review_id}").text
        assert "lopez.home@bluewave.net" not in item
        assert "Merge</button>" not in item and "Keep apart</button>" not in item
        garcias = viewer.get(f"{world.url}/customers/{world.garcias}").text
        assert "Undo</button>" not in garcias
        assert (
            viewer.get(
                f"{world.url}/customers/{world.garcias}/unmerge/{world.merge_decision}"
            ).status_code
            == 403
        )
        run = viewer.get(f"{world.url}/reconciliation/{world.run.name}/apply").text
        assert re.search(r'id="counts"><strong>[1-9]', run)  # there is something to apply …
        assert 'id="apply"' not in run  # … but not for a viewer
        token = csrf_of(page)
        forced = [
            viewer.post(f"{world.url}/review/{world.review_id}/merge", data={"csrf_token": token}),
            viewer.post(f"{world.url}/review/{world.review_id}/split", data={"csrf_token": token}),
            viewer.post(
                f"{world.url}/customers/{world.garcias}/unmerge/{world.merge_decision}",
                data={"csrf_token": token},
            ),
            viewer.post(
                f"{world.url}/reconciliation/{world.run.name}/apply",
                data={"csrf_token": token, "expected": "1"},
            ),
        ]
    assert [r.status_code for r in forced] == [403] * 4
    with world.hub.db.read() as conn:
        assert [r.id for r in identity_store.list_review(conn)] == [world.review_id]
        assert len(identity_store.find_customers(conn, "family@bluewave.net")) == 1
    assert not (world.run / "applied.jsonl").exists()


def test_actions_need_the_csrf_token(world: World) -> None:
    with httpx.Client() as ops:
        sign_in(ops, world.url, "ops")
        for path in (
            f"/review/{world.review_id}/merge",
            f"/customers/{world.garcias}/unmerge/{world.merge_decision}",
        ):
            assert ops.post(world.url + path).status_code == 403
            assert ops.post(world.url + path, data={"csrf_token": "forged"}).status_code == 403


def test_reconciliation_run_shows_findings_and_applies_with_a_count_first(world: World) -> None:
    name = world.run.name
    with httpx.Client() as ops:
        sign_in(ops, world.url, "ops")
        runs = ops.get(world.url + "/reconciliation").text
        assert f'data-run="{name}"' in runs
        page = ops.get(f"{world.url}/reconciliation/{name}").text
        assert re.findall(r'<tr data-class="(\w+)">', page) == ["duplicate", "missing"]
        assert page.count("<svg role='img'") == 2  # by class, by handoff
        only = ops.get(f"{world.url}/reconciliation/{name}", params={"cls": "missing"}).text
        assert re.findall(r'<tr data-class="(\w+)">', only) == ["missing"]
        by_order = ops.get(f"{world.url}/reconciliation/{name}", params={"q": "so-2001"}).text
        assert re.findall(r'<tr data-class="(\w+)">', by_order) == ["duplicate"]
        # drill-down: the trace of the order, its first divergence marked
        finding = ops.get(f"{world.url}/reconciliation/{name}/findings/missing:SO-1001").text
        assert 'data-order="SO-1001"' in finding and 'data-divergence="first"' in finding
        # judged under the run's rules (trigger fulfilled), not this hub's (trigger paid)
        assert "should earn 150 points (order.fulfilled)" in finding
        # the plan: Ana (ERP id C-42) is known to the hub; Bo Kim (C-77) is not
        plan = ops.get(f"{world.url}/reconciliation/{name}/apply").text
        counts = re.search(
            r'id="counts"><strong>(\d+)</strong>[^·]*· (\d+) naming no customer', plan
        )
        assert counts, plan
        sendable, unresolved = int(counts.group(1)), int(counts.group(2))
        assert sendable >= 1 and unresolved >= 1
        assert 'id="apply"' in plan and f"Apply {sendable} correction(s)" in plan
        stale = ops.post(
            f"{world.url}/reconciliation/{name}/apply",
            data={"csrf_token": csrf_of(plan), "expected": str(sendable + 1)},
        )
        assert stale.status_code == 409  # the count shown must be the count sent
        done = ops.post(
            f"{world.url}/reconciliation/{name}/apply",
            data={"csrf_token": csrf_of(plan), "expected": str(sendable)},
        )
        assert done.status_code == 303
        after = ops.get(world.url + done.headers["location"]).text
    assert f"Sent {sendable} correction(s)" in after
    applied = [json.loads(x) for x in (world.run / "applied.jsonl").read_text().splitlines()]
    assert len(applied) == sendable
    assert {a["golden_customer_id"] for a in applied} == {world.ana}
    with world.hub.db.read() as conn:
        rows = outbox_store.list_rows(conn, outbox_store.DeliveryFilter(customer_id=world.ana), 100)
    assert rows  # the corrections are in the outbox for Ana
