"""Hypothesis: garbage bodies and headers never produce a 5xx and never leave a partial row."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from handoff.connectors import hubspot, loyaltylion, shopify, standard
from handoff.store import receipts as rs
from tests.conftest import SECRETS, LiveServer

header_names = st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=126, exclude_characters=":"),
    min_size=1,
    max_size=30,
)
header_values = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=80)
vendor_headers = st.sampled_from(
    [
        "X-Shopify-Hmac-Sha256",
        "X-Shopify-Webhook-Id",
        "X-Shopify-Topic",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "X-HubSpot-Signature-v3",
        "X-HubSpot-Request-Timestamp",
        "X-HubSpot-Signature",
        "X-HubSpot-Signature-Version",
        "x-loyaltylion-hmac-sha256",
        "Content-Length",
    ]
)
bodies = st.one_of(
    st.binary(max_size=2048),
    st.text(max_size=400).map(str.encode),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
        ),
        max_leaves=12,
    ).map(lambda v: json.dumps(v).encode()),
)


@pytest.fixture
def live_server_once(live_server: Callable[..., LiveServer]) -> LiveServer:
    return live_server(run_worker=False)


def _signed(source: str, body: bytes, url: str) -> dict[str, str]:
    if source == "shop":
        return shopify.sign(
            SECRETS["SHOP_SECRET"].encode(), body, webhook_id=str(uuid.uuid4()), topic="orders/paid"
        )
    if source == "erp":
        return standard.sign(SECRETS["ERP_SECRET"], str(uuid.uuid4()), int(time.time()), body)
    if source == "crm":
        return hubspot.sign_v3(
            SECRETS["CRM_SECRET"].encode(), "POST", url, body, int(time.time() * 1000)
        )
    return loyaltylion.sign(SECRETS["LOYALTY_SECRET"].encode(), body)


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    source=st.sampled_from(["shop", "erp", "crm", "loyalty", "unknown"]),
    body=bodies,
    sign=st.booleans(),
    extra=st.dictionaries(st.one_of(header_names, vendor_headers), header_values, max_size=5),
)
def test_garbage_never_5xx_and_never_partial(
    live_server_once: LiveServer, source: str, body: bytes, sign: bool, extra: dict[str, str]
) -> None:
    server = live_server_once
    url = f"{server.url}/hooks/{source}"
    headers = dict(extra)
    headers.pop("Content-Length", None)
    if sign and source != "unknown":
        headers.update(_signed(source, body, url))
    try:
        response = httpx.post(url, content=body, headers=headers, timeout=10)
    except httpx.HTTPError as exc:  # a header httpx refuses to send is not our concern
        if isinstance(exc, httpx.LocalProtocolError):
            return
        raise
    assert response.status_code < 500, response.text
    assert response.headers["content-type"] == "application/json"
    digest = hashlib.sha256(body).hexdigest()
    with server.hub.db.read() as conn:
        rows = [
            r
            for r in rs.list_receipts(conn, rs.ReceiptFilter(source=source), 10_000)
            if hashlib.sha256(r.body).hexdigest() == digest
        ]
    if response.status_code == 200:
        data = response.json()
        assert data["status"] in ("stored", "quarantined", "duplicate")
        assert rows, "acknowledged but not stored"
        for row in rows:  # complete rows only
            assert row.body == body and row.delivery_id and row.received_at.tzinfo
            assert row.status in ("pending", "quarantined")
            if row.status == "quarantined":
                assert row.status_reason
    else:
        assert response.status_code in (401, 404, 413)
        assert "error" in response.json()
