"""The dashboard in a real headless Chromium (Debian's package, driven by Playwright).

An operator signs in, sees the failing source's edge red on the chain, searches events,
replays a dead-lettered delivery and sees it delivered; a viewer is offered no replay and is
refused when forcing one from the page. Screenshots of every page land in test-artifacts/.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.web.conftest import PASSWORD, Dashboard

CHROMIUM = os.environ.get("HANDOFF_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("HANDOFF_TEST_ARTIFACTS", "test-artifacts")) / "screenshots"

pytestmark = pytest.mark.browser

playwright_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
        if os.environ.get("HANDOFF_TEST_REQUIRE_BROWSER") == "1":
            pytest.fail(f"HANDOFF_TEST_REQUIRE_BROWSER=1 but {CHROMIUM} is missing")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        yield chromium
        chromium.close()


def shot(page: object, name: str, db: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}-{db}.png"), full_page=True)  # type: ignore[attr-defined]


def sign_in(browser: object, dashboard: Dashboard, user: str) -> object:
    context = browser.new_context(viewport={"width": 1280, "height": 900})  # type: ignore[attr-defined]
    page = context.new_page()
    page.goto(dashboard.url + "/")
    assert "/login" in page.url  # sent to sign in first
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(dashboard.url + "/")
    return page


def test_operator_sees_the_red_edge_and_replays_a_dead_delivery(
    browser: object, dashboard: Dashboard, db_url: str
) -> None:
    db = "pg" if db_url.startswith("postgresql") else "sqlite"
    page = sign_in(browser, dashboard, "ops")
    edge = page.locator('svg#chain g[data-edge="shop"]')  # type: ignore[attr-defined]
    assert edge.get_attribute("data-health") == "bad"
    stroke = edge.locator("line").get_attribute("stroke")
    assert stroke == "#cf222e"  # drawn red
    page.wait_for_selector("#throughput canvas")  # the vendored chart rendered
    shot(page, "overview", db)

    page.click("text=Events")
    page.select_option("select[name=source]", "shop")
    page.click("text=Search")
    rows = page.locator("table#events tr")
    assert rows.count() == 1 + 5  # header + the five valid orders
    assert "bob@example.com" in page.content()
    shot(page, "events", db)

    page.click("text=Quarantine")
    assert page.locator("table#quarantine tr").count() == 1 + 3
    shot(page, "quarantine", db)

    dashboard.refusing["on"] = False  # the destination is fixed; replay what died
    page.click("text=Deliveries")
    dead = page.locator('table#deliveries tr[data-status="dead"]')
    assert dead.count() == 1
    shot(page, "deliveries-dead", db)
    dead.locator("text=Replay").click()
    dashboard.wait_for(dashboard.dead_id, "delivered")
    page.goto(dashboard.url + "/deliveries")
    assert page.locator('table#deliveries tr[data-status="delivered"]').count() == 1
    shot(page, "deliveries-replayed", db)


def test_viewer_is_refused_an_operator_action(
    browser: object, dashboard: Dashboard, db_url: str
) -> None:
    page = sign_in(browser, dashboard, "viewer")
    page.goto(dashboard.url + "/deliveries")
    assert page.locator("text=Replay").count() == 0
    token = page.locator("input[name=csrf_token]").first.get_attribute("value")
    status = page.evaluate(
        """async ([url, token]) => {
            const body = new URLSearchParams({csrf_token: token});
            const r = await fetch(url, {method: "POST", body});
            return r.status;
        }""",
        [f"{dashboard.url}/deliveries/{dashboard.dead_id}/replay", token],
    )
    assert status == 403
    page.goto(dashboard.url + "/events?source=shop")
    assert "bob@example.com" not in page.content()
    assert "b•••@example.com" in page.content()
