"""Vendor "standard": Standard Webhooks signatures carrying handoff's ERP event schema.

This is the scheme handoff asks an ERP (or a NetSuite User Event script) to sign with, because
it already has reference libraries in most languages and covers replay (signed timestamp),
idempotency (`webhook-id`) and zero-downtime rotation (several signatures per header).

Scheme (github.com/standard-webhooks/standard-webhooks, spec/standard-webhooks.md):
- headers `webhook-id`, `webhook-timestamp` (integer unix seconds), `webhook-signature`
  (space-separated `v1,<base64>` entries; other versions such as `v1a` are ignored);
- signed content `{webhook-id}.{webhook-timestamp}.{raw body}`, HMAC-SHA256;
- the secret is configured as `whsec_<base64>`; the HMAC key is the decoded base64 (a secret
  without the prefix is decoded the same way, as the reference library does);
- the timestamp must lie within ±tolerance_seconds (default 300) of the receive time.
"""

from __future__ import annotations

import base64
import binascii
import secrets as _secrets
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import ClassVar

from handoff.connectors import erp_schema
from handoff.connectors.base import (
    Inbound,
    SignatureError,
    SourceOptions,
    StoredReceipt,
    any_matches,
    b64,
    hmac_digest,
)
from handoff.domain.events import EventDraft

SECRET_PREFIX = "whsec_"  # noqa: S105 - a format marker, not a secret
ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"


def decode_secret(secret: str | bytes) -> bytes:
    """`whsec_<base64>` (or bare base64) → HMAC key bytes. ValueError if it is not base64."""
    text = secret.decode("utf-8", "replace") if isinstance(secret, bytes) else secret
    text = text.strip()
    if text.startswith(SECRET_PREFIX):
        text = text[len(SECRET_PREFIX) :]
    text = text.rstrip("=")
    try:
        key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("secret is not whsec_ followed by base64") from None
    if not key:
        raise ValueError("secret is empty")
    return key


def generate_secret(length: int = 32) -> str:
    """A fresh `whsec_` secret (the spec asks for 24 to 64 random bytes)."""
    return SECRET_PREFIX + base64.b64encode(_secrets.token_bytes(length)).decode("ascii")


def secret_from_text(text: str) -> str:
    """The `whsec_` form of a key that a sender can only hold as text (NetSuite's N/crypto
    keys are stored strings): both sides then HMAC with the same bytes, the text's UTF-8."""
    if not text:
        raise ValueError("secret text is empty")
    return SECRET_PREFIX + base64.b64encode(text.encode()).decode("ascii")


def _timestamp_text(timestamp: int | datetime) -> str:
    if isinstance(timestamp, datetime):
        if timestamp.tzinfo is None:
            timestamp = timestamp.replace(tzinfo=UTC)
        return str(int(timestamp.timestamp()))
    return str(int(timestamp))


def signature(secret: str | bytes, msg_id: str, timestamp: int | datetime, body: bytes) -> str:
    """One `v1,<base64>` signature entry."""
    content = f"{msg_id}.{_timestamp_text(timestamp)}.".encode() + body
    return "v1," + b64(hmac_digest(decode_secret(secret), content))


def sign(
    secret: str | bytes | Sequence[str | bytes],
    msg_id: str,
    timestamp: int | datetime,
    body: bytes,
) -> dict[str, str]:
    """The three Standard Webhooks headers for `body`. Several secrets (rotation) give several
    space-separated signatures, as a sender does while both keys are active."""
    keys = [secret] if isinstance(secret, str | bytes) else list(secret)
    return {
        ID_HEADER: msg_id,
        TIMESTAMP_HEADER: _timestamp_text(timestamp),
        SIGNATURE_HEADER: " ".join(signature(k, msg_id, timestamp, body) for k in keys),
    }


def check_timestamp(
    header_value: str, now: datetime, tolerance_seconds: int, label: str = TIMESTAMP_HEADER
) -> int:
    """Parse an integer unix-seconds timestamp and enforce ±tolerance around `now`.

    `label` names the timestamp in the SignatureError reason."""
    text = header_value.strip()
    if not text.isascii() or not text.isdigit() or len(text) > 15:
        raise SignatureError(f"{label} is not integer unix seconds")
    stamp = int(text)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    skew = stamp - int(now.timestamp())
    if skew < -tolerance_seconds:
        raise SignatureError(f"{label} is {-skew} s old; tolerance is {tolerance_seconds} s")
    if skew > tolerance_seconds:
        raise SignatureError(
            f"{label} is {skew} s in the future; tolerance is {tolerance_seconds} s"
        )
    return stamp


def presented_v1(header_value: str) -> list[str]:
    """The base64 parts of every `v1,` entry; other versions (`v1a`, …) are skipped."""
    found = []
    for entry in header_value.split():
        version, sep, value = entry.partition(",")
        if sep and version == "v1" and value:
            found.append(value)
    return found


def verify_request(request: Inbound, secrets: Sequence[bytes], tolerance_seconds: int) -> None:
    """The Standard Webhooks check itself, usable by any connector that speaks it."""
    if not secrets:
        raise SignatureError("no secret configured")
    msg_id = request.require(ID_HEADER)
    stamp = request.require(TIMESTAMP_HEADER)
    header = request.require(SIGNATURE_HEADER)
    if "." in msg_id:
        # the spec forbids '.' in the id so the signed content cannot be re-split
        raise SignatureError(f"{ID_HEADER} must not contain '.'")
    check_timestamp(stamp, request.received_at, tolerance_seconds)
    candidates = presented_v1(header)
    if not candidates:
        raise SignatureError(f"{SIGNATURE_HEADER} has no v1 signature")
    content = f"{msg_id}.{stamp.strip()}.".encode() + request.body
    expected = []
    for index, secret in enumerate(secrets):
        try:
            key = decode_secret(secret)
        except ValueError as exc:
            raise SignatureError(f"configured secret #{index + 1}: {exc}") from None
        expected.append(b64(hmac_digest(key, content)))
    if not any_matches(candidates, expected):
        raise SignatureError("no v1 signature matches")


class StandardConnector:
    """Standard Webhooks in, handoff's ERP event schema inside (docs/erp-events.md)."""

    vendor: ClassVar[str] = "standard"
    kept_headers: ClassVar[tuple[str, ...]] = (ID_HEADER, TIMESTAMP_HEADER, "content-type")

    def __init__(self, options: SourceOptions) -> None:
        self.options = options

    def verify(self, request: Inbound, secrets: Sequence[bytes]) -> None:
        verify_request(request, secrets, self.options.tolerance_seconds)

    def delivery_id(self, request: Inbound) -> str | None:
        value = request.header(ID_HEADER)
        return value.strip() if value and value.strip() else None

    def parse(self, body: bytes) -> erp_schema.ErpEvent:
        return erp_schema.parse_event(body)

    def map(self, receipt: StoredReceipt) -> list[EventDraft]:
        return erp_schema.map_receipt(receipt)
