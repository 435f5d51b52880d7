"""Zendesk: TIMESTAMP+BODY signatures with our tolerance, and user events → profiles/attributes."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
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
from handoff.connectors.zendesk import ZendeskConnector, sign, timestamp_text
from handoff.domain.events import AttributesBody, EventType, ProfileBody

FIXTURES = Path(__file__).parent / "fixtures" / "zendesk"
SECRET = "dGhpc19zZWNyZXRfaXNfZm9yX3Rlc3Rpbmdfb25seQ=="
NOW = datetime(2026, 3, 1, 10, 0, 5, tzinfo=UTC)


def fixture(name: str) -> bytes:
    return (FIXTURES / f"{name}.json").read_bytes()


def connector(tolerance: int = 300) -> ZendeskConnector:
    return ZendeskConnector(
        SourceOptions(name="zendesk", role="helpdesk", tolerance_seconds=tolerance)
    )


def inbound(headers: dict[str, str], body: bytes, now: datetime = NOW) -> Inbound:
    return Inbound(
        method="POST",
        url="https://hub.example/hooks/zendesk",
        headers={k.lower(): v for k, v in headers.items()},
        body=body,
        received_at=now,
    )


def receipt(body: bytes, delivery_id: str = "sha256:abc") -> StoredReceipt:
    return StoredReceipt(
        id=3, source="zendesk", headers={}, body=body, received_at=NOW, delivery_id=delivery_id
    )


def rejected(request: Inbound, secrets: list[bytes], tolerance: int = 300) -> str:
    with pytest.raises(SignatureError) as info:
        connector(tolerance).verify(request, secrets)
    return info.value.reason


# --- signatures ----------------------------------------------------------------------------


def test_signature_is_base64_hmac_of_timestamp_then_body() -> None:
    body = fixture("user_created")
    stamp = "2026-03-01T10:00:00Z"
    expected = base64.b64encode(
        hmac.new(SECRET.encode(), stamp.encode() + body, hashlib.sha256).digest()
    ).decode()
    assert sign(SECRET, stamp, body) == {
        "x-zendesk-webhook-signature": expected,
        "x-zendesk-webhook-signature-timestamp": stamp,
    }


def test_round_trip() -> None:
    body = fixture("user_created")
    connector().verify(inbound(sign(SECRET, NOW, body), body), [SECRET.encode()])
    assert timestamp_text(NOW) == "2026-03-01T10:00:05Z"


def test_empty_body_verifies() -> None:
    connector().verify(inbound(sign(SECRET, NOW, b""), b""), [SECRET.encode()])


def test_header_names_are_case_insensitive() -> None:
    body = fixture("user_created")
    headers = {
        "X-Zendesk-Webhook-Signature": sign(SECRET, NOW, body)["x-zendesk-webhook-signature"],
        "X-Zendesk-Webhook-Signature-Timestamp": timestamp_text(NOW),
    }
    connector().verify(inbound(headers, body), [SECRET.encode()])


def test_tampered_body_and_wrong_secret_are_rejected() -> None:
    body = fixture("user_created")
    headers = sign(SECRET, NOW, body)
    tampered = body.replace(b"Ana", b"Eve")
    assert rejected(inbound(headers, tampered), [SECRET.encode()]) == "signature does not match"
    assert rejected(inbound(headers, body), [b"other-secret"]) == "signature does not match"


def test_tampered_timestamp_is_rejected() -> None:
    body = fixture("user_created")
    headers = sign(SECRET, NOW, body)
    headers["x-zendesk-webhook-signature-timestamp"] = "2026-03-01T10:00:04Z"
    assert rejected(inbound(headers, body), [SECRET.encode()]) == "signature does not match"


def test_rotation_accepts_either_secret() -> None:
    body = fixture("user_created")
    headers = sign("new-secret", NOW, body)
    connector().verify(inbound(headers, body), [SECRET.encode(), b"new-secret"])


def test_stale_and_future_timestamps_are_rejected() -> None:
    body = fixture("user_created")
    old = sign(SECRET, NOW - timedelta(seconds=301), body)
    assert (
        rejected(inbound(old, body), [SECRET.encode()])
        == "x-zendesk-webhook-signature-timestamp is 301 s old; tolerance is 300 s"
    )
    future = sign(SECRET, NOW + timedelta(seconds=301), body)
    assert (
        rejected(inbound(future, body), [SECRET.encode()])
        == "x-zendesk-webhook-signature-timestamp is 301 s in the future; tolerance is 300 s"
    )
    edge = sign(SECRET, NOW - timedelta(seconds=300), body)
    connector().verify(inbound(edge, body), [SECRET.encode()])
    short = sign(SECRET, NOW - timedelta(seconds=31), body)
    assert "31 s old; tolerance is 30 s" in rejected(inbound(short, body), [SECRET.encode()], 30)


def test_offset_timestamps_are_compared_as_instants() -> None:
    body = fixture("user_created")
    stamp = "2026-03-01T11:00:05+01:00"  # the same instant as NOW
    connector().verify(inbound(sign(SECRET, stamp, body), body), [SECRET.encode()])


@pytest.mark.parametrize("value", ["1614648567", "yesterday", "2026-13-01T00:00:00Z"])
def test_unparseable_timestamp_is_rejected(value: str) -> None:
    body = fixture("user_created")
    headers = sign(SECRET, value, body)
    reason = rejected(inbound(headers, body), [SECRET.encode()])
    assert reason == "x-zendesk-webhook-signature-timestamp is not an ISO 8601 time"


@pytest.mark.parametrize(
    "missing", ["x-zendesk-webhook-signature", "x-zendesk-webhook-signature-timestamp"]
)
def test_missing_headers_are_rejected(missing: str) -> None:
    body = fixture("user_created")
    headers = sign(SECRET, NOW, body)
    del headers[missing]
    assert rejected(inbound(headers, body), [SECRET.encode()]) == f"missing header {missing}"


def test_no_secret_configured() -> None:
    body = fixture("user_created")
    assert rejected(inbound(sign(SECRET, NOW, body), body), []) == "no secret configured"


# --- delivery id ---------------------------------------------------------------------------


def test_delivery_id_is_the_event_id_when_present() -> None:
    body = fixture("user_created")
    assert connector().delivery_id(inbound({}, body)) == "2b24ef10-19d4-4740-93cf-8f98ec4776c0"
    assert connector().delivery_id(inbound({}, b"")) is None
    assert connector().delivery_id(inbound({}, b'{"type":"x"}')) is None
    assert connector().delivery_id(inbound({}, b"not json")) is None
    assert connector().delivery_id(inbound({}, b'{"id": 42}')) == "42"


# --- mapping -------------------------------------------------------------------------------


def test_user_created_maps_to_profile() -> None:
    [draft] = connector().map(receipt(fixture("user_created")))
    assert draft.type is EventType.PROFILE_CAPTURED
    assert draft.source_event_id == "2b24ef10-19d4-4740-93cf-8f98ec4776c0"
    assert draft.occurred_at == datetime(2026, 3, 1, 10, 0, 0, 123456, tzinfo=UTC)
    assert draft.customer is not None
    assert draft.customer.system == "zendesk"
    assert draft.customer.external_id == "6596848315901"
    assert draft.customer.email == "ana.lopez@example.com"
    assert (draft.customer.first_name, draft.customer.last_name) == ("Ana", "Maria Lopez")
    body = draft.body
    assert isinstance(body, ProfileBody)
    assert (body.email, body.first_name, body.last_name, body.channel) == (
        "ana.lopez@example.com",
        "Ana",
        "Maria Lopez",
        "helpdesk",
    )


def test_user_name_changed_uses_the_new_name() -> None:
    event = orjson.loads(fixture("user_created"))
    event["type"] = "zen:event-type:user.name_changed"
    event["event"] = {"current": "Ana Ruiz", "previous": "Ana Maria Lopez"}
    [draft] = connector().map(receipt(orjson.dumps(event)))
    assert isinstance(draft.body, ProfileBody)
    assert (draft.body.first_name, draft.body.last_name) == ("Ana", "Ruiz")


@pytest.mark.parametrize(
    "event_type",
    [
        "zen:event-type:user.details_changed",
        "zen:event-type:user.external_id_changed",
        "zen:event-type/user.identity_changed",
        "zen:event-type/user.identity_created",
    ],
)
def test_other_profile_events_map_to_profile(event_type: str) -> None:
    event = orjson.loads(fixture("user_created"))
    event["type"] = event_type
    event["detail"].pop("name")
    event["detail"]["email"] = ""
    [draft] = connector().map(receipt(orjson.dumps(event)))
    assert draft.type is EventType.PROFILE_CAPTURED
    assert isinstance(draft.body, ProfileBody)
    assert (draft.body.email, draft.body.first_name, draft.body.last_name) == (None, None, None)


def test_custom_field_changed_maps_to_attribute() -> None:
    [draft] = connector().map(receipt(fixture("user_custom_field_changed")))
    assert draft.type is EventType.ATTRIBUTES_CHANGED
    assert draft.source_event_id == "7c1f0a52-6a0e-4b7e-9a55-1f3f7f2c9d01"
    assert draft.customer is not None and draft.customer.external_id == "6596848315901"
    body = draft.body
    assert isinstance(body, AttributesBody)
    assert body.attributes == {"zendesk.vip": True}
    assert body.updated_at == datetime(2026, 3, 2, 11, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("field", "current", "expected"),
    [
        ({"id": 360012345678, "title": "Tier"}, "gold", {"zendesk.field_360012345678": "gold"}),
        ({"key": "points", "type": "integer"}, 1200, {"zendesk.points": 1200}),
        ({"key": "spend", "type": "decimal"}, 12.5, {"zendesk.spend": "12.5"}),
        ({"key": "tags", "type": "multiselect"}, ["a", "b"], {"zendesk.tags": "a;b"}),
        ({"key": "vip"}, None, {"zendesk.vip": None}),
        ({"key": "lookup"}, {"id": 5, "b": [1]}, {"zendesk.lookup": '{"b":[1],"id":5}'}),
    ],
)
def test_custom_field_values(field: dict[str, Any], current: Any, expected: dict[str, Any]) -> None:
    event = orjson.loads(fixture("user_custom_field_changed"))
    event["event"] = {"field": field, "current": current}
    [draft] = connector().map(receipt(orjson.dumps(event)))
    assert isinstance(draft.body, AttributesBody)
    assert draft.body.attributes == expected


def test_unmapped_user_event_is_nothing_to_map() -> None:
    with pytest.raises(NothingToMap, match=r"Zendesk event user\.active_changed is not mapped"):
        connector().map(receipt(fixture("user_active_changed")))


def test_ticket_event_is_nothing_to_map() -> None:
    body = fixture("ticket_created")
    connector().parse(body)  # well-formed: stored, not quarantined
    with pytest.raises(NothingToMap, match=r"ticket\.created"):
        connector().map(receipt(body))


def test_agents_are_not_customers() -> None:
    event = orjson.loads(fixture("user_created"))
    event["detail"]["role"] = "agent"
    with pytest.raises(NothingToMap, match="role 'agent'"):
        connector().map(receipt(orjson.dumps(event)))


def test_event_without_id_or_time_falls_back_to_receipt() -> None:
    event = orjson.loads(fixture("user_created"))
    del event["id"], event["time"]
    [draft] = connector().map(receipt(orjson.dumps(event), delivery_id="sha256:feed"))
    assert draft.source_event_id == "sha256:feed"
    assert draft.occurred_at == NOW


# --- payload errors ------------------------------------------------------------------------


def payload_reason(body: bytes) -> str:
    with pytest.raises(PayloadError) as info:
        connector().parse(body)
    with pytest.raises(PayloadError):
        connector().map(receipt(body))
    return info.value.reason


def user_event(**changes: Any) -> bytes:
    event = orjson.loads(fixture("user_custom_field_changed"))
    event.update(changes)
    return orjson.dumps(event)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "empty body"),
        (b"<xml/>", "body is not valid JSON"),
        (b"[]", "expected a JSON object, got list"),
        (b"{}", "type: field required"),
        (b'{"type": ""}', "type: string should have at least 1 character"),
        (b'{"type": "zen:event-type:user.created"}', "detail: field required for user events"),
        (user_event(detail={"email": "a@b.c"}), "detail.id: field required"),
        (user_event(detail=[]), "detail: input should be a valid dictionary"),
        (user_event(detail={"id": "1", "email": 5}), "detail.email: input should be a valid"),
        (user_event(time="2026-03-01 10:00"), "time: must include a UTC offset or Z"),
        (user_event(id=""), "id: must not be empty"),
        (user_event(event={"current": 1}), "event.field: field required"),
        (user_event(event={"field": "vip"}), "event.field: input should be a valid dictionary"),
        (user_event(event={"field": {"title": "VIP"}}), "event.field: needs a key or an id"),
    ],
)
def test_payload_error_reasons(body: bytes, reason: str) -> None:
    assert payload_reason(body).startswith(reason)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=15),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=15,
)
zendesk_shaped = st.fixed_dictionaries(
    {
        "type": st.sampled_from(
            [
                "zen:event-type:user.created",
                "zen:event-type:user.custom_field_changed",
                "zen:event-type/user.name_changed",
                "zen:event-type:ticket.created",
                "user.created",
            ]
        ),
    },
    optional={
        "id": json_values,
        "time": st.sampled_from(["2026-03-01T10:00:00Z", "2026-03-01", "x", 5]),
        "detail": st.dictionaries(
            st.sampled_from(["id", "email", "name", "role", "external_id"]), json_values
        )
        | json_values,
        "event": st.dictionaries(st.sampled_from(["field", "current", "previous"]), json_values)
        | st.fixed_dictionaries(
            {
                "field": st.dictionaries(st.sampled_from(["id", "key", "title"]), json_values),
                "current": json_values,
            }
        ),
    },
)


def only_expected_errors(body: bytes) -> None:
    with contextlib.suppress(PayloadError):
        connector().parse(body)
    with contextlib.suppress(PayloadError, NothingToMap):
        connector().map(receipt(body))
    connector().delivery_id(inbound({}, body))


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_arbitrary_bytes_only_raise_payload_errors(body: bytes) -> None:
    only_expected_errors(body)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_arbitrary_json_only_raises_payload_errors(value: Any) -> None:
    only_expected_errors(json.dumps(value).encode())


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(zendesk_shaped)
def test_zendesk_shaped_json_only_raises_payload_errors(event: dict[str, Any]) -> None:
    only_expected_errors(json.dumps(event).encode())


header_text = st.text(st.characters(codec="latin-1"), max_size=60)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(
    header_text, header_text | st.datetimes().map(lambda d: d.isoformat()), st.binary(max_size=40)
)
def test_arbitrary_headers_only_raise_signature_errors(sig: str, stamp: str, body: bytes) -> None:
    headers = {"x-zendesk-webhook-signature": sig, "x-zendesk-webhook-signature-timestamp": stamp}
    with pytest.raises(SignatureError):
        connector().verify(inbound(headers, body), [SECRET.encode()])
