"""LoyaltyLion connector: HMAC verification, body-id delivery ids, balances, points and tiers."""

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
from handoff.connectors.loyaltylion import LoyaltyLionConnector, sign
from handoff.domain.events import AttributesBody, EventType, PointsBody

FIXTURES = Path(__file__).parent / "fixtures" / "loyaltylion"
SECRET = b"ll_site_secret_current"
OLD_SECRET = b"ll_site_secret_previous"
RECEIVED = datetime(2026, 3, 2, 15, 30, tzinfo=UTC)


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads((FIXTURES / name).read_bytes())
    return data


def connector() -> LoyaltyLionConnector:
    return LoyaltyLionConnector(SourceOptions(name="loyalty", role="loyalty"))


def inbound(body: bytes, headers: dict[str, str]) -> Inbound:
    return Inbound(
        method="POST",
        url="https://hub.example.com/hooks/loyalty",
        headers={k.lower(): v for k, v in headers.items()},
        body=body,
        received_at=RECEIVED,
    )


def receipt(data: Any) -> StoredReceipt:
    body = data if isinstance(data, bytes) else orjson.dumps(data)
    return StoredReceipt(
        id=1, source="loyalty", headers={}, body=body, received_at=RECEIVED, delivery_id="d"
    )


def map_one(data: Any) -> Any:
    drafts = connector().map(receipt(data))
    assert len(drafts) == 1
    return drafts[0]


# --- signatures --------------------------------------------------------------------------------


def test_sign_matches_an_independent_hmac() -> None:
    body = b'{"id":"x","topic":"customers/update"}'
    expected = base64.b64encode(hmac.new(SECRET, body, hashlib.sha256).digest()).decode()
    assert sign(SECRET, body) == {"x-loyaltylion-hmac-sha256": expected}


def test_round_trip_and_rotation() -> None:
    body = (FIXTURES / "customers_update.json").read_bytes()
    connector().verify(inbound(body, sign(SECRET, body)), [SECRET])
    connector().verify(inbound(body, sign(OLD_SECRET, body)), [SECRET, OLD_SECRET])


def test_tampered_body_and_wrong_secret() -> None:
    body = b'{"id":"1","topic":"customers/update"}'
    with pytest.raises(SignatureError, match="signature mismatch"):
        connector().verify(inbound(body + b" ", sign(SECRET, body)), [SECRET])
    with pytest.raises(SignatureError) as err:
        connector().verify(inbound(body, sign(b"nope", body)), [SECRET, OLD_SECRET])
    assert err.value.reason == "signature mismatch"
    assert SECRET.decode() not in err.value.reason and "customers/update" not in err.value.reason


def test_missing_signature_header() -> None:
    with pytest.raises(SignatureError) as err:
        connector().verify(inbound(b"{}", {}), [SECRET])
    assert err.value.reason == "missing header x-loyaltylion-hmac-sha256"


def test_no_configured_secret() -> None:
    with pytest.raises(SignatureError, match="no secret configured"):
        connector().verify(inbound(b"{}", sign(SECRET, b"{}")), [])


def test_kept_headers() -> None:
    assert LoyaltyLionConnector.kept_headers == ()


# --- delivery id and parse ---------------------------------------------------------------------


def test_delivery_id_is_the_body_id() -> None:
    body = (FIXTURES / "points_earned.json").read_bytes()
    assert connector().delivery_id(inbound(body, {})) == "c7f0a1d2-0b7e-4d43-9a43-5b1f0d9e2a11"
    assert connector().delivery_id(inbound(b'{"id":42,"topic":"t"}', {})) == "42"
    assert connector().delivery_id(inbound(b'{"topic":"t"}', {})) is None
    assert connector().delivery_id(inbound(b"[]", {})) is None


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "empty body"),
        (b"[]", "expected a JSON object, got list"),
        (b'{"id":"1"}', "body has no topic"),
        (b'{"id":"1","topic":5}', "topic is not a non-empty string"),
        (b'{"id":"1","topic":" "}', "topic is not a non-empty string"),
    ],
)
def test_parse_rejects(body: bytes, reason: str) -> None:
    with pytest.raises(PayloadError, match=reason):
        connector().parse(body)


# --- customers/update ---------------------------------------------------------------------------


def test_customers_update_balances_and_tier() -> None:
    draft = map_one(fixture("customers_update.json"))
    assert draft.type is EventType.ATTRIBUTES_CHANGED
    assert draft.source_event_id == "bff1bddb-6cd8-4c2c-9619-18744657053c"
    assert isinstance(draft.body, AttributesBody)
    assert draft.body.attributes == {
        "loyalty_points_approved": 500,
        "loyalty_points_pending": 99,
        "tier": "Bronze",
    }
    assert draft.body.version == "2026-03-02T15:20:00.000Z"
    assert draft.body.updated_at == datetime(2026, 3, 2, 15, 20, tzinfo=UTC)
    assert draft.occurred_at == datetime(2026, 3, 2, 15, 20, tzinfo=UTC)
    ref = draft.customer
    assert (ref.system, ref.external_id, ref.email) == ("loyalty", "7001", "ana.silva@example.com")
    assert (ref.first_name, ref.last_name) == ("Ana", "Silva")


def test_customers_update_without_tier_or_merchant_id() -> None:
    data = fixture("customers_update.json")
    data["customer"]["loyalty_tier_membership"] = None
    data["customer"]["merchant_id"] = None
    del data["customer"]["updated_at"]
    draft = map_one(data)
    assert draft.body.attributes["tier"] is None
    assert draft.customer.external_id == "1001"  # LoyaltyLion's own id
    assert draft.body.version == "2026-03-02T15:20:05.000Z"
    assert draft.occurred_at == datetime(2026, 3, 2, 15, 20, 5, tzinfo=UTC)


# --- points ------------------------------------------------------------------------------------


def test_points_earned() -> None:
    draft = map_one(fixture("points_earned.json"))
    assert draft.type is EventType.POINTS_RECORDED
    assert draft.source_event_id == "c7f0a1d2-0b7e-4d43-9a43-5b1f0d9e2a11"
    assert draft.occurred_at == datetime(2026, 3, 2, 15, 20, tzinfo=UTC)
    body = draft.body
    assert isinstance(body, PointsBody)
    assert body == PointsBody(
        member_id="7001",
        delta=99,
        balance=500,
        pending=99,
        reason="$purchase",
        order_ref="5501234567",
        tier="Bronze",
    )
    assert draft.customer.external_id == "7001" and draft.customer.system == "loyalty"


def test_points_approval_nets_to_zero_and_adjustments_keep_their_resource() -> None:
    data = fixture("points_earned.json")
    data["payload"]["properties"]["transaction"].update(points_approved=99, points_pending=-99)
    assert map_one(data).body.delta == 0
    adjustment = fixture("points_earned.json")
    adjustment["payload"]["properties"]["transaction"] = {
        "id": 1,
        "resource": "adjustment",
        "points_approved": -40,
        "points_pending": 0,
        "adjustment": {"note": "goodwill reversal"},
    }
    body = map_one(adjustment).body
    assert (body.delta, body.reason, body.order_ref) == (-40, "adjustment", None)


def test_non_purchase_activity_has_no_order_ref() -> None:
    data = fixture("points_earned.json")
    data["payload"]["properties"]["transaction"]["activity"]["rule"]["name"] = "$signup"
    body = map_one(data).body
    assert (body.reason, body.order_ref) == ("$signup", None)


# --- tiers and unmapped ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "topic",
    [
        "program_events/customer.tier_upgraded",
        "program_events/customer.tier_downgraded",
        "customer.tier_upgraded",
    ],
)
def test_tier_changes(topic: str) -> None:
    data = fixture("tier_upgraded.json")
    data["topic"] = topic
    draft = map_one(data)
    assert draft.type is EventType.ATTRIBUTES_CHANGED
    assert draft.body.attributes == {"tier": "Silver"}
    assert draft.body.version == "2026-03-05T10:00:00.000Z"
    assert draft.occurred_at == datetime(2026, 3, 5, 10, tzinfo=UTC)


@pytest.mark.parametrize(
    "topic", ["program_events/customer.enrolled", "rewards/store_fulfilment", "customers/create"]
)
def test_unmapped_topics(topic: str) -> None:
    data = fixture("tier_upgraded.json")
    data["topic"] = topic
    with pytest.raises(NothingToMap, match=f"topic {topic} is not mapped"):
        connector().map(receipt(data))


# --- payload errors ----------------------------------------------------------------------------

_DELETE = object()


def _broken(name: str, path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    data = copy.deepcopy(fixture(name))
    target: Any = data
    for key in path[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return data


P = ("payload", "properties")


@pytest.mark.parametrize(
    ("name", "path", "value", "reason"),
    [
        ("customers_update.json", ("id",), _DELETE, "id is missing"),
        ("customers_update.json", ("customer",), _DELETE, "customer is missing"),
        ("customers_update.json", ("customer",), "alice", "customer is not an object"),
        (
            "customers_update.json",
            ("customer", "points_approved"),
            "500",
            "customer.points_approved is not an integer",
        ),
        (
            "customers_update.json",
            ("customer", "points_pending"),
            _DELETE,
            "customer.points_pending is missing",
        ),
        (
            "customers_update.json",
            ("customer", "updated_at"),
            "last tuesday",
            "customer.updated_at is not an ISO 8601 timestamp",
        ),
        (
            "customers_update.json",
            ("customer", "loyalty_tier_membership", "loyalty_tier"),
            [],
            "customer.loyalty_tier_membership.loyalty_tier is not an object",
        ),
        ("points_earned.json", ("payload",), _DELETE, "payload is missing"),
        ("points_earned.json", ("payload", "properties"), 3, "payload.properties is not an obj"),
        ("points_earned.json", (*P, "customer"), _DELETE, "payload.properties.customer is miss"),
        (
            "points_earned.json",
            (*P, "transaction", "points_pending"),
            1.5,
            "payload.properties.transaction.points_pending is not an integer",
        ),
    ],
)
def test_payload_errors(name: str, path: tuple[Any, ...], value: Any, reason: str) -> None:
    with pytest.raises(PayloadError, match=reason):
        map_one(_broken(name, path, value))


def test_member_id_falls_back_to_the_loyaltylion_id() -> None:
    draft = map_one(_broken("points_earned.json", (*P, "customer", "merchant_id"), None))
    assert draft.body.member_id == "1001" and draft.customer.external_id == "1001"


def test_points_transaction_without_points() -> None:
    data = fixture("points_earned.json")
    transaction = data["payload"]["properties"]["transaction"]
    del transaction["points_approved"], transaction["points_pending"]
    with pytest.raises(PayloadError, match="has neither points_approved nor points_pending"):
        map_one(data)


def test_customer_without_any_id() -> None:
    data = fixture("points_earned.json")
    customer = data["payload"]["properties"]["customer"]
    del customer["merchant_id"], customer["id"]
    with pytest.raises(PayloadError, match="customer has neither merchant_id nor id"):
        map_one(data)


# --- robustness -------------------------------------------------------------------------------

json_leaf = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from(["customers/update", "$purchase", "activity", "2026-03-02T10:00:00Z", ""])
)
json_value = st.recursive(
    json_leaf,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def _mutate(draw: st.DrawFn, value: Any, depth: int = 0) -> Any:
    if depth > 0 and draw(st.integers(0, 9)) == 0:
        return draw(json_value)
    if isinstance(value, dict) and depth < 5:
        return {
            key: _mutate(draw, item, depth + 1)
            for key, item in value.items()
            if draw(st.integers(0, 12)) != 0
        }
    if isinstance(value, list) and depth < 5:
        return [_mutate(draw, item, depth + 1) for item in value]
    return value


@st.composite
def mutated_payloads(draw: st.DrawFn) -> bytes:
    name = draw(
        st.sampled_from(["customers_update.json", "points_earned.json", "tier_upgraded.json"])
    )
    return orjson.dumps(_mutate(draw, fixture(name)))


@given(st.binary(max_size=300))
def test_parse_only_raises_payload_error(body: bytes) -> None:
    with contextlib.suppress(PayloadError):
        connector().parse(body)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_payloads())
def test_map_only_raises_payload_error_or_nothing_to_map(body: bytes) -> None:
    with contextlib.suppress(PayloadError, NothingToMap):
        connector().map(receipt(body))


@given(json_value)
def test_map_of_arbitrary_json_only_raises_payload_error_or_nothing_to_map(value: Any) -> None:
    with contextlib.suppress(PayloadError, NothingToMap):
        connector().map(receipt(orjson.dumps(value)))


def test_merchant_ids_recorded_under_the_store_system_when_configured() -> None:
    """On a Shopify store a member's merchant_id is the Shopify customer id: configured so, the
    member is recorded under `shopify` and identity needs no matching to join the two."""
    data = fixture("customers_update.json")
    merchant_id = str(data["customer"]["merchant_id"])
    plain = connector().map(receipt(data))[0].customer
    assert (plain.system, plain.external_id) == ("loyalty", merchant_id)
    options = SourceOptions(name="loyalty", role="loyalty", extra={"merchant_id_system": "shopify"})
    aliased = LoyaltyLionConnector(options).map(receipt(data))[0].customer
    assert (aliased.system, aliased.external_id) == ("shopify", merchant_id)
    del data["customer"]["merchant_id"]  # LoyaltyLion's own id stays LoyaltyLion's
    own = LoyaltyLionConnector(options).map(receipt(data))[0].customer
    assert own.system == "loyalty" and own.external_id == str(data["customer"]["id"])
    with pytest.raises(ValueError, match="merchant_id_system"):
        LoyaltyLionConnector(
            SourceOptions(name="l", role="loyalty", extra={"merchant_id_system": 3})
        )
