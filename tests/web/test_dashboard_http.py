"""The dashboard's access rules over real HTTP: sign-in, sessions, CSRF, roles, masking."""

from __future__ import annotations

import re

import httpx

from handoff.web.session import COOKIE
from tests.web.conftest import Dashboard, sign_in


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, "no CSRF token on the page"
    return match.group(1)


def test_pages_need_a_session(dashboard: Dashboard) -> None:
    for path in ("/", "/events", "/quarantine", "/deliveries"):
        response = httpx.get(dashboard.url + path)
        assert response.status_code == 303
        assert response.headers["location"].startswith("/login")


def test_wrong_password_then_throttled(dashboard: Dashboard) -> None:
    with httpx.Client() as client:
        for _ in range(5):
            refused = sign_in(client, dashboard.url, "ops", "wrong password!")
            assert refused.status_code == 401
            assert "wrong password" in refused.text
        throttled = sign_in(client, dashboard.url, "ops")  # the right password, too late
        assert throttled.status_code == 401
        assert "too many failed sign-ins" in throttled.text
        assert COOKIE not in throttled.cookies


def test_a_planted_session_id_is_worthless(dashboard: Dashboard) -> None:
    planted = "attacker-chosen-session-id"
    with httpx.Client(cookies={COOKIE: planted}) as client:
        response = sign_in(client, dashboard.url, "ops")
        assert response.status_code == 303
        issued = response.cookies[COOKIE]
        assert issued != planted
        cookie = response.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
    still_out = httpx.get(dashboard.url + "/", cookies={COOKIE: planted})
    assert still_out.status_code == 303


def test_replay_needs_csrf_and_the_operator_role(dashboard: Dashboard) -> None:
    replay = f"{dashboard.url}/deliveries/{dashboard.dead_id}/replay"
    with httpx.Client() as viewer:
        assert sign_in(viewer, dashboard.url, "viewer").status_code == 303
        page = viewer.get(dashboard.url + "/deliveries")
        assert page.status_code == 200
        assert "Replay</button>" not in page.text  # not offered …
        token = csrf_of(page.text)  # (the sign-out form carries it)
        forced = viewer.post(replay, data={"csrf_token": token})
        assert forced.status_code == 403  # … and refused when forced
    with httpx.Client() as ops:
        assert sign_in(ops, dashboard.url, "ops").status_code == 303
        page = ops.get(dashboard.url + "/deliveries")
        assert "Replay</button>" in page.text
        assert ops.post(replay).status_code == 403  # no token
        assert ops.post(replay, data={"csrf_token": "forged"}).status_code == 403
        dashboard.refusing["on"] = False
        done = ops.post(replay, data={"csrf_token": csrf_of(page.text)})
        assert done.status_code == 303
    dashboard.wait_for(dashboard.dead_id, "delivered")
    assert dashboard.receiver.tally.attributes[(42, "is_vip")] == (1, True)


def test_viewers_see_masked_emails(dashboard: Dashboard) -> None:
    with httpx.Client() as viewer:
        sign_in(viewer, dashboard.url, "viewer")
        masked = viewer.get(dashboard.url + "/events?source=shop").text
    with httpx.Client() as ops:
        sign_in(ops, dashboard.url, "ops")
        plain = ops.get(dashboard.url + "/events?source=shop").text
    email = "bob@example.com"
    assert email in plain
    assert email not in masked and "b•••@example.com" in masked


def test_overview_marks_the_failing_source_red(dashboard: Dashboard) -> None:
    with httpx.Client() as ops:
        sign_in(ops, dashboard.url, "ops")
        page = ops.get(dashboard.url + "/").text
    assert re.search(r'data-edge="shop" data-health="bad"', page)
    assert re.search(r'data-edge="crm" data-health="idle"', page)
    assert re.search(r'data-edge="sink" data-health="bad"', page)  # its one delivery is dead
