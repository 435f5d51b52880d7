"""Customer 360, identity review and reconciliation in headless Chromium (Debian's package).

An operator finds Ana, sees her loyalty balance mismatch highlighted, approves a review item
and lands on the merged customer with the merge in its history, undoes the pipeline's merge of
two people sharing an email, opens a reconciliation run with its charts and drills into a
finding's trace; a viewer is offered no action and is refused
when forcing one from the page. Screenshots of each page land in test-artifacts/.
"""

from __future__ import annotations

import re

import pytest

from tests.web.conftest import ANA, World
from tests.web.test_dashboard_browser import browser, shot, sign_in

pytestmark = pytest.mark.browser

__all__ = ["browser"]  # the module-scoped Chromium fixture, shared with the dashboard's tests


def test_operator_sees_the_mismatch_merges_a_pair_and_reads_a_run(
    browser: object, world: World, db_url: str
) -> None:
    db = "pg" if db_url.startswith("postgresql") else "sqlite"
    page = sign_in(browser, world, "ops")  # type: ignore[arg-type]

    page.click("header >> text=Customers")  # type: ignore[attr-defined]
    page.fill("input[name=q]", ANA)  # type: ignore[attr-defined]
    page.click("text=Find")  # type: ignore[attr-defined]
    page.click(f'table#customers tr[data-customer="{world.ana}"] a')  # type: ignore[attr-defined]
    mismatch = page.locator('table#balance tr[data-mismatch="yes"]')  # type: ignore[attr-defined]
    assert mismatch.count() == 1
    cells = mismatch.locator("td").all_inner_texts()
    assert cells[:3] == ["balance", "110", "500"]
    background = mismatch.evaluate("e => getComputedStyle(e).backgroundColor")
    assert background == "rgb(255, 235, 233)"  # highlighted
    shot(page, "customer-360", db)

    page.click("header >> text=Review")  # type: ignore[attr-defined]
    page.click(f'table#review tr[data-review="{world.review_id}"] a')  # type: ignore[attr-defined]
    assert page.locator("table#evidence tr[data-field]").count() > 0  # type: ignore[attr-defined]
    shot(page, "review-item", db)
    page.click("#decide >> text=Merge")  # type: ignore[attr-defined]
    page.wait_for_url(re.compile(r".*/customers/\d+$"))  # type: ignore[attr-defined]
    merge = page.locator('table#decisions tr[data-kind="merge"]')  # type: ignore[attr-defined]
    assert "reviewer" in merge.last.inner_text() and "ops" in merge.last.inner_text()
    shot(page, "customer-merged", db)

    # the pipeline merged the Garcias on their shared email: undo it, after the dry run
    page.goto(f"{world.url}/customers/{world.garcias}")  # type: ignore[attr-defined]
    page.click(f'tr[data-decision="{world.merge_decision}"] a.undo')  # type: ignore[attr-defined]
    assert page.locator("table#parts tr").count() == 1 + 2  # type: ignore[attr-defined]
    shot(page, "customer-unmerge", db)
    page.click("form#unmerge button")  # type: ignore[attr-defined]
    page.wait_for_url(f"{world.url}/customers/{world.garcias}")  # type: ignore[attr-defined]
    assert page.locator('table#decisions tr[data-kind="unmerge"]').count() == 1  # type: ignore[attr-defined]

    page.click("header >> text=Reconciliation")  # type: ignore[attr-defined]
    page.click(f'table#runs tr[data-run="{world.run.name}"] a')  # type: ignore[attr-defined]
    assert page.locator("#charts svg").count() == 2  # type: ignore[attr-defined]
    classes = page.locator("table#findings tr[data-class]")  # type: ignore[attr-defined]
    assert sorted(classes.evaluate_all("rs => rs.map(r => r.dataset.class)")) == [
        "duplicate",
        "missing",
    ]
    shot(page, "reconciliation-run", db)
    page.click("text=missing:SO-1001")  # type: ignore[attr-defined]
    first = page.locator('tr[data-divergence="first"]')  # type: ignore[attr-defined]
    assert first.count() >= 1 and "first divergence" in first.first.inner_text()
    shot(page, "reconciliation-trace", db)
    page.goto(f"{world.url}/reconciliation/{world.run.name}/apply")  # type: ignore[attr-defined]
    assert page.locator("form#apply button").count() == 1  # type: ignore[attr-defined]
    shot(page, "reconciliation-apply", db)


def test_viewer_is_offered_no_action_and_refused_when_forcing_one(
    browser: object, world: World, db_url: str
) -> None:
    page = sign_in(browser, world, "viewer")  # type: ignore[arg-type]
    page.goto(f"{world.url}/review/{world.review_id}")  # type: ignore[attr-defined]
    assert page.locator("#decide").count() == 0  # type: ignore[attr-defined]
    assert "lopez.home@bluewave.net" not in page.content()  # type: ignore[attr-defined]
    token = page.locator("input[name=csrf_token]").first.get_attribute("value")  # type: ignore[attr-defined]
    status = page.evaluate(  # type: ignore[attr-defined]
        """async ([url, token]) => {
            const body = new URLSearchParams({csrf_token: token});
            const r = await fetch(url, {method: "POST", body});
            return r.status;
        }""",
        [f"{world.url}/review/{world.review_id}/merge", token],
    )
    assert status == 403
    page.goto(f"{world.url}/customers/{world.ana}")  # type: ignore[attr-defined]
    assert ANA not in page.content() and "a•••@bluewave.net" in page.content()  # type: ignore[attr-defined]
    page.goto(f"{world.url}/customers/{world.garcias}")  # type: ignore[attr-defined]
    assert page.locator("table#decisions a.undo").count() == 0  # type: ignore[attr-defined]
    page.goto(f"{world.url}/reconciliation/{world.run.name}/apply")  # type: ignore[attr-defined]
    assert page.locator("form#apply").count() == 0  # type: ignore[attr-defined]
