"""QuickBooks Online: intuit-signature checked against python-quickbooks; thin payloads skip."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from quickbooks import QuickBooks

from handoff.connectors.base import (
    Inbound,
    NothingToMap,
    PayloadError,
    SignatureError,
    SourceOptions,
    StoredReceipt,
)
from handoff.connectors.quickbooks import (
    EntityChange,
    QuickBooksConnector,
    cloud_event_delivery_id,
    parse_notification,
    sign,
    signature,
)

FIXTURES = Path(__file__).parent / "fixtures" / "quickbooks"
TOKEN = "8c1b7b5e-5f0e-4c2a-9b7e-2f4d0a1c3e5f"
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def fixture(name: str) -> bytes:
    return (FIXTURES / f"{name}.json").read_bytes()


def connector() -> QuickBooksConnector:
    return QuickBooksConnector(SourceOptions(name="qbo", role="erp"))


def inbound(headers: dict[str, str], body: bytes) -> Inbound:
    return Inbound(
        method="POST",
        url="https://hub.example/hooks/qbo",
        headers={k.lower(): v for k, v in headers.items()},
        body=body,
        received_at=NOW,
    )


def receipt(body: bytes) -> StoredReceipt:
    return StoredReceipt(
        id=9, source="qbo", headers={}, body=body, received_at=NOW, delivery_id="sha256:x"
    )


def qbo_client() -> QuickBooks:
    # no auth_client: the library builds offline and validates without any network call
    return QuickBooks(verifier_token=TOKEN, minorversion=75)


def rejected(request: Inbound, secrets: list[bytes]) -> str:
    with pytest.raises(SignatureError) as info:
        connector().verify(request, secrets)
    return info.value.reason


# --- signatures ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["legacy", "cloudevents", "cloudevents_batch"])
def test_our_signature_passes_python_quickbooks(name: str) -> None:
    body = fixture(name)
    assert qbo_client().validate_webhook_signature(body.decode(), signature(TOKEN, body))
    assert not qbo_client().validate_webhook_signature(body.decode(), signature("other", body))


@pytest.mark.parametrize("name", ["legacy", "cloudevents"])
def test_we_verify_what_python_quickbooks_accepts(name: str) -> None:
    body = fixture(name)
    header = sign(TOKEN, body)
    assert qbo_client().validate_webhook_signature(body.decode(), header["intuit-signature"])
    connector().verify(inbound(header, body), [TOKEN.encode()])


def test_tampered_body_is_rejected_by_both() -> None:
    body = fixture("legacy")
    header = sign(TOKEN, body)
    tampered = body.replace(b"1234", b"1235")
    assert not qbo_client().validate_webhook_signature(
        tampered.decode(), header["intuit-signature"]
    )
    assert rejected(inbound(header, tampered), [TOKEN.encode()]) == "signature does not match"


def test_wrong_token_and_rotation() -> None:
    body = fixture("cloudevents")
    header = sign("new-token", body)
    assert rejected(inbound(header, body), [TOKEN.encode()]) == "signature does not match"
    connector().verify(inbound(header, body), [TOKEN.encode(), b"new-token"])


def test_missing_header_and_no_token() -> None:
    body = fixture("legacy")
    assert rejected(inbound({}, body), [TOKEN.encode()]) == "missing header intuit-signature"
    assert rejected(inbound(sign(TOKEN, body), body), []) == "no verifier token configured"


def test_header_name_case_does_not_matter() -> None:
    body = fixture("legacy")
    headers = {"Intuit-Signature": signature(TOKEN, body)}
    connector().verify(inbound(headers, body), [TOKEN.encode()])


# --- parse ---------------------------------------------------------------------------------


def test_parse_legacy() -> None:
    note = parse_notification(fixture("legacy"))
    assert note.format == "legacy"
    assert note.changes == (
        EntityChange(
            realm_id="310687",
            entity="Invoice",
            entity_id="1234",
            operation="Create",
            occurred_at=datetime(2025, 9, 8, 20, 52, 31, 657000, tzinfo=UTC),
        ),
        EntityChange(
            realm_id="310687",
            entity="Customer",
            entity_id="56",
            operation="Update",
            occurred_at=datetime(2025, 9, 8, 20, 52, 30, tzinfo=UTC),
        ),
    )


def test_parse_cloudevents() -> None:
    note = parse_notification(fixture("cloudevents_batch"))
    assert note.format == "cloudevents"
    merged, updated = note.changes
    assert (merged.entity, merged.entity_id, merged.operation, merged.deleted_id) == (
        "Customer",
        "123",
        "Merge",
        "27",
    )
    assert (updated.entity, updated.operation, updated.event_id) == (
        "SalesReceipt",
        "Update",
        "a2-SalesReceipt-150",
    )
    assert updated.realm_id == "310687"


def test_unknown_cloudevents_entity_is_capitalised() -> None:
    event = orjson.loads(fixture("cloudevents"))
    event[0]["type"] = "qbo.widget.voided.v2"
    [change] = parse_notification(orjson.dumps(event)).changes
    assert (change.entity, change.operation) == ("Widget", "Void")


# --- delivery id ---------------------------------------------------------------------------


def test_delivery_id() -> None:
    assert (
        connector().delivery_id(inbound({}, fixture("cloudevents")))
        == "88cd52aa-33b6-4351-9aa4-47572edbd068"
    )
    batch = connector().delivery_id(inbound({}, fixture("cloudevents_batch")))
    assert batch == cloud_event_delivery_id(["a1-Customer-123", "a2-SalesReceipt-150"])
    assert batch is not None and batch.startswith("qbo-ce:")
    assert connector().delivery_id(inbound({}, fixture("legacy"))) is None
    assert connector().delivery_id(inbound({}, b"garbage")) is None


# --- map -----------------------------------------------------------------------------------


def test_map_legacy_is_nothing_to_map_naming_entities() -> None:
    with pytest.raises(NothingToMap) as info:
        connector().map(receipt(fixture("legacy")))
    assert info.value.reason == (
        "thin QuickBooks notification: Invoice 1234 Create, Customer 56 Update; "
        "read-back not configured"
    )


def test_map_cloudevents_is_nothing_to_map_naming_entities() -> None:
    with pytest.raises(NothingToMap) as info:
        connector().map(receipt(fixture("cloudevents")))
    assert info.value.reason == (
        "thin QuickBooks notification: Invoice 95 Create; read-back not configured"
    )


def test_long_batches_are_summarised() -> None:
    entities = [
        {
            "name": "Invoice",
            "id": str(i),
            "operation": "Update",
            "lastUpdated": "2025-09-08T20:52:31Z",
        }
        for i in range(13)
    ]
    body = orjson.dumps(
        {"eventNotifications": [{"realmId": "1", "dataChangeEvent": {"entities": entities}}]}
    )
    with pytest.raises(NothingToMap, match=r"Invoice 9 Update and 3 more; read-back"):
        connector().map(receipt(body))


# --- payload errors ------------------------------------------------------------------------


def legacy(**entity: Any) -> bytes:
    base: dict[str, Any] = {"name": "Invoice", "id": "1", "operation": "Create"}
    base.update(entity)
    base = {k: v for k, v in base.items() if v is not ...}
    return orjson.dumps(
        {"eventNotifications": [{"realmId": "310687", "dataChangeEvent": {"entities": [base]}}]}
    )


def cloud(**fields: Any) -> bytes:
    event = orjson.loads(fixture("cloudevents"))[0]
    event.update(fields)
    event = {k: v for k, v in event.items() if v is not ...}
    return orjson.dumps([event])


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "empty body"),
        (b"{", "body is not valid JSON"),
        (b"42", "expected a JSON object (legacy) or array (CloudEvents), got int"),
        (b"{}", "eventNotifications: field required"),
        (b'{"eventNotifications": []}', "eventNotifications: list should have at least 1 item"),
        (
            b'{"eventNotifications": [{"realmId": "1"}]}',
            "eventNotifications[0].dataChangeEvent: field required",
        ),
        (
            b'{"eventNotifications": [{"realmId": "1", "dataChangeEvent": {"entities": []}}]}',
            "eventNotifications[0].dataChangeEvent.entities: list should have at least 1 item",
        ),
        (
            legacy(name=...),
            "eventNotifications[0].dataChangeEvent.entities[0].name: field required",
        ),
        (legacy(id=""), "eventNotifications[0].dataChangeEvent.entities[0].id: must not be empty"),
        (
            legacy(operation="Archive"),
            "eventNotifications[0].dataChangeEvent.entities[0].operation: input should be 'Create'",
        ),
        (
            legacy(lastUpdated="2025-09-08"),
            "eventNotifications[0].dataChangeEvent.entities[0].lastUpdated: must include",
        ),
        (b"[]", "body: list should have at least 1 item"),
        (b"[1]", "[0]: input should be a valid dictionary"),
        (cloud(specversion="0.3"), "[0].specversion: input should be '1.0'"),
        (cloud(id=...), "[0].id: field required"),
        (cloud(type="qbo.invoice"), "[0].type: string should match pattern"),
        (cloud(type="qbo.invoice.archived.v1"), "[0].type: unknown operation 'archived'"),
        (cloud(intuitentityid=...), "[0].intuitentityid: field required"),
        (cloud(intuitaccountid=None), "[0].intuitaccountid: must be a string"),
        (cloud(time="later"), "[0].time: must be an ISO 8601 time"),
        (cloud(data=[]), "[0].data: input should be a valid dictionary"),
    ],
)
def test_payload_error_reasons(body: bytes, reason: str) -> None:
    with pytest.raises(PayloadError) as info:
        connector().parse(body)
    assert info.value.reason.startswith(reason)
    with pytest.raises(PayloadError):
        connector().map(receipt(body))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=15),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=15,
)
entity_shaped = st.dictionaries(
    st.sampled_from(["name", "id", "operation", "lastUpdated", "deletedId"]),
    json_values | st.sampled_from(["Create", "Invoice", "2025-09-08T20:52:31Z"]),
)
cloud_shaped = st.dictionaries(
    st.sampled_from(
        ["specversion", "id", "source", "type", "time", "intuitentityid", "intuitaccountid", "data"]
    ),
    json_values | st.sampled_from(["1.0", "qbo.invoice.created.v1", "qbo.x.y.v1"]),
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


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(entity_shaped, max_size=3), st.lists(cloud_shaped, max_size=3))
def test_shaped_json_only_raises_payload_errors(
    entities: list[dict[str, Any]], events: list[dict[str, Any]]
) -> None:
    only_expected_errors(
        json.dumps(
            {"eventNotifications": [{"realmId": "1", "dataChangeEvent": {"entities": entities}}]}
        ).encode()
    )
    only_expected_errors(json.dumps(events).encode())


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(st.characters(codec="latin-1"), max_size=60), st.binary(max_size=40))
def test_arbitrary_signature_only_raises_signature_errors(sig: str, body: bytes) -> None:
    with pytest.raises(SignatureError):
        connector().verify(inbound({"intuit-signature": sig}, body), [TOKEN.encode()])
