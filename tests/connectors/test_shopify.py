"""Shopify connector: HMAC verification, delivery ids, and mapping of orders, refunds, customers."""

from __future__ import annotations

import base64
import contextlib
import copy
import hashlib
import hmac
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from handoff.connectors.base import (
    Inbound,
    NothingToMap,
    PayloadError,
    SignatureError,
    SourceOptions,
    StoredReceipt,
)
from handoff.connectors.shopify import ShopifyConnector, sign
from handoff.domain.events import EventType, OrderBody, ProfileBody

FIXTURES = Path(__file__).parent / "fixtures" / "shopify"
SECRET = b"shpss_current_secret"
OLD_SECRET = b"shpss_previous_secret"
RECEIVED = datetime(2026, 3, 2, 15, 17, tzinfo=UTC)


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads((FIXTURES / name).read_bytes())
    return data


def connector(**extra: Any) -> ShopifyConnector:
    return ShopifyConnector(SourceOptions(name="web-store", role="storefront", extra=extra))


def inbound(body: bytes, headers: dict[str, str]) -> Inbound:
    return Inbound(
        method="POST",
        url="https://hub.example.com/hooks/web-store",
        headers={k.lower(): v for k, v in headers.items()},
        body=body,
        received_at=RECEIVED,
    )


def receipt(data: Any, topic: str | None, **headers: str) -> StoredReceipt:
    body = data if isinstance(data, bytes) else orjson.dumps(data)
    kept = {k.replace("_", "-"): v for k, v in headers.items()}
    if topic is not None:
        kept["x-shopify-topic"] = topic
    return StoredReceipt(
        id=1, source="web-store", headers=kept, body=body, received_at=RECEIVED, delivery_id="d"
    )


def map_one(data: Any, topic: str, **options: Any) -> Any:
    drafts = connector(**options).map(receipt(data, topic))
    assert len(drafts) == 1
    return drafts[0]


# --- signatures --------------------------------------------------------------------------------


def test_sign_matches_an_independent_hmac() -> None:
    body = b'{"id":1}'
    expected = base64.b64encode(hmac.new(SECRET, body, hashlib.sha256).digest()).decode()
    assert sign(SECRET, body)["X-Shopify-Hmac-Sha256"] == expected


def test_sign_and_verify_round_trip() -> None:
    body = (FIXTURES / "order.json").read_bytes()
    headers = sign(SECRET, body, topic="orders/paid", webhook_id="wh-1", shop_domain="s.example")
    assert headers["X-Shopify-Topic"] == "orders/paid"
    connector().verify(inbound(body, headers), [SECRET])


def test_rotated_secret_is_accepted() -> None:
    body = b'{"id":1}'
    connector().verify(inbound(body, sign(OLD_SECRET, body)), [SECRET, OLD_SECRET])
    connector().verify(inbound(body, sign(SECRET, body)), [SECRET, OLD_SECRET])


def test_tampered_body_is_rejected() -> None:
    headers = sign(SECRET, b'{"id":1,"total_price":"10.00"}')
    with pytest.raises(SignatureError) as err:
        connector().verify(inbound(b'{"id":1,"total_price":"0.01"}', headers), [SECRET])
    assert err.value.reason == "signature mismatch"


def test_wrong_secret_is_rejected_and_the_reason_leaks_nothing() -> None:
    body = b'{"email":"ana@example.com"}'
    with pytest.raises(SignatureError) as err:
        connector().verify(inbound(body, sign(b"attacker", body)), [SECRET])
    assert err.value.reason == "signature mismatch"
    assert "ana@example.com" not in err.value.reason
    assert SECRET.decode() not in err.value.reason


def test_missing_signature_header() -> None:
    with pytest.raises(SignatureError) as err:
        connector().verify(inbound(b"{}", {}), [SECRET])
    assert err.value.reason == "missing header X-Shopify-Hmac-Sha256"


def test_no_configured_secret_is_rejected() -> None:
    body = b"{}"
    with pytest.raises(SignatureError, match="no secret configured"):
        connector().verify(inbound(body, sign(SECRET, body)), [])


def test_delivery_id_is_the_webhook_id() -> None:
    body = b"{}"
    assert connector().delivery_id(inbound(body, sign(SECRET, body, webhook_id="b54557e4"))) == (
        "b54557e4"
    )
    assert connector().delivery_id(inbound(body, sign(SECRET, body))) is None


def test_kept_headers_are_lower_case_and_exclude_the_signature() -> None:
    kept = ShopifyConnector.kept_headers
    assert all(h == h.lower() for h in kept)
    assert "x-shopify-topic" in kept and "x-shopify-webhook-id" in kept
    assert "x-shopify-hmac-sha256" not in kept


# --- parse -------------------------------------------------------------------------------------


def test_parse_accepts_an_object() -> None:
    assert connector().parse(b'{"id": 1}') == {"id": 1}


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "empty body"),
        (b"[1,2]", "expected a JSON object, got list"),
        (b"{nope", "body is not valid JSON"),
    ],
)
def test_parse_rejects(body: bytes, reason: str) -> None:
    with pytest.raises(PayloadError, match=reason):
        connector().parse(body)


# --- orders ------------------------------------------------------------------------------------


def test_order_paid_amounts_are_exact() -> None:
    draft = map_one(fixture("order.json"), "orders/paid")
    assert draft.type is EventType.ORDER_PAID
    assert draft.source_event_id == "order:5501234567:orders/paid"
    body = draft.body
    assert isinstance(body, OrderBody)
    assert body.currency == "USD"
    assert body.subtotal == 16000  # 2 x 45.00 + 20.00 + 50.00 gift card
    assert body.discounts == 1100
    assert body.tax == 594
    assert body.shipping == 750
    assert body.gift_cards == 5000
    assert body.net_merchandise == 9900  # 81.00 + 18.00: after discounts, no gift card/tax/shipping
    assert body.total == 16244
    assert body.channel == "online"
    assert body.location_id is None


def test_order_lines() -> None:
    body = map_one(fixture("order.json"), "orders/create").body
    sweater, cap, gift = body.lines
    assert (sweater.sku, sweater.quantity, sweater.unit_price, sweater.discount) == (
        "SW-1",
        2,
        4500,
        900,
    )
    assert sweater.line_id == "13001" and not sweater.gift_card
    assert (cap.sku, cap.unit_price, cap.discount) == ("CAP-2", 2000, 200)
    assert gift.gift_card and gift.unit_price == 5000


def test_order_customer_ref_uses_the_source_name() -> None:
    ref = map_one(fixture("order.json"), "orders/paid").customer
    assert ref.system == "web-store"
    assert ref.external_id == "7001"
    assert ref.email == "ana.silva@example.com"
    assert ref.phone == "+15551234567"
    assert (ref.first_name, ref.last_name, ref.zip) == ("Ana", "Silva", "94107")


@pytest.mark.parametrize(
    ("topic", "type_", "occurred"),
    [
        ("orders/create", EventType.ORDER_PLACED, "2026-03-02T15:15:00+00:00"),
        ("orders/paid", EventType.ORDER_PAID, "2026-03-02T15:16:30+00:00"),
        ("orders/fulfilled", EventType.ORDER_FULFILLED, "2026-03-03T14:00:00+00:00"),
    ],
)
def test_order_topics_and_times(topic: str, type_: EventType, occurred: str) -> None:
    draft = map_one(fixture("order.json"), topic)
    assert draft.type is type_
    assert draft.source_event_id == f"order:5501234567:{topic}"
    assert draft.occurred_at == datetime.fromisoformat(occurred)
    assert draft.occurred_at.tzinfo is UTC


def test_order_cancelled_uses_cancelled_at() -> None:
    data = fixture("order.json")
    data["cancelled_at"] = "2026-03-04T08:00:00-05:00"
    draft = map_one(data, "orders/cancelled")
    assert draft.type is EventType.ORDER_CANCELLED
    assert draft.occurred_at == datetime(2026, 3, 4, 13, tzinfo=UTC)


def test_shipping_discount_does_not_lower_net_merchandise() -> None:
    data = fixture("order.json")
    data["shipping_lines"][0]["discount_allocations"] = [{"amount": "7.50"}]
    data["total_discounts"] = "18.50"  # Shopify counts the free shipping in total_discounts
    data["total_price"] = "154.94"
    body = map_one(data, "orders/paid").body
    assert body.discounts == 1100
    assert body.net_merchandise == 9900
    assert body.total == 15494


def test_discounts_fall_back_to_total_discounts() -> None:
    data = fixture("order.json")
    del data["subtotal_price"]
    body = map_one(data, "orders/paid").body
    assert body.discounts == 1100 and body.net_merchandise == 9900


def test_subtotal_computed_from_lines_when_absent() -> None:
    data = fixture("order.json")
    del data["total_line_items_price"]
    assert map_one(data, "orders/paid").body.subtotal == 16000


def test_shipping_from_shipping_lines_when_no_price_set() -> None:
    data = fixture("order.json")
    del data["total_shipping_price_set"]
    data["shipping_lines"].append({"price": "2.25"})
    assert map_one(data, "orders/paid").body.shipping == 975


def test_tax_inclusive_prices_earn_on_the_tax_exclusive_amount() -> None:
    data = {
        "id": 77,
        "currency": "GBP",
        "taxes_included": True,
        "total_line_items_price": "120.00",
        "subtotal_price": "120.00",
        "total_discounts": "0.00",
        "total_tax": "20.00",
        "total_price": "120.00",
        "created_at": "2026-03-02T10:00:00Z",
        "line_items": [
            {"id": 1, "quantity": 1, "price": "120.00", "tax_lines": [{"price": "20.00"}]}
        ],
    }
    body = map_one(data, "orders/create").body
    assert body.subtotal == 12000 and body.tax == 2000
    assert body.net_merchandise == 10000


def test_zero_decimal_currency() -> None:
    data = {
        "id": 78,
        "currency": "JPY",
        "total_line_items_price": "1500",
        "subtotal_price": "1350",
        "total_tax": "135",
        "total_price": "1485",
        "line_items": [{"id": 1, "quantity": 3, "price": "500"}],
    }
    body = map_one(data, "orders/paid").body
    assert (body.subtotal, body.discounts, body.net_merchandise, body.total) == (
        1500,
        150,
        1350,
        1485,
    )


def test_pos_order_without_customer() -> None:
    data = fixture("order.json")
    data.update(source_name="pos", location_id=48752903, customer=None, email=None)
    draft = map_one(data, "orders/paid")
    assert draft.body.channel == "pos"
    assert draft.body.location_id == "48752903"
    assert draft.customer is None


def test_order_email_only_customer_ref() -> None:
    data = fixture("order.json")
    data["customer"] = None
    ref = map_one(data, "orders/paid").customer
    assert ref.external_id is None and ref.email == "ana.silva@example.com"


def test_order_time_falls_back_to_triggered_at_then_received_at() -> None:
    data = fixture("order.json")
    for field in ("created_at", "processed_at", "updated_at"):
        data.pop(field)
    triggered = "2026-03-02T15:16:59.123Z"
    drafts = connector().map(receipt(data, "orders/create", x_shopify_triggered_at=triggered))
    assert drafts[0].occurred_at == datetime(2026, 3, 2, 15, 16, 59, 123000, tzinfo=UTC)
    assert map_one(data, "orders/create").occurred_at == RECEIVED
    garbled = connector().map(receipt(data, "orders/create", x_shopify_triggered_at="soon"))
    assert garbled[0].occurred_at == RECEIVED


# --- refunds -----------------------------------------------------------------------------------


def test_refund_amount_is_merchandise_after_discounts_without_gift_cards() -> None:
    draft = map_one(fixture("refund.json"), "refunds/create")
    assert draft.type is EventType.ORDER_REFUNDED
    assert draft.source_event_id == "refund:9101"
    assert draft.occurred_at == datetime(2026, 3, 10, 17, 35, 6, tzinfo=UTC)
    assert draft.customer is None
    body = draft.body
    assert isinstance(body, OrderBody)
    assert (body.order_id, body.refund_id, body.currency) == ("5501234567", "9101", "USD")
    assert body.refund_amount == 4050
    assert [(line.line_id, line.sku, line.quantity, line.amount) for line in body.refund_lines] == [
        ("13001", "SW-1", 1, 4050),
        ("13003", "GC-50", 1, 5000),
    ]
    assert (body.subtotal, body.net_merchandise, body.total) == (0, 0, 0)


def test_refund_subtotal_number_is_read_as_its_decimal_form() -> None:
    data = fixture("refund.json")
    for line in data["refund_line_items"]:
        del line["subtotal_set"]
    assert map_one(data, "refunds/create").body.refund_amount == 4050


def test_refund_without_subtotals_prorates_line_discount() -> None:
    data = fixture("refund.json")
    for line in data["refund_line_items"]:
        del line["subtotal_set"], line["subtotal"]
    body = map_one(data, "refunds/create").body
    # 45.00 less half of the line's 9.00 discount
    assert body.refund_lines[0].amount == 4050
    assert body.refund_amount == 4050


def test_minimal_refund_needs_a_configured_currency() -> None:
    data = {
        "id": 509562969,
        "order_id": 450789469,
        "created_at": "2026-03-10T13:35:06-04:00",
        "refund_line_items": [
            {"id": 1, "line_item_id": 703073504, "quantity": 1, "line_item": {"price": "199.00"}}
        ],
        "transactions": [{"amount": "41.94", "kind": "refund", "status": "success"}],
    }
    with pytest.raises(PayloadError, match="refund carries no currency"):
        map_one(data, "refunds/create")
    body = map_one(data, "refunds/create", currency="usd").body
    assert body.currency == "USD" and body.refund_amount == 19900


# --- customers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("topic", ["customers/create", "customers/update"])
def test_customer_profile(topic: str) -> None:
    draft = map_one(fixture("customer.json"), topic)
    assert draft.type is EventType.PROFILE_CAPTURED
    assert draft.source_event_id == "customer:7001:2026-03-01T12:30:00-05:00"
    assert draft.occurred_at == datetime(2026, 3, 1, 17, 30, tzinfo=UTC)
    body = draft.body
    assert isinstance(body, ProfileBody)
    assert body.email == "ana.silva@example.com"
    assert body.phone == "+15551234567"
    assert (body.first_name, body.last_name, body.zip) == ("Ana", "Silva", "94107")
    assert body.tags == ("vip", "newsletter")
    assert body.accepts_marketing is True
    assert body.channel == "storefront"
    assert draft.customer.system == "web-store" and draft.customer.external_id == "7001"


def test_customer_legacy_accepts_marketing_flag() -> None:
    data = fixture("customer.json")
    data["accepts_marketing"] = False
    assert map_one(data, "customers/update").body.accepts_marketing is False
    del data["accepts_marketing"], data["email_marketing_consent"]
    assert map_one(data, "customers/update").body.accepts_marketing is None


# --- unusable and unmapped ---------------------------------------------------------------------


def test_unmapped_topic_is_nothing_to_map() -> None:
    with pytest.raises(NothingToMap, match="topic orders/updated is not mapped"):
        connector().map(receipt(fixture("order.json"), "orders/updated"))


def test_missing_topic_header() -> None:
    with pytest.raises(PayloadError, match="missing header x-shopify-topic"):
        connector().map(receipt(fixture("order.json"), None))


def _broken(path: tuple[Any, ...], value: Any, base: str = "order.json") -> dict[str, Any]:
    data = copy.deepcopy(fixture(base))
    target: Any = data
    for key in path[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return data


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "reason"),
    [
        (("id",), _DELETE, "id is missing"),
        (("id",), {"x": 1}, "id is not an id"),
        (("currency",), _DELETE, "currency is missing or not an ISO 4217 code"),
        (("currency",), "dollars", "currency is missing or not an ISO 4217 code"),
        (("total_price",), 162.44, "total_price is not a decimal string"),
        (("total_price",), "12,00", "total_price is not a decimal string"),
        (("total_tax",), "5.945", "total_tax: amount '5.945' has more decimals than USD allows"),
        (("line_items",), {"a": 1}, "line_items is not an array"),
        (("line_items", 0), "SW-1", r"line_items\[0\] is not an object"),
        (("line_items", 1, "quantity"), -1, r"line_items\[1\].quantity is missing or not a non"),
        (("line_items", 1, "price"), True, r"line_items\[1\].price is not a decimal string"),
        (("customer",), [], "customer is not an object"),
        (("customer", "email"), 5.5, "customer.email is not a string"),
        (("updated_at",), "yesterday", "updated_at is not an ISO 8601 timestamp"),
        (("updated_at",), "2026-03-02T10:16:30", "updated_at has no UTC offset"),
        (
            ("total_shipping_price_set", "shop_money"),
            "7.50",
            "total_shipping_price_set.shop_money is not an object",
        ),
    ],
)
def test_order_payload_errors(path: tuple[Any, ...], value: Any, reason: str) -> None:
    with pytest.raises(PayloadError, match=reason):
        map_one(_broken(path, value), "orders/paid")


@pytest.mark.parametrize(
    ("path", "value", "reason"),
    [
        (("order_id",), _DELETE, "order_id is missing"),
        (("refund_line_items",), "all", "refund_line_items is not an array"),
        (("refund_line_items", 0, "quantity"), "1", r"refund_line_items\[0\].quantity"),
        (
            ("refund_line_items", 0, "subtotal_set", "shop_money", "amount"),
            "forty",
            r"refund_line_items\[0\].subtotal_set.shop_money.amount is not a decimal string",
        ),
        (("transactions", 0, "currency"), "US", r"transactions\[0\].currency is missing or not"),
    ],
)
def test_refund_payload_errors(path: tuple[Any, ...], value: Any, reason: str) -> None:
    with pytest.raises(PayloadError, match=reason):
        map_one(_broken(path, value, "refund.json"), "refunds/create")


def test_refund_line_without_any_amount() -> None:
    data = fixture("refund.json")
    line = data["refund_line_items"][0]
    del line["subtotal_set"], line["subtotal"], line["line_item"]["price"]
    with pytest.raises(PayloadError, match=r"refund_line_items\[0\] has no subtotal"):
        map_one(data, "refunds/create")


def test_customer_tags_of_the_wrong_type() -> None:
    data = fixture("customer.json")
    data["tags"] = {"vip": True}
    with pytest.raises(PayloadError, match="tags is not a string or a list of strings"):
        map_one(data, "customers/update")


def test_non_json_receipt_is_a_payload_error() -> None:
    with pytest.raises(PayloadError, match="body is not valid JSON"):
        connector().map(receipt(b"\xff\xfe", "orders/paid"))


# --- robustness: only PayloadError / NothingToMap ever escape --------------------------------

TOPICS = [
    "orders/create",
    "orders/paid",
    "orders/fulfilled",
    "orders/cancelled",
    "refunds/create",
    "customers/create",
    "customers/update",
    "orders/updated",
]
json_leaf = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from(["12.50", "-0.01", "1e9", "2026-03-02T10:00:00Z", "USD", "", "true"])
)
json_value = st.recursive(
    json_leaf,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def _mutate(draw: st.DrawFn, value: Any, depth: int = 0) -> Any:
    """Replace some fields (at any depth) of a realistic payload with arbitrary JSON."""
    if draw(st.integers(0, 9)) == 0:
        return draw(json_value)
    if isinstance(value, dict) and depth < 4:
        out = {}
        for key, item in value.items():
            if draw(st.integers(0, 12)) == 0:
                continue  # drop the field
            out[key] = _mutate(draw, item, depth + 1)
        return out
    if isinstance(value, list) and depth < 4:
        return [_mutate(draw, item, depth + 1) for item in value]
    return value


@st.composite
def mutated_payloads(draw: st.DrawFn) -> tuple[str, bytes]:
    topic = draw(st.sampled_from(TOPICS))
    base = {
        "refunds/create": "refund.json",
        "customers/create": "customer.json",
        "customers/update": "customer.json",
    }.get(topic, "order.json")
    return topic, orjson.dumps(_mutate(draw, fixture(base)))


@given(st.binary(max_size=300))
def test_parse_only_raises_payload_error(body: bytes) -> None:
    with contextlib.suppress(PayloadError):
        connector().parse(body)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_payloads())
def test_map_only_raises_payload_error_or_nothing_to_map(case: tuple[str, bytes]) -> None:
    topic, body = case
    with contextlib.suppress(PayloadError, NothingToMap):
        connector().map(receipt(body, topic))


@given(st.sampled_from(TOPICS), json_value)
def test_map_of_arbitrary_json_only_raises_payload_error_or_nothing_to_map(
    topic: str, value: Any
) -> None:
    with contextlib.suppress(PayloadError, NothingToMap):
        connector().map(receipt(orjson.dumps(value), topic))
