"""Generic HMAC: option validation, stdlib vectors, and Stripe's library as an independent check."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import stripe
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from handoff.connectors.base import Inbound, SignatureError, SourceOptions, StoredReceipt
from handoff.connectors.generic_hmac import (
    GenericHmacConnector,
    HmacScheme,
    scheme_from_options,
    sign,
)
from handoff.domain.events import EventType

SECRET = "whsec_plain_utf8_secret_for_tests"
BODY = (Path(__file__).parent / "fixtures" / "erp" / "order_refunded.json").read_bytes()
NOW = datetime(2026, 3, 10, 16, 20, 5, tzinfo=UTC)
TS = int(NOW.timestamp())
STRIPE = {"header": "Stripe-Signature", "format": "t_v1"}


def connector(extra: dict[str, Any] | None = None, tolerance: int = 300) -> GenericHmacConnector:
    return GenericHmacConnector(
        SourceOptions(name="mw", role="erp", tolerance_seconds=tolerance, extra=extra or {})
    )


def inbound(headers: dict[str, str], body: bytes = BODY, now: datetime = NOW) -> Inbound:
    return Inbound(
        method="POST",
        url="https://hub.example/hooks/mw",
        headers={k.lower(): v for k, v in headers.items()},
        body=body,
        received_at=now,
    )


def rejected(extra: dict[str, Any], request: Inbound, secrets: list[bytes] | None = None) -> str:
    with pytest.raises(SignatureError) as info:
        connector(extra).verify(request, [SECRET.encode()] if secrets is None else secrets)
    return info.value.reason


def stdlib(algorithm: str, content: bytes, encoding: str = "hex", key: str = SECRET) -> str:
    digest = hmac.new(key.encode(), content, getattr(hashlib, algorithm)).digest()
    return digest.hex() if encoding == "hex" else base64.b64encode(digest).decode()


# --- options -------------------------------------------------------------------------------


def test_defaults() -> None:
    assert connector().scheme == HmacScheme(
        header="x-signature", algorithm="sha256", encoding="hex", prefix="", format="plain"
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            {"algorithm": "md5"},
            "hmac option algorithm='md5' is not supported; allowed: sha1, sha256, sha512",
        ),
        (
            {"encoding": "base32"},
            "hmac option encoding='base32' is not supported; allowed: hex, base64",
        ),
        (
            {"format": "stripe"},
            "hmac option format='stripe' is not supported; allowed: plain, t_v1",
        ),
        ({"header": ""}, "hmac option header='' is not a valid HTTP header name"),
        ({"header": "X Sig"}, "hmac option header='X Sig' is not a valid HTTP header name"),
        ({"header": 5}, "hmac option header=5 must be a string"),
        ({"prefix": 1}, "hmac option prefix=1 must be a string"),
        ({"timestamp_header": "a:b"}, "hmac option timestamp_header='a:b' is not a valid HTTP"),
        ({"id_header": ["x"]}, "hmac option id_header=['x'] must be a string"),
        (
            {"format": "t_v1", "timestamp_header": "X-Ts"},
            "hmac option timestamp_header='X-Ts' cannot be combined with format='t_v1'",
        ),
        (
            {"format": "t_v1", "prefix": "sha256="},
            "hmac option prefix='sha256=' cannot be combined with format='t_v1'",
        ),
    ],
)
def test_invalid_options_name_key_value_and_allowed(extra: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as info:
        connector(extra)
    assert str(info.value).startswith(message)


def test_other_extra_keys_are_left_alone() -> None:
    assert connector({"read_back": True}).scheme.header == "x-signature"


# --- plain format against stdlib vectors ---------------------------------------------------


@pytest.mark.parametrize("algorithm", ["sha1", "sha256", "sha512"])
@pytest.mark.parametrize("encoding", ["hex", "base64"])
def test_plain_matches_stdlib(algorithm: str, encoding: str) -> None:
    extra = {"algorithm": algorithm, "encoding": encoding}
    expected = stdlib(algorithm, BODY, encoding)
    assert sign(extra, SECRET, BODY) == {"x-signature": expected}
    connector(extra).verify(inbound({"X-Signature": expected}), [SECRET.encode()])


def test_prefix_and_custom_header() -> None:
    extra = {"header": "X-Hub-Signature-256", "prefix": "sha256="}
    value = "sha256=" + stdlib("sha256", BODY)
    connector(extra).verify(inbound({"X-Hub-Signature-256": value}), [SECRET.encode()])
    bare = stdlib("sha256", BODY)
    assert rejected(extra, inbound({"X-Hub-Signature-256": bare})) == (
        "x-hub-signature-256 does not start with 'sha256='"
    )


def test_hex_is_compared_case_insensitively() -> None:
    upper = stdlib("sha256", BODY).upper()
    connector().verify(inbound({"X-Signature": upper}), [SECRET.encode()])


def test_plain_tampering_wrong_secret_rotation_and_garbage() -> None:
    good = {"X-Signature": stdlib("sha256", BODY)}
    assert rejected({}, inbound(good, BODY + b" ")) == "signature does not match"
    assert rejected({}, inbound(good), [b"other"]) == "signature does not match"
    connector().verify(inbound(good), [b"other", SECRET.encode()])
    assert rejected({}, inbound({"X-Signature": "zz-not-hex"})) == "x-signature holds no hex digest"
    assert rejected({"encoding": "base64"}, inbound({"X-Signature": "@@@"})) == (
        "x-signature holds no base64 digest"
    )
    assert rejected({}, inbound({})) == "missing header x-signature"
    assert rejected({}, inbound(good), []) == "no secret configured"


def test_plain_with_timestamp_header() -> None:
    extra = {"timestamp_header": "X-Timestamp", "id_header": "X-Delivery"}
    headers = sign(extra, SECRET, BODY, timestamp=TS, delivery_id="dlv-1")
    assert headers == {
        "x-timestamp": str(TS),
        "x-signature": stdlib("sha256", f"{TS}.".encode() + BODY),
        "x-delivery": "dlv-1",
    }
    connector(extra).verify(inbound(headers), [SECRET.encode()])
    assert connector(extra).delivery_id(inbound(headers)) == "dlv-1"
    stale = sign(extra, SECRET, BODY, timestamp=TS - 301)
    assert rejected(extra, inbound(stale)) == "x-timestamp is 301 s old; tolerance is 300 s"
    future = sign(extra, SECRET, BODY, timestamp=TS + 301)
    assert (
        rejected(extra, inbound(future)) == "x-timestamp is 301 s in the future; tolerance is 300 s"
    )
    moved = {**headers, "x-timestamp": str(TS + 1)}
    assert rejected(extra, inbound(moved)) == "signature does not match"
    no_ts = {k: v for k, v in headers.items() if k != "x-timestamp"}
    assert rejected(extra, inbound(no_ts)) == "missing header x-timestamp"
    junk = {**headers, "x-timestamp": "2026-03-10T16:20:05Z"}
    assert rejected(extra, inbound(junk)) == "x-timestamp is not integer unix seconds"


def test_delivery_id_without_id_header_is_none() -> None:
    assert connector().delivery_id(inbound({"X-Delivery": "d"})) is None
    assert connector({"id_header": "X-Delivery"}).delivery_id(inbound({})) is None


# --- t_v1 format, checked with the stripe library ------------------------------------------


def test_stripe_signs_we_verify() -> None:
    now = int(time.time())
    header = stripe.WebhookSignature.generate_signature_header(BODY.decode(), SECRET, now)
    request = inbound({"Stripe-Signature": header}, now=datetime.fromtimestamp(now, UTC))
    connector(STRIPE).verify(request, [SECRET.encode()])


def test_we_sign_stripe_verifies() -> None:
    now = int(time.time())
    headers = sign(STRIPE, SECRET, BODY, timestamp=now)
    assert stripe.WebhookSignature.verify_header(
        BODY.decode(), headers["stripe-signature"], SECRET, tolerance=300
    )
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.WebhookSignature.verify_header(
            BODY.decode(), headers["stripe-signature"], "another", tolerance=300
        )


def test_t_v1_matches_stripe_exactly_and_stdlib() -> None:
    ours = sign(STRIPE, SECRET, BODY, timestamp=TS)["stripe-signature"]
    theirs = stripe.WebhookSignature.generate_signature_header(BODY.decode(), SECRET, TS)
    assert ours == theirs == f"t={TS},v1={stdlib('sha256', f'{TS}.'.encode() + BODY)}"


def test_t_v1_rotation_tolerance_and_malformed_headers() -> None:
    both = sign(STRIPE, [b"old", SECRET], BODY, timestamp=TS)["stripe-signature"]
    assert both.count("v1=") == 2
    connector(STRIPE).verify(inbound({"Stripe-Signature": both}), [SECRET.encode()])
    connector(STRIPE).verify(inbound({"Stripe-Signature": both}), [b"old"])
    with_v0 = both + ",v0=deadbeef"
    connector(STRIPE).verify(inbound({"Stripe-Signature": with_v0}), [SECRET.encode()])

    stale = sign(STRIPE, SECRET, BODY, timestamp=TS - 301)["stripe-signature"]
    assert rejected(STRIPE, inbound({"Stripe-Signature": stale})) == (
        "stripe-signature t= is 301 s old; tolerance is 300 s"
    )
    future = sign(STRIPE, SECRET, BODY, timestamp=TS + 301)["stripe-signature"]
    assert rejected(STRIPE, inbound({"Stripe-Signature": future})) == (
        "stripe-signature t= is 301 s in the future; tolerance is 300 s"
    )
    assert rejected(STRIPE, inbound({"Stripe-Signature": f"v1={'0' * 64}"})) == (
        "signature header has no t= timestamp"
    )
    assert rejected(STRIPE, inbound({"Stripe-Signature": f"t={TS}"})) == (
        "signature header has no v1= signature"
    )
    good = sign(STRIPE, SECRET, BODY, timestamp=TS)["stripe-signature"]
    assert rejected(STRIPE, inbound({"Stripe-Signature": good}, BODY[:-1])) == (
        "signature does not match"
    )


def test_sign_needs_what_the_scheme_signs() -> None:
    with pytest.raises(ValueError, match="needs a timestamp"):
        sign(STRIPE, SECRET, BODY)
    with pytest.raises(ValueError, match="needs a timestamp"):
        sign({"timestamp_header": "X-Ts"}, SECRET, BODY)
    with pytest.raises(ValueError, match="exactly one signature"):
        sign({}, [SECRET, "b"], BODY)


def test_scheme_from_options_lowercases_header_names() -> None:
    scheme = scheme_from_options({"header": "X-Sig", "id_header": "X-Id"})
    assert (scheme.header, scheme.id_header) == ("x-sig", "x-id")


# --- body: the ERP schema ------------------------------------------------------------------


def test_parse_and_map_use_the_erp_schema() -> None:
    assert connector().parse(BODY).type == "order.refunded"
    stored = StoredReceipt(
        id=2, source="mw", headers={}, body=BODY, received_at=NOW, delivery_id="x"
    )
    [draft] = connector().map(stored)
    assert draft.type is EventType.ORDER_REFUNDED
    assert draft.source_event_id == "refund:RMA-501"
    assert draft.customer is not None and draft.customer.system == "mw"


header_text = st.text(st.characters(codec="latin-1"), max_size=60)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(
        [{}, STRIPE, {"encoding": "base64", "prefix": "v1="}, {"timestamp_header": "X-Ts"}]
    ),
    header_text,
    header_text,
    st.binary(max_size=40),
)
def test_arbitrary_headers_only_raise_signature_errors(
    extra: dict[str, Any], sig: str, stamp: str, body: bytes
) -> None:
    request = inbound({"X-Signature": sig, "Stripe-Signature": sig, "X-Ts": stamp}, body)
    with pytest.raises(SignatureError):
        connector(extra).verify(request, [SECRET.encode()])
