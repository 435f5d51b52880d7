"""HubSpot connector: v3/v2/v1 signatures (checked against HubSpot's SDK and published vectors),
batch delivery ids, and mapping of contact events."""

from __future__ import annotations

import contextlib
import copy
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from hubspot.exceptions import InvalidSignatureTimestampError
from hubspot.utils.signature import Signature
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
from handoff.connectors.hubspot import (
    HubSpotConnector,
    sign,
    sign_v1,
    sign_v2,
    sign_v3,
    signature_v1,
    signature_v2,
    signature_v3,
    v3_uri,
)
from handoff.domain.events import AttributesBody, EventType, ProfileBody

FIXTURES = Path(__file__).parent / "fixtures" / "hubspot"
SECRET = b"9f2c1e0a-1111-4c4c-8888-0123456789ab"
OLD_SECRET = b"0b1d2f3a-2222-4d4d-9999-ba9876543210"
URL = "https://hub.example.com/hooks/hubspot"
NOW = datetime(2026, 3, 2, 15, 17, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)

# HubSpot's published example (docs and hubspot-api-python tests/spec/utils/test_signature.py)
VEC_SECRET = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy"
VEC_BODY = "{'example_field':'example_value'}"
VEC_URI = "https://www.example.com/webhook_uri"
VEC_TS = 1693657560000


def batch() -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = orjson.loads((FIXTURES / "batch.json").read_bytes())
    return data


def connector(**kwargs: Any) -> HubSpotConnector:
    extra = kwargs.pop("extra", {})
    return HubSpotConnector(SourceOptions(name="crm", role="crm", extra=extra, **kwargs))


def inbound(
    body: bytes,
    headers: dict[str, str],
    *,
    url: str = URL,
    method: str = "POST",
    received_at: datetime = NOW,
) -> Inbound:
    return Inbound(
        method=method,
        url=url,
        headers={k.lower(): v for k, v in headers.items()},
        body=body,
        received_at=received_at,
    )


def receipt(data: Any) -> StoredReceipt:
    body = data if isinstance(data, bytes) else orjson.dumps(data)
    return StoredReceipt(
        id=1, source="crm", headers={}, body=body, received_at=NOW, delivery_id="d"
    )


# --- published test vectors --------------------------------------------------------------------


def test_v3_published_vector() -> None:
    got = signature_v3(VEC_SECRET.encode(), "POST", VEC_URI, VEC_BODY.encode(), VEC_TS)
    assert got == "K36dawei4A+QBNolUOqo7s91KQDWQ5MXZ/QufNYuk/Y="


def test_v1_and_v2_vectors_agree_with_the_sdk() -> None:
    v1 = signature_v1(VEC_SECRET.encode(), VEC_BODY.encode())
    v2 = signature_v2(VEC_SECRET.encode(), "POST", VEC_URI, VEC_BODY.encode())
    assert v1.startswith("69fc6631") and v1.endswith("fa57f750")
    assert v2.startswith("4fe4e3a7") and v2.endswith("a1c383")
    assert v1 == Signature.get_signature(VEC_SECRET, VEC_BODY, "v1")
    assert v2 == Signature.get_signature(VEC_SECRET, VEC_BODY, "v2", VEC_URI, "POST")


def test_v1_and_v2_examples_from_hubspot_docs() -> None:
    body = (
        b'[{"eventId":1,"subscriptionId":12345,"portalId":62515,"occurredAt":1564113600000,'
        b'"subscriptionType":"contact.creation","attemptNumber":0,"objectId":123,'
        b'"changeSource":"CRM","changeFlag":"NEW","appId":54321}]'
    )
    assert signature_v1(VEC_SECRET.encode(), body) == (
        "232db2615f3d666fe21a8ec971ac7b5402d33b9a925784df3ca654d05f4817de"
    )
    assert signature_v2(VEC_SECRET.encode(), "GET", VEC_URI, b"") == (
        "eee2dddcc73c94d699f5e395f4b9d454a069a6855fbfa152e91e88823087200e"
    )


def test_published_v3_vector_verifies() -> None:
    headers = {
        "X-HubSpot-Signature-v3": "K36dawei4A+QBNolUOqo7s91KQDWQ5MXZ/QufNYuk/Y=",
        "X-HubSpot-Request-Timestamp": str(VEC_TS),
    }
    request = inbound(
        VEC_BODY.encode(),
        headers,
        url=VEC_URI,
        received_at=datetime.fromtimestamp(VEC_TS / 1000, UTC) + timedelta(seconds=5),
    )
    connector().verify(request, [VEC_SECRET.encode()])


# --- interoperability with hubspot-api-client ---------------------------------------------------


def test_sdk_accepts_our_signatures() -> None:
    body = (FIXTURES / "batch.json").read_bytes()
    text = body.decode()
    now_ms = int(time.time() * 1000)
    v3 = sign_v3(SECRET, "POST", URL, body, now_ms)
    assert Signature.is_valid(
        v3["X-HubSpot-Signature-v3"],
        SECRET.decode(),
        text,
        URL,
        "POST",
        signature_version="v3",
        timestamp=v3["X-HubSpot-Request-Timestamp"],
    )
    v2 = sign_v2(SECRET, "POST", URL, body)["X-HubSpot-Signature"]
    assert Signature.is_valid(v2, SECRET.decode(), text, URL, "POST", signature_version="v2")
    v1 = sign_v1(SECRET, body)["X-HubSpot-Signature"]
    assert Signature.is_valid(v1, SECRET.decode(), text, signature_version="v1")


def test_sdk_rejects_our_stale_v3_like_we_do() -> None:
    body = b"[]"
    old_ms = int(time.time() * 1000) - 400_000
    v3 = sign_v3(SECRET, "POST", URL, body, old_ms)
    with pytest.raises(InvalidSignatureTimestampError):
        Signature.is_valid(
            v3["X-HubSpot-Signature-v3"],
            SECRET.decode(),
            "[]",
            URL,
            signature_version="v3",
            timestamp=str(old_ms),
        )


def test_we_accept_the_sdks_signatures() -> None:
    body = (FIXTURES / "batch.json").read_bytes()
    text = body.decode()
    secret = SECRET.decode()
    v3 = Signature.get_signature(secret, text, "v3", URL, "POST", str(NOW_MS))
    connector().verify(
        inbound(
            body,
            {"X-HubSpot-Signature-v3": v3, "X-HubSpot-Request-Timestamp": str(NOW_MS)},
        ),
        [SECRET],
    )
    for version in ("v1", "v2"):
        legacy = Signature.get_signature(secret, text, version, URL, "POST")
        headers = {"X-HubSpot-Signature": legacy, "X-HubSpot-Signature-Version": version}
        connector().verify(inbound(body, headers), [SECRET])


# --- v3 ---------------------------------------------------------------------------------------


def v3_request(
    body: bytes = b"[]",
    *,
    secret: bytes = SECRET,
    age_seconds: float = 10,
    url: str = URL,
    signed_url: str | None = None,
) -> Inbound:
    ts = NOW_MS - int(age_seconds * 1000)
    headers = sign_v3(secret, "POST", signed_url or url, body, ts)
    return inbound(body, headers, url=url)


def test_v3_round_trip() -> None:
    connector().verify(v3_request(b'[{"eventId":1}]'), [SECRET])


def test_v3_rotated_secret_is_accepted() -> None:
    connector().verify(v3_request(secret=OLD_SECRET), [SECRET, OLD_SECRET])


def test_v3_wrong_secret() -> None:
    with pytest.raises(SignatureError) as err:
        connector().verify(v3_request(secret=b"guess"), [SECRET, OLD_SECRET])
    assert err.value.reason == "signature mismatch"


def test_v3_tampered_body() -> None:
    request = v3_request(b'[{"eventId":1}]')
    tampered = inbound(b'[{"eventId":2}]', dict(request.headers))
    with pytest.raises(SignatureError, match="signature mismatch"):
        connector().verify(tampered, [SECRET])


def test_v3_tampered_timestamp() -> None:
    request = v3_request()
    headers = dict(request.headers)
    headers["x-hubspot-request-timestamp"] = str(NOW_MS)
    with pytest.raises(SignatureError, match="signature mismatch"):
        connector().verify(inbound(b"[]", headers), [SECRET])


def test_v3_stale_timestamp() -> None:
    with pytest.raises(SignatureError) as err:
        connector().verify(v3_request(age_seconds=412.5), [SECRET])
    assert err.value.reason == "timestamp 412 s old, tolerance 300 s"


def test_v3_tolerance_boundary_and_option() -> None:
    connector().verify(v3_request(age_seconds=300), [SECRET])
    with pytest.raises(SignatureError, match="timestamp 61 s old, tolerance 60 s"):
        connector(tolerance_seconds=60).verify(v3_request(age_seconds=61), [SECRET])


def test_v3_future_timestamp_beyond_skew() -> None:
    connector().verify(v3_request(age_seconds=-59), [SECRET])
    with pytest.raises(SignatureError) as err:
        connector().verify(v3_request(age_seconds=-61), [SECRET])
    assert err.value.reason == "timestamp in the future"


def test_v3_missing_timestamp() -> None:
    request = v3_request()
    headers = {k: v for k, v in request.headers.items() if k != "x-hubspot-request-timestamp"}
    with pytest.raises(SignatureError) as err:
        connector().verify(inbound(b"[]", headers), [SECRET])
    assert err.value.reason == "missing header X-HubSpot-Request-Timestamp"


@pytest.mark.parametrize("value", ["abc", "1693657560.5", "-1", "99999999999999999999"])
def test_v3_malformed_timestamp(value: str) -> None:
    headers = {"X-HubSpot-Signature-v3": "x", "X-HubSpot-Request-Timestamp": value}
    with pytest.raises(SignatureError, match="invalid X-HubSpot-Request-Timestamp"):
        connector().verify(inbound(b"[]", headers), [SECRET])


def test_no_signature_headers_at_all() -> None:
    with pytest.raises(SignatureError) as err:
        connector().verify(inbound(b"[]", {}), [SECRET])
    assert err.value.reason == "missing header X-HubSpot-Signature-v3"


def test_no_configured_secret() -> None:
    with pytest.raises(SignatureError, match="no secret configured"):
        connector().verify(v3_request(), [])


def test_v3_uses_the_public_url_behind_a_proxy() -> None:
    public = "https://crm-hooks.example.com/hooks/hubspot?portal=12345678"
    internal = "http://10.0.0.5:8080/hooks/hubspot"
    request = v3_request(url=internal, signed_url=public)
    connector(public_url=public).verify(request, [SECRET])
    with pytest.raises(SignatureError, match="signature mismatch"):
        connector().verify(request, [SECRET])


def test_v3_decodes_the_escapes_hubspot_decodes() -> None:
    encoded = "https://hub.example.com/hooks/hubspot?next=a%3Ab%2Cc%40d%2fe&q=x%20y%253A"
    decoded = "https://hub.example.com/hooks/hubspot?next=a:b,c@d/e&q=x%20y%253A"
    assert v3_uri(encoded) == decoded
    # HubSpot signs the decoded form; our verifier decodes the URL it was called at.
    sdk = Signature.get_signature(SECRET.decode(), "[]", "v3", decoded, "POST", str(NOW_MS))
    headers = {"X-HubSpot-Signature-v3": sdk, "X-HubSpot-Request-Timestamp": str(NOW_MS)}
    connector().verify(inbound(b"[]", headers, url=encoded), [SECRET])


def test_v3_decoding_covers_every_listed_escape() -> None:
    assert v3_uri("%3A%2F%3F%40%21%24%27%28%29%2A%2C%3B") == ":/?@!$'()*,;"
    assert v3_uri("%20%2B%3D%26%25") == "%20%2B%3D%26%25"


def test_sign_sends_v3_and_v1_like_hubspot() -> None:
    headers = sign(SECRET, "POST", URL, b"[]", NOW_MS)
    assert set(headers) == {
        "X-HubSpot-Signature-v3",
        "X-HubSpot-Request-Timestamp",
        "X-HubSpot-Signature",
        "X-HubSpot-Signature-Version",
    }
    connector().verify(inbound(b"[]", headers), [SECRET])


# --- legacy v1 / v2 ---------------------------------------------------------------------------


def test_v1_and_v2_round_trips_and_rotation() -> None:
    body = b'[{"eventId":1}]'
    connector().verify(inbound(body, sign_v1(OLD_SECRET, body)), [SECRET, OLD_SECRET])
    connector().verify(inbound(body, sign_v2(SECRET, "POST", URL, body)), [SECRET])


def test_v2_covers_the_uri_exactly() -> None:
    body = b"[]"
    headers = sign_v2(SECRET, "POST", URL + "?a=1", body)
    with pytest.raises(SignatureError, match="signature mismatch"):
        connector().verify(inbound(body, headers), [SECRET])
    connector(public_url=URL + "?a=1").verify(inbound(body, headers), [SECRET])


def test_v1_tampered_body() -> None:
    with pytest.raises(SignatureError, match="signature mismatch"):
        connector().verify(inbound(b"[2]", sign_v1(SECRET, b"[1]")), [SECRET])


def test_legacy_missing_version_header() -> None:
    headers = {"X-HubSpot-Signature": signature_v1(SECRET, b"[]")}
    with pytest.raises(SignatureError) as err:
        connector().verify(inbound(b"[]", headers), [SECRET])
    assert err.value.reason == "missing header X-HubSpot-Signature-Version"


def test_legacy_unknown_version() -> None:
    headers = {"X-HubSpot-Signature": "abc", "X-HubSpot-Signature-Version": "v9"}
    with pytest.raises(SignatureError, match="unsupported X-HubSpot-Signature-Version"):
        connector().verify(inbound(b"[]", headers), [SECRET])


def test_require_v3_refuses_legacy_signatures() -> None:
    body = b"[]"
    with pytest.raises(SignatureError, match="missing header X-HubSpot-Signature-v3"):
        connector(extra={"require_v3": True}).verify(inbound(body, sign_v1(SECRET, body)), [SECRET])


def test_reasons_never_echo_secret_or_body() -> None:
    body = b'[{"eventId":1,"propertyValue":"ana@example.com"}]'
    for headers in (sign_v3(b"x", "POST", URL, body, NOW_MS), sign_v1(b"x", body), {}):
        with pytest.raises(SignatureError) as err:
            connector().verify(inbound(body, headers), [SECRET])
        assert "ana@example.com" not in err.value.reason
        assert SECRET.decode() not in err.value.reason


# --- delivery id ------------------------------------------------------------------------------


def test_delivery_id_is_stable_across_retries_and_order() -> None:
    first = batch()
    retry = copy.deepcopy(first)[::-1]
    for event in retry:
        event["attemptNumber"] = 3
    a = connector().delivery_id(inbound(orjson.dumps(first), {}))
    b = connector().delivery_id(inbound(orjson.dumps(retry), {}))
    assert a == b == "events:100,101,102,103"


def test_delivery_id_differs_for_another_batch_and_hashes_long_ones() -> None:
    other = [{"eventId": 104, "subscriptionType": "contact.creation"}]
    assert connector().delivery_id(inbound(orjson.dumps(other), {})) == "events:104"
    many = [{"eventId": 10**12 + i, "subscriptionType": "contact.creation"} for i in range(50)]
    long_id = connector().delivery_id(inbound(orjson.dumps(many), {}))
    assert long_id is not None and long_id.startswith("events:sha256:") and len(long_id) < 100


def test_delivery_id_none_for_unparseable_bodies() -> None:
    assert connector().delivery_id(inbound(b"{}", {})) is None
    assert connector().delivery_id(inbound(b"nope", {})) is None


# --- parse ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "empty body"),
        (b"{}", "expected a JSON array of events, got dict"),
        (b"[]", "event array is empty"),
        (b"[1]", r"event \[0\] is not an object"),
        (b'[{"subscriptionType":"contact.creation"}]', r"event \[0\] has no eventId"),
        (b'[{"eventId":1,"subscriptionType":"a"},{"eventId":2}]', r"event \[1\] has no subscr"),
        (b'[{"eventId":true,"subscriptionType":"a"}]', r"event \[0\] eventId is not an id"),
        (b'[{"eventId":1,"subscriptionType":7}]', r"event \[0\] subscriptionType is not a str"),
    ],
)
def test_parse_rejects(body: bytes, reason: str) -> None:
    with pytest.raises(PayloadError, match=reason):
        connector().parse(body)


# --- map --------------------------------------------------------------------------------------


def test_map_batch() -> None:
    creation, vip, email = connector().map(receipt(batch()))

    assert creation.type is EventType.PROFILE_CAPTURED
    assert creation.source_event_id == "100"
    assert creation.customer.system == "crm"
    assert creation.customer.external_id == "65059681032"
    assert creation.customer.email is None
    assert isinstance(creation.body, ProfileBody) and creation.body.channel == "crm"
    assert creation.occurred_at == datetime(2026, 3, 2, 15, 15, tzinfo=UTC)

    assert vip.type is EventType.ATTRIBUTES_CHANGED
    assert vip.source_event_id == "101"
    assert isinstance(vip.body, AttributesBody)
    assert vip.body.attributes == {"is_vip": True}
    assert vip.body.version == "1772464598741"
    assert vip.body.updated_at == vip.occurred_at
    assert vip.occurred_at == datetime(2026, 3, 2, 15, 16, 38, 741000, tzinfo=UTC)

    assert email.type is EventType.PROFILE_CAPTURED
    assert email.body.email == "ana.silva@example.com"
    assert email.customer.email == "ana.silva@example.com"
    assert email.customer.external_id == "65059681032"


def _change(name: str, value: Any, **extra: Any) -> dict[str, Any]:
    return {
        "eventId": 7,
        "subscriptionType": "contact.propertyChange",
        "objectId": 42,
        "occurredAt": 1772464598741,
        "propertyName": name,
        "propertyValue": value,
        **extra,
    }


@pytest.mark.parametrize(
    ("name", "field"),
    [
        ("email", "email"),
        ("phone", "phone"),
        ("firstname", "first_name"),
        ("lastname", "last_name"),
        ("zip", "zip"),
    ],
)
def test_identifying_properties_become_profile_captures(name: str, field: str) -> None:
    (draft,) = connector().map(receipt([_change(name, " value ")]))
    assert draft.type is EventType.PROFILE_CAPTURED
    assert getattr(draft.body, field) == "value"
    assert getattr(draft.customer, field) == "value"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("true", True), ("false", False), ("TRUE", True), ("", None), (None, None)],
)
def test_vip_flag_values(value: Any, expected: bool | None) -> None:
    (draft,) = connector().map(receipt([_change("vip_status", value)]))
    assert draft.body.attributes == {"is_vip": expected}


def test_vip_flag_that_is_not_a_boolean() -> None:
    with pytest.raises(PayloadError, match=r"event \[0\] property vip_status is not a boolean"):
        connector().map(receipt([_change("vip_status", "maybe")]))


def test_tier_default_mapping_and_unmapped_properties() -> None:
    drafts = connector().map(
        receipt([_change("loyalty_tier", "Gold"), _change("hs_lead_status", "OPEN", eventId=8)])
    )
    assert [d.body.attributes for d in drafts] == [
        {"tier": "Gold"},
        {"hubspot:hs_lead_status": "OPEN"},
    ]


def test_property_map_option_extends_and_overrides_defaults() -> None:
    c = connector(extra={"property_map": {"hs_lead_status": "lead_status", "vip_status": "is_vip"}})
    drafts = c.map(receipt([_change("hs_lead_status", "OPEN"), _change("loyalty_tier", "Gold")]))
    assert [d.body.attributes for d in drafts] == [{"lead_status": "OPEN"}, {"tier": "Gold"}]


def test_bad_property_map_option() -> None:
    with pytest.raises(ValueError, match="property_map"):
        connector(extra={"property_map": {"vip_status": 1}})


def test_generic_object_events_for_contacts() -> None:
    events = [
        {
            "eventId": 1,
            "subscriptionType": "object.propertyChange",
            "objectTypeId": "0-1",
            "objectId": 42,
            "occurredAt": 1772464598741,
            "propertyName": "vip_status",
            "propertyValue": "true",
        },
        {
            "eventId": 2,
            "subscriptionType": "object.creation",
            "objectTypeId": "0-2",
            "objectId": 43,
            "occurredAt": 1772464598741,
        },
    ]
    (draft,) = connector().map(receipt(events))
    assert draft.body.attributes == {"is_vip": True}


def test_cleared_identifier_is_skipped() -> None:
    with pytest.raises(NothingToMap):
        connector().map(receipt([_change("email", "")]))


def test_nothing_mappable() -> None:
    events = [
        {"eventId": 1, "subscriptionType": "contact.deletion", "objectId": 1},
        {"eventId": 2, "subscriptionType": "contact.merge", "primaryObjectId": 1},
    ]
    with pytest.raises(NothingToMap) as err:
        connector().map(receipt(events))
    assert err.value.reason == "no mappable HubSpot events (contact.deletion, contact.merge)"


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (_change("vip_status", "true", objectId=None), r"event \[0\] objectId is missing"),
        (_change("vip_status", "true", objectId=[1]), r"event \[0\] objectId is not an id"),
        (_change("vip_status", "true", occurredAt=None), r"event \[0\] occurredAt is missing"),
        (_change("vip_status", "true", occurredAt="x"), r"occurredAt is not epoch milliseconds"),
        (_change("vip_status", "true", occurredAt=-5), r"occurredAt is not epoch milliseconds"),
        (_change("", "true"), r"event \[0\] has no propertyName"),
        (_change("vip_status", {"v": 1}), r"event \[0\] propertyValue is not a string"),
    ],
)
def test_map_payload_errors(event: dict[str, Any], reason: str) -> None:
    with pytest.raises(PayloadError, match=reason):
        connector().map(receipt([event]))


# --- robustness -------------------------------------------------------------------------------

json_leaf = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from(
        ["contact.creation", "contact.propertyChange", "object.creation", "0-1", "true", ""]
    )
)
json_value = st.recursive(
    json_leaf,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
EVENT_KEYS = [
    "eventId",
    "subscriptionType",
    "objectId",
    "occurredAt",
    "propertyName",
    "propertyValue",
    "objectTypeId",
]


@st.composite
def event_batches(draw: st.DrawFn) -> bytes:
    events = []
    for _ in range(draw(st.integers(1, 4))):
        base = copy.deepcopy(draw(st.sampled_from(batch())))
        for key in EVENT_KEYS:
            roll = draw(st.integers(0, 12))
            if roll == 0:
                base.pop(key, None)
            elif roll == 1:
                base[key] = draw(json_value)
        events.append(base)
    return orjson.dumps(events)


@given(st.binary(max_size=300))
def test_parse_only_raises_payload_error(body: bytes) -> None:
    with contextlib.suppress(PayloadError):
        connector().parse(body)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(event_batches())
def test_map_only_raises_payload_error_or_nothing_to_map(body: bytes) -> None:
    with contextlib.suppress(PayloadError, NothingToMap):
        connector().map(receipt(body))


@given(json_value)
def test_map_of_arbitrary_json_only_raises_payload_error_or_nothing_to_map(value: Any) -> None:
    with contextlib.suppress(PayloadError, NothingToMap):
        connector().map(receipt(orjson.dumps(value)))


@given(st.binary(max_size=200))
def test_delivery_id_never_raises(body: bytes) -> None:
    result = connector().delivery_id(inbound(body, {}))
    assert result is None or result.startswith("events:")
