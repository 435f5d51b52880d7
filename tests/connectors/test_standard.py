"""Standard Webhooks verification, checked against the independent `standardwebhooks` library."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from standardwebhooks import Webhook, WebhookVerificationError

from handoff.connectors.base import Inbound, NothingToMap, SignatureError, SourceOptions
from handoff.connectors.base import StoredReceipt as Receipt
from handoff.connectors.standard import (
    StandardConnector,
    decode_secret,
    generate_secret,
    presented_v1,
    secret_from_text,
    sign,
    signature,
)
from handoff.domain.events import EventType

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OTHER = "whsec_dGhpcyBpcyB0aGUgbmV3IHNlY3JldCBrZXkgMTIz"
NOW = datetime(2026, 3, 1, 14, 6, tzinfo=UTC)
TS = int(NOW.timestamp())
BODY = (Path(__file__).parent / "fixtures" / "erp" / "order_paid.json").read_bytes()
MSG_ID = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"


def connector(tolerance: int = 300) -> StandardConnector:
    return StandardConnector(
        SourceOptions(name="netsuite", role="erp", tolerance_seconds=tolerance)
    )


def inbound(headers: dict[str, str], body: bytes = BODY, now: datetime = NOW) -> Inbound:
    return Inbound(
        method="POST",
        url="https://hub.example/hooks/netsuite",
        headers={k.lower(): v for k, v in headers.items()},
        body=body,
        received_at=now,
    )


def secrets(*values: str) -> list[bytes]:
    return [v.encode() for v in values]


def rejected(request: Inbound, keys: list[bytes], tolerance: int = 300) -> str:
    with pytest.raises(SignatureError) as info:
        connector(tolerance).verify(request, keys)
    return info.value.reason


# --- round trips ---------------------------------------------------------------------------


def test_round_trip_with_our_signer() -> None:
    connector().verify(inbound(sign(SECRET, MSG_ID, TS, BODY)), secrets(SECRET))


def test_sign_accepts_datetime_and_int_alike() -> None:
    assert sign(SECRET, MSG_ID, NOW, BODY) == sign(SECRET, MSG_ID, TS, BODY)


def test_secret_without_prefix_and_unpadded_is_the_same_key() -> None:
    bare = SECRET.removeprefix("whsec_")
    assert decode_secret(bare) == decode_secret(SECRET) == decode_secret(SECRET.encode())
    unpadded = "whsec_" + base64.b64encode(b"0123456789abcdefghijklmnop").decode().rstrip("=")
    assert decode_secret(unpadded) == b"0123456789abcdefghijklmnop"
    connector().verify(inbound(sign(bare, MSG_ID, TS, BODY)), secrets(SECRET))
    connector().verify(inbound(sign(SECRET, MSG_ID, TS, BODY)), secrets(bare))


def test_reference_library_signs_we_verify() -> None:
    now = datetime.now(UTC)
    headers = {
        "webhook-id": MSG_ID,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(SECRET).sign(MSG_ID, now, BODY.decode()),
    }
    connector().verify(inbound(headers, now=now), secrets(SECRET))


def test_we_sign_reference_library_verifies() -> None:
    now = datetime.now(UTC)
    headers = sign(SECRET, MSG_ID, now, BODY)
    payload = Webhook(SECRET).verify(BODY, headers)
    assert payload["type"] == "order.paid"
    with pytest.raises(WebhookVerificationError):
        Webhook(OTHER).verify(BODY, headers)


def test_signature_is_byte_identical_to_reference() -> None:
    assert signature(SECRET, MSG_ID, NOW, BODY) == Webhook(SECRET).sign(MSG_ID, NOW, BODY.decode())


def test_generated_secret_works_with_reference_library() -> None:
    fresh = generate_secret()
    assert fresh.startswith("whsec_") and len(decode_secret(fresh)) == 32
    now = datetime.now(UTC)
    Webhook(fresh).verify(BODY, sign(fresh, MSG_ID, now, BODY))


def test_secret_from_text_keys_with_the_text_bytes() -> None:
    text = "k3y-held-as-text-in-netsuite-0123456789"
    assert decode_secret(secret_from_text(text)) == text.encode()
    with pytest.raises(ValueError, match="empty"):
        secret_from_text("")


# --- tampering -----------------------------------------------------------------------------


def test_tampered_body_is_rejected() -> None:
    headers = sign(SECRET, MSG_ID, TS, BODY)
    tampered = BODY.replace(b"150.00", b"15.00")
    assert rejected(inbound(headers, tampered), secrets(SECRET)) == "no v1 signature matches"


def test_tampered_id_and_timestamp_are_rejected() -> None:
    headers = sign(SECRET, MSG_ID, TS, BODY)
    other_id = {**headers, "webhook-id": MSG_ID + "x"}
    assert rejected(inbound(other_id), secrets(SECRET)) == "no v1 signature matches"
    other_ts = {**headers, "webhook-timestamp": str(TS + 1)}
    assert rejected(inbound(other_ts), secrets(SECRET)) == "no v1 signature matches"


def test_wrong_secret_is_rejected() -> None:
    headers = sign(OTHER, MSG_ID, TS, BODY)
    assert rejected(inbound(headers), secrets(SECRET)) == "no v1 signature matches"


# --- rotation ------------------------------------------------------------------------------


def test_rotation_second_configured_secret_matches() -> None:
    headers = sign(OTHER, MSG_ID, TS, BODY)
    connector().verify(inbound(headers), secrets(SECRET, OTHER))
    connector().verify(inbound(headers), secrets(OTHER, SECRET))


def test_rotation_several_signatures_in_header() -> None:
    headers = sign([SECRET, OTHER], MSG_ID, TS, BODY)
    assert len(headers["webhook-signature"].split(" ")) == 2
    connector().verify(inbound(headers), secrets(OTHER))
    connector().verify(inbound(headers), secrets(SECRET))
    unrelated = "whsec_" + base64.b64encode(b"z" * 24).decode()
    assert rejected(inbound(headers), secrets(unrelated)) == "no v1 signature matches"


def test_other_versions_are_ignored() -> None:
    headers = sign(SECRET, MSG_ID, TS, BODY)
    v1a = (
        "v1a,"
        + base64.b64encode(b"an ed25519 signature, 64 bytes long........................").decode()
    )
    mixed = {**headers, "webhook-signature": f"{v1a} v2,abc {headers['webhook-signature']}"}
    connector().verify(inbound(mixed), secrets(SECRET))
    only_v1a = {**headers, "webhook-signature": v1a}
    assert rejected(inbound(only_v1a), secrets(SECRET)) == "webhook-signature has no v1 signature"


def test_presented_v1_skips_malformed_entries() -> None:
    assert presented_v1("v1,abc  v1, junk v1a,def v1,ghi") == ["abc", "ghi"]


# --- timestamps ----------------------------------------------------------------------------


@pytest.mark.parametrize("offset", [-300, 0, 300])
def test_timestamp_inside_tolerance_is_accepted(offset: int) -> None:
    headers = sign(SECRET, MSG_ID, TS + offset, BODY)
    connector().verify(inbound(headers), secrets(SECRET))


def test_stale_timestamp_is_rejected() -> None:
    headers = sign(SECRET, MSG_ID, TS - 301, BODY)
    reason = rejected(inbound(headers), secrets(SECRET))
    assert reason == "webhook-timestamp is 301 s old; tolerance is 300 s"


def test_future_timestamp_is_rejected() -> None:
    headers = sign(SECRET, MSG_ID, TS + 301, BODY)
    reason = rejected(inbound(headers), secrets(SECRET))
    assert reason == "webhook-timestamp is 301 s in the future; tolerance is 300 s"


def test_tolerance_comes_from_options_and_now_from_received_at() -> None:
    headers = sign(SECRET, MSG_ID, TS - 61, BODY)
    assert "61 s old; tolerance is 60 s" in rejected(inbound(headers), secrets(SECRET), 60)
    later = NOW + timedelta(hours=1)
    assert "3600 s old" in rejected(inbound(sign(SECRET, MSG_ID, TS, BODY), now=later), [b"x"])


@pytest.mark.parametrize(
    "value", ["1.5e9", "-1772373960", "soon", "", "9" * 40, "\uff11\uff12\uff13"]
)
def test_malformed_timestamp_is_rejected(value: str) -> None:
    headers = {**sign(SECRET, MSG_ID, TS, BODY), "webhook-timestamp": value}
    reason = rejected(inbound(headers), secrets(SECRET))
    assert reason in {
        "webhook-timestamp is not integer unix seconds",
        "missing header webhook-timestamp",
    }


# --- headers and secrets -------------------------------------------------------------------


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_missing_header_is_rejected(missing: str) -> None:
    headers = sign(SECRET, MSG_ID, TS, BODY)
    del headers[missing]
    assert rejected(inbound(headers), secrets(SECRET)) == f"missing header {missing}"


def test_id_with_a_dot_is_rejected() -> None:
    headers = sign(SECRET, "msg.1", TS, BODY)
    assert rejected(inbound(headers), secrets(SECRET)) == "webhook-id must not contain '.'"


def test_no_secret_configured() -> None:
    assert rejected(inbound(sign(SECRET, MSG_ID, TS, BODY)), []) == "no secret configured"


def test_invalid_configured_secret_is_named_not_shown() -> None:
    headers = sign(SECRET, MSG_ID, TS, BODY)
    reason = rejected(inbound(headers), [SECRET.encode(), b"whsec_not base64!"])
    assert reason == "configured secret #2: secret is not whsec_ followed by base64"
    assert "not base64!" not in reason


def test_reasons_do_not_leak_secret_or_body() -> None:
    reasons = [
        rejected(inbound(sign(OTHER, MSG_ID, TS, BODY)), secrets(SECRET)),
        rejected(inbound(sign(SECRET, MSG_ID, TS - 999, BODY)), secrets(SECRET)),
    ]
    for reason in reasons:
        assert SECRET.removeprefix("whsec_") not in reason
        assert "SO-1001" not in reason


def test_kept_headers_are_lower_case() -> None:
    assert all(h == h.lower() for h in StandardConnector.kept_headers)
    assert "webhook-id" in StandardConnector.kept_headers


# --- delivery id, parse, map ---------------------------------------------------------------


def test_delivery_id_is_webhook_id() -> None:
    assert connector().delivery_id(inbound(sign(SECRET, MSG_ID, TS, BODY))) == MSG_ID
    assert connector().delivery_id(inbound({})) is None


def test_parse_and_map_use_the_erp_schema() -> None:
    parsed = connector().parse(BODY)
    assert parsed.type == "order.paid"
    stored = Receipt(
        id=7, source="netsuite", headers={}, body=BODY, received_at=NOW, delivery_id=MSG_ID
    )
    [draft] = connector().map(stored)
    assert draft.type is EventType.ORDER_PAID
    assert draft.source_event_id == "order.paid:SO-1001"
    assert draft.customer is not None and draft.customer.system == "netsuite"


def test_map_unknown_type_is_nothing_to_map() -> None:
    body = b'{"type":"invoice.sent","timestamp":"2026-03-01T12:00:00Z","data":{}}'
    stored = Receipt(id=1, source="s", headers={}, body=body, received_at=NOW, delivery_id="d")
    with pytest.raises(NothingToMap):
        connector().map(stored)


header_text = st.text(st.characters(codec="latin-1"), max_size=60)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(header_text, header_text, header_text, st.binary(max_size=40))
def test_arbitrary_headers_only_raise_signature_errors(
    msg_id: str, stamp: str, sig: str, body: bytes
) -> None:
    headers = {"webhook-id": msg_id, "webhook-timestamp": stamp, "webhook-signature": sig}
    with pytest.raises(SignatureError):
        connector().verify(inbound(headers, body), secrets(SECRET))
