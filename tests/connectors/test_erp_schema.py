"""The ERP event schema: validation reasons, exact minor units, ids and times per type."""

from __future__ import annotations

import contextlib
import copy
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from handoff.connectors.base import NothingToMap, PayloadError, StoredReceipt
from handoff.connectors.erp_schema import ERP_EVENT_TYPES, map_event, map_receipt, parse_event
from handoff.domain.events import AttributesBody, EventType, OrderBody, ProfileBody

FIXTURES = Path(__file__).parent / "fixtures" / "erp"
DOCS = Path(__file__).parents[2] / "docs" / "erp-events.md"
RECEIVED = datetime(2026, 3, 1, 14, 6, tzinfo=UTC)


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads((FIXTURES / f"{name}.json").read_bytes())
    return data


def receipt(body: bytes, source: str = "netsuite") -> StoredReceipt:
    return StoredReceipt(
        id=1, source=source, headers={}, body=body, received_at=RECEIVED, delivery_id="d-1"
    )


def map_dict(event: dict[str, Any], source: str = "netsuite") -> list[Any]:
    return map_receipt(receipt(orjson.dumps(event), source))


def reason_of(event: Any) -> str:
    body = event if isinstance(event, bytes) else orjson.dumps(event)
    with pytest.raises(PayloadError) as info:
        parse_event(body)
    return info.value.reason


# --- mapping per type ------------------------------------------------------------------------


def test_order_placed_maps_exact_minor_units_lines_and_customer() -> None:
    [draft] = map_dict(load("order_placed"))
    assert draft.type is EventType.ORDER_PLACED
    assert draft.source_event_id == "order.placed:SO-1001"
    assert draft.occurred_at == datetime(2026, 3, 1, 14, 5, 2, tzinfo=UTC)
    body = draft.body
    assert isinstance(body, OrderBody)
    assert (body.order_id, body.currency, body.channel, body.location_id) == (
        "SO-1001",
        "USD",
        "online",
        "WEB",
    )
    assert body.subtotal == 15000
    assert body.discounts == 1500
    assert body.tax == 945
    assert body.shipping == 750
    assert body.gift_cards == 2500
    assert body.net_merchandise == 11000  # subtotal - discount - gift_card
    assert body.total == 15195  # subtotal - discount + tax + shipping
    assert [(li.sku, li.quantity, li.unit_price, li.discount) for li in body.lines] == [
        ("TEE-BLK-M", 2, 3000, 600),
        ("MUG-01", 1, 6500, 900),
        ("GC-25", 1, 2500, 0),
    ]
    assert [li.gift_card for li in body.lines] == [False, False, True]
    assert [li.category for li in body.lines] == ["apparel", "home", None]
    assert [li.line_id for li in body.lines] == ["1", "2", "3"]
    assert body.refund_id is None and body.refund_amount is None
    customer = draft.customer
    assert customer is not None
    assert customer.system == "netsuite"
    assert customer.external_id == "C-42"
    assert (customer.email, customer.phone, customer.first_name, customer.last_name) == (
        "ana.lopez@example.com",
        "+14155550123",
        "Ana",
        "Lopez",
    )
    assert customer.zip == "94107"


def test_order_paid_uses_its_own_time_converted_to_utc() -> None:
    [draft] = map_dict(load("order_paid"))
    assert draft.type is EventType.ORDER_PAID
    assert draft.source_event_id == "order.paid:SO-1001"
    assert draft.occurred_at == datetime(2026, 3, 1, 14, 5, 40, tzinfo=UTC)
    assert isinstance(draft.body, OrderBody)
    assert draft.body.net_merchandise == 11000
    assert draft.body.lines == ()


def test_order_fulfilled_keeps_a_stated_total() -> None:
    event = load("order_fulfilled")
    event["data"]["total"] = "151.90"  # the ERP's figure wins over the computed one
    [draft] = map_dict(event)
    assert draft.type is EventType.ORDER_FULFILLED
    assert draft.source_event_id == "order.fulfilled:SO-1001"
    assert draft.occurred_at == datetime(2026, 3, 3, 9, 12, 30, tzinfo=UTC)
    assert isinstance(draft.body, OrderBody)
    assert draft.body.total == 15190
    assert draft.body.net_merchandise == 11000


def test_order_cancelled_defaults_missing_amounts_to_zero() -> None:
    [draft] = map_dict(load("order_cancelled"))
    assert draft.type is EventType.ORDER_CANCELLED
    assert draft.source_event_id == "order.cancelled:SO-1002"
    assert draft.occurred_at == datetime(2026, 3, 2, 7, 59, 58, tzinfo=UTC)
    body = draft.body
    assert isinstance(body, OrderBody)
    assert (body.subtotal, body.discounts, body.tax, body.shipping, body.gift_cards) == (
        8000,
        0,
        1520,
        0,
        0,
    )
    assert body.net_merchandise == 8000
    assert body.total == 9520
    assert (body.currency, body.channel, body.location_id) == ("EUR", "pos", "BER-01")


def test_order_refunded_maps_refund_amount_and_lines() -> None:
    [draft] = map_dict(load("order_refunded"))
    assert draft.type is EventType.ORDER_REFUNDED
    assert draft.source_event_id == "refund:RMA-501"
    assert draft.occurred_at == datetime(2026, 3, 10, 16, 19, 12, tzinfo=UTC)
    body = draft.body
    assert isinstance(body, OrderBody)
    assert body.order_id == "SO-1001"
    assert body.refund_id == "RMA-501"
    assert body.refund_amount == 2400
    assert [(r.line_id, r.sku, r.quantity, r.amount) for r in body.refund_lines] == [
        ("1", "TEE-BLK-M", 1, 2400)
    ]
    # a refund need not restate the order: totals are zero, the ledger uses the order's basis
    assert (body.subtotal, body.net_merchandise, body.total) == (0, 0, 0)
    assert draft.customer is not None and draft.customer.external_id == "C-42"


def test_minimal_refund_without_customer_or_lines() -> None:
    event = {
        "type": "order.refunded",
        "timestamp": "2026-03-10T16:20:00Z",
        "data": {"refund_id": 9, "order_id": 7, "currency": "USD", "amount": "0.99"},
    }
    [draft] = map_dict(event)
    assert draft.customer is None
    assert draft.source_event_id == "refund:9"
    assert draft.occurred_at == datetime(2026, 3, 10, 16, 20, tzinfo=UTC)  # envelope fallback
    assert isinstance(draft.body, OrderBody)
    assert (draft.body.order_id, draft.body.refund_amount) == ("7", 99)


def test_profile_captured_maps_profile_body() -> None:
    [draft] = map_dict(load("customer_profile_captured"), source="erp-eu")
    assert draft.type is EventType.PROFILE_CAPTURED
    assert draft.source_event_id == "profile:C-42:2026-03-01T13:59:00Z"
    assert draft.occurred_at == datetime(2026, 3, 1, 13, 58, 41, tzinfo=UTC)
    body = draft.body
    assert isinstance(body, ProfileBody)
    assert (body.email, body.phone, body.first_name, body.last_name, body.zip) == (
        "ana.lopez@example.com",
        "+14155550123",
        "Ana",
        "Lopez",
        "94107",
    )
    assert body.channel == "pos"
    assert body.accepts_marketing is True
    assert body.tags == ("wholesale",)
    assert draft.customer is not None
    assert (draft.customer.system, draft.customer.external_id) == ("erp-eu", "C-42")


def test_profile_source_event_id_uses_envelope_timestamp_in_utc() -> None:
    event = load("customer_profile_captured")
    event["timestamp"] = "2026-03-01T14:59:00.5+01:00"
    del event["data"]["captured_at"]
    [draft] = map_dict(event)
    assert draft.source_event_id == "profile:C-42:2026-03-01T13:59:00.500000Z"
    assert draft.occurred_at == datetime(2026, 3, 1, 13, 59, 0, 500000, tzinfo=UTC)


def test_jpy_has_exponent_zero() -> None:
    [draft] = map_dict(load("order_paid_jpy"))
    body = draft.body
    assert isinstance(body, OrderBody)
    assert body.currency == "JPY"
    assert (body.subtotal, body.discounts, body.tax, body.net_merchandise, body.total) == (
        12800,
        1280,
        1152,
        11520,
        12672,
    )
    assert body.lines[0].unit_price == 12800
    assert body.location_id == "17"  # integer ids become text
    assert draft.customer is not None and draft.customer.external_id == "3301"
    assert draft.occurred_at == datetime(2026, 3, 5, 3, 0, tzinfo=UTC)


def test_three_decimal_currency() -> None:
    event = load("order_paid")
    event["data"].update(
        currency="BHD", subtotal="10.125", discount="0.125", tax="0", shipping="0", gift_card="0"
    )
    [draft] = map_dict(event)
    assert isinstance(draft.body, OrderBody)
    assert (draft.body.subtotal, draft.body.net_merchandise) == (10125, 10000)


def test_unknown_fields_are_ignored() -> None:
    event = load("order_paid")
    event["schema_version"] = 3
    event["data"]["salesrep"] = {"id": 5}
    event["data"]["customer"]["loyalty_tier"] = "Gold"
    [draft] = map_dict(event)
    assert draft.source_event_id == "order.paid:SO-1001"


def test_unknown_type_parses_but_maps_to_nothing() -> None:
    event = {"type": "order.updated", "timestamp": "2026-03-01T12:00:00Z", "data": {"x": 1}}
    parsed = parse_event(orjson.dumps(event))
    assert parsed.data is None
    with pytest.raises(NothingToMap, match=r"order\.updated"):
        map_dict(event)


def test_every_type_has_a_fixture_and_maps() -> None:
    seen = set()
    for path in FIXTURES.glob("*.json"):
        [draft] = map_receipt(receipt(path.read_bytes()))
        seen.add(str(draft.type))
    assert seen == set(ERP_EVENT_TYPES)


def test_map_event_takes_the_system_name() -> None:
    parsed = parse_event(orjson.dumps(load("order_paid")))
    [draft] = map_event(parsed, "erp-us")
    assert draft.customer is not None and draft.customer.system == "erp-us"


def test_same_fact_maps_to_the_same_source_event_id() -> None:
    first = load("order_paid")
    again = copy.deepcopy(first)
    again["timestamp"] = "2026-03-01T18:00:00Z"  # a later re-send of the same payment
    assert map_dict(first)[0].source_event_id == map_dict(again)[0].source_event_id


def test_docs_examples_parse_and_map() -> None:
    blocks = re.findall(r"```json\n(.*?)```", DOCS.read_text(), flags=re.S)
    assert len(blocks) >= len(ERP_EVENT_TYPES)
    types = set()
    for block in blocks:
        [draft] = map_receipt(receipt(block.encode()))
        types.add(str(draft.type))
    assert types == set(ERP_EVENT_TYPES)


# --- every PayloadError reason ---------------------------------------------------------------


def order(**changes: Any) -> dict[str, Any]:
    event = load("order_placed")
    for key, value in changes.items():
        if value is ...:
            del event["data"][key]
        else:
            event["data"][key] = value
    return event


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "empty body"),
        (b"{nope", "body is not valid JSON"),
        (b"[1, 2]", "expected a JSON object, got list"),
        (b'"text"', "expected a JSON object, got str"),
    ],
)
def test_body_level_reasons(body: bytes, reason: str) -> None:
    assert reason_of(body).startswith(reason)


ENVELOPE = {"type": "order.paid", "timestamp": "2026-03-01T12:00:00Z", "data": {}}


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"type": ...}, "type: field required"),
        ({"type": ""}, "type: string should have at least 1 character"),
        ({"type": 5}, "type: input should be a valid string"),
        ({"timestamp": ...}, "timestamp: field required"),
        ({"timestamp": 1772366400}, "timestamp: must be an ISO 8601 string with an offset"),
        ({"timestamp": "2026-03-01T12:00:00"}, "timestamp: must include a UTC offset or Z"),
        ({"timestamp": "yesterday"}, "timestamp: must be an ISO 8601 time with an offset"),
        ({"timestamp": "0001-01-01T00:00:00+01:00"}, "timestamp: is out of range"),
        ({"data": ...}, "data: field required"),
        ({"data": [1]}, "data: input should be a valid dictionary"),
    ],
)
def test_envelope_reasons(change: dict[str, Any], reason: str) -> None:
    event = dict(ENVELOPE)
    for key, value in change.items():
        if value is ...:
            del event[key]
        else:
            event[key] = value
    assert reason_of(event).startswith(reason)


AMOUNT = 'must be a decimal string in major units, like "12.50"'
NON_NEGATIVE = 'must be a non-negative decimal string in major units, like "12.50"'


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (order(order_id=...), "data.order_id: field required"),
        (order(order_id=""), "data.order_id: must not be empty"),
        (order(order_id=None), "data.order_id: must be a string (or an integer id)"),
        (order(order_id=True), "data.order_id: must be a string (or an integer id)"),
        (order(customer=...), "data.customer: field required"),
        (order(customer={"email": "a@b.c"}), "data.customer.id: field required"),
        (order(customer={"id": "C", "email": 5}), "data.customer.email: input should be"),
        (order(currency=...), "data.currency: field required"),
        (order(currency="usd"), 'data.currency: must be an ISO 4217 code in capitals, like "USD"'),
        (order(currency="US"), "data.currency: must be an ISO 4217 code"),
        (order(subtotal=...), "data.subtotal: field required"),
        (order(subtotal=150.0), f"data.subtotal: {AMOUNT}"),
        (order(subtotal=150), f"data.subtotal: {AMOUNT}"),
        (order(subtotal="-1.00"), f"data.subtotal: {NON_NEGATIVE}"),
        (order(subtotal="1e3"), f"data.subtotal: {NON_NEGATIVE}"),
        (order(subtotal="12."), f"data.subtotal: {NON_NEGATIVE}"),
        (order(subtotal=".5"), f"data.subtotal: {NON_NEGATIVE}"),
        (order(subtotal="1.234"), "data.subtotal: amount '1.234' has more decimals than USD"),
        (order(discount="0.001"), "data.discount: amount '0.001' has more decimals than USD"),
        (order(tax="abc"), f"data.tax: {NON_NEGATIVE}"),
        (order(tax="1.2.3"), f"data.tax: {NON_NEGATIVE}"),
        (order(subtotal="1" * 16), "data.subtotal: has more than 15 digits before or 6 after"),
        (order(subtotal="1." + "0" * 7), "data.subtotal: has more than 15 digits before or 6"),
        (order(shipping=None), f"data.shipping: {AMOUNT}"),
        (order(gift_card="200.00"), "data: discount + gift_card exceed subtotal"),
        (order(total="1.001"), "data.total: amount '1.001' has more decimals than USD"),
        (order(channel="phone"), "data.channel: input should be 'pos' or 'online'"),
        (order(lines={"sku": "x"}), "data.lines: input should be a valid tuple"),
        (order(lines=[{"sku": "x", "unit_price": "1.00"}]), "data.lines[0].quantity: field"),
        (
            order(lines=[{"quantity": 0, "unit_price": "1.00"}]),
            "data.lines[0].quantity: input should be greater than 0",
        ),
        (
            order(lines=[{"quantity": "2", "unit_price": "1.00"}]),
            "data.lines[0].quantity: input should be a valid integer",
        ),
        (order(lines=[{"quantity": 1}]), "data.lines[0].unit_price: field required"),
        (
            order(lines=[{"quantity": 1, "unit_price": "1.00"}, {"quantity": 1, "unit_price": 2}]),
            f"data.lines[1].unit_price: {AMOUNT}",
        ),
        (
            order(lines=[{"quantity": 1, "unit_price": "1.005"}]),
            "data.lines[0].unit_price: amount '1.005' has more decimals than USD",
        ),
        (
            order(lines=[{"quantity": 1, "unit_price": "1.00", "discount": "0.001"}]),
            "data.lines[0].discount: amount '0.001' has more decimals",
        ),
        (order(placed_at="2026-03-01"), "data.placed_at: must include a UTC offset or Z"),
    ],
)
def test_order_reasons(event: dict[str, Any], reason: str) -> None:
    assert reason_of(event).startswith(reason)


def test_jpy_amount_with_decimals_is_rejected() -> None:
    event = load("order_paid_jpy")
    event["data"]["subtotal"] = "100.5"
    assert reason_of(event) == "data.subtotal: amount '100.5' has more decimals than JPY allows"


REFUND = {"refund_id": "R1", "order_id": "O1", "currency": "USD", "amount": "5.00"}


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ({**REFUND, "refund_id": ...}, "data.refund_id: field required"),
        ({**REFUND, "order_id": ...}, "data.order_id: field required"),
        ({**REFUND, "amount": ...}, "data.amount: field required"),
        ({**REFUND, "currency": ...}, "data.currency: field required"),
        ({**REFUND, "amount": "5.001"}, "data.amount: amount '5.001' has more decimals than USD"),
        ({**REFUND, "lines": [{"quantity": 1}]}, "data.lines[0].amount: field required"),
        (
            {**REFUND, "lines": [{"quantity": 1, "amount": "0.001"}]},
            "data.lines[0].amount: amount '0.001' has more decimals",
        ),
        ({**REFUND, "customer": {}}, "data.customer.id: field required"),
        ({**REFUND, "refunded_at": "soon"}, "data.refunded_at: must be an ISO 8601 time"),
    ],
)
def test_refund_reasons(data: dict[str, Any], reason: str) -> None:
    clean = {k: v for k, v in data.items() if v is not ...}
    event = {"type": "order.refunded", "timestamp": "2026-03-10T16:20:00Z", "data": clean}
    assert reason_of(event).startswith(reason)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ({}, "data.customer: field required"),
        ({"customer": {"id": ""}}, "data.customer.id: must not be empty"),
        ({"customer": {"id": "C"}, "tags": "vip"}, "data.tags: input should be a valid tuple"),
        ({"customer": {"id": "C"}, "accepts_marketing": "maybe"}, "data.accepts_marketing:"),
    ],
)
def test_profile_reasons(data: dict[str, Any], reason: str) -> None:
    event = {"type": "customer.profile.captured", "timestamp": "2026-03-01T12:00:00Z", "data": data}
    assert reason_of(event).startswith(reason)


def test_many_errors_are_capped_and_counted() -> None:
    event = {"type": "order.paid", "timestamp": "2026-03-01T12:00:00Z", "data": {"lines": [{}] * 5}}
    reason = reason_of(event)
    assert reason.count("; ") == 5
    assert re.search(r"; and \d+ more$", reason)


def test_reasons_never_echo_values() -> None:
    event = order(subtotal="SECRET-VALUE", customer={"id": "C", "email": ["SECRET-VALUE"]})
    assert "SECRET-VALUE" not in reason_of(event)


# --- robustness ------------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)

field_values = st.one_of(
    json_values,
    st.sampled_from(["12.50", "0", "1.005", "-1", "USD", "JPY", "pos", "2026-03-01T12:00:00Z"]),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
)
ORDER_KEYS = [
    "order_id",
    "customer",
    "currency",
    "subtotal",
    "discount",
    "tax",
    "shipping",
    "gift_card",
    "total",
    "channel",
    "store_id",
    "lines",
    "refund_id",
    "amount",
    "refunded_at",
    "paid_at",
    "tags",
]
shaped_events = st.fixed_dictionaries(
    {
        "type": st.sampled_from([*ERP_EVENT_TYPES, "order.other"]),
        "timestamp": st.sampled_from(["2026-03-01T12:00:00Z", "2026-03-01T12:00:00", "x"]),
        "data": st.dictionaries(st.sampled_from(ORDER_KEYS), field_values, max_size=12),
    }
)


def only_expected_errors(body: bytes) -> None:
    with contextlib.suppress(PayloadError):
        parse_event(body)
    with contextlib.suppress(PayloadError, NothingToMap):
        map_receipt(receipt(body))


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_arbitrary_bytes_only_raise_payload_errors(body: bytes) -> None:
    only_expected_errors(body)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_arbitrary_json_only_raises_payload_errors(value: Any) -> None:
    only_expected_errors(json.dumps(value).encode())


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(shaped_events)
def test_envelope_shaped_json_only_raises_payload_errors(event: dict[str, Any]) -> None:
    only_expected_errors(json.dumps(event).encode())


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(st.sampled_from(["quantity", "unit_price", "discount", "sku"]), field_values)
)
def test_line_shaped_json_only_raises_payload_errors(line: dict[str, Any]) -> None:
    only_expected_errors(json.dumps(order(lines=[line])).encode())


def test_attributes_body_is_never_produced() -> None:
    for path in FIXTURES.glob("*.json"):
        [draft] = map_receipt(receipt(path.read_bytes()))
        assert not isinstance(draft.body, AttributesBody)
