"""What every connector shares: the inbound request view, the errors, the HMAC helpers.

A connector knows one vendor: how it signs (verify), how it names its deliveries (delivery_id),
what a well-formed body looks like (parse) and how that body maps to canonical events (map).
The gateway and the processor only ever talk to this surface.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Protocol

import orjson
from pydantic import ValidationError

from handoff.domain.events import EventDraft


class SignatureError(Exception):
    """The request is not provably from the vendor. `reason` is safe to log (no payload)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NothingToMap(Exception):
    """Signed and well-formed, but carries no fact the hub maps (yet): kept as `skipped`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PayloadError(Exception):
    """Signed, but not usable: not JSON, or not the vendor's shape. Quarantined, never dropped."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Inbound:
    """One webhook request as it arrived. Header names are lower-cased."""

    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes
    received_at: datetime

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def require(self, name: str) -> str:
        value = self.headers.get(name.lower())
        if not value:
            raise SignatureError(f"missing header {name}")
        return value


@dataclass(frozen=True, slots=True)
class StoredReceipt:
    """What the processor hands a connector's mapping: a receipt from the receive log."""

    id: int
    source: str
    headers: Mapping[str, str]
    body: bytes
    received_at: datetime
    delivery_id: str

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass(frozen=True, slots=True)
class SourceOptions:
    """The per-source knobs a connector may need, from config (already validated)."""

    name: str
    role: str
    tolerance_seconds: int = 300
    public_url: str | None = None
    default_region: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


class Connector(Protocol):
    vendor: ClassVar[str]
    kept_headers: ClassVar[tuple[str, ...]]

    def verify(self, request: Inbound, secrets: Sequence[bytes]) -> None:
        """Raise SignatureError unless one of `secrets` signed this request."""

    def delivery_id(self, request: Inbound) -> str | None:
        """The vendor's id for this delivery (stable across its retries), or None."""

    def parse(self, body: bytes) -> Any:
        """Decode and shape-check the body; raise PayloadError with a specific reason."""

    def map(self, receipt: StoredReceipt) -> list[EventDraft]:
        """Turn a stored receipt into canonical event drafts.

        Raise PayloadError if unusable (quarantine) or NothingToMap if there is nothing to map."""


ConnectorFactory = Callable[[SourceOptions], Connector]


# --- shared helpers ------------------------------------------------------------------------


def hmac_digest(secret: bytes, message: bytes, algorithm: str = "sha256") -> bytes:
    return hmac.new(secret, message, getattr(hashlib, algorithm)).digest()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def constant_time_equal(a: str | bytes, b: str | bytes) -> bool:
    a_bytes = a.encode() if isinstance(a, str) else a
    b_bytes = b.encode() if isinstance(b, str) else b
    return hmac.compare_digest(a_bytes, b_bytes)


def any_matches(candidates: Sequence[str], expected: Sequence[str]) -> bool:
    """True if any presented signature equals any expected one; every pair is compared in
    constant time and the loop never exits early, so timing does not reveal which matched."""
    found = False
    for candidate in candidates:
        for want in expected:
            found |= constant_time_equal(candidate, want)
    return found


def parse_json(body: bytes) -> Any:
    if not body:
        raise PayloadError("empty body")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise PayloadError(f"body is not valid JSON: {exc.msg} at position {exc.pos}") from exc


def parse_json_object(body: bytes) -> dict[str, Any]:
    data = parse_json(body)
    if not isinstance(data, dict):
        raise PayloadError(f"expected a JSON object, got {type(data).__name__}")
    return data


def content_hash(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()


def invalid_event_reason(exc: ValidationError) -> str:
    """A canonical-event validation failure without the offending values (maybe personal data)."""
    parts = [
        f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
        for error in exc.errors(include_input=False, include_url=False)
    ]
    return "invalid canonical event: " + "; ".join(parts)


def verify_body_hmac(request: Inbound, secrets: Sequence[bytes], header: str) -> None:
    """The commonest scheme (Shopify, LoyaltyLion, QuickBooks): `header` carries
    base64(HMAC-SHA256(secret, raw body)); either active secret may have signed it."""
    presented = request.require(header).strip()
    if not secrets:
        raise SignatureError("no secret configured")
    expected = [b64(hmac_digest(secret, request.body)) for secret in secrets]
    if not any_matches([presented], expected):
        raise SignatureError("signature mismatch")


def required_id(value: Any, where: str) -> str:
    """An id field as text: an integer or a non-blank string; PayloadError names the field."""
    if value is None:
        raise PayloadError(f"{where} is missing")
    if isinstance(value, bool) or not isinstance(value, int | str) or str(value).strip() == "":
        raise PayloadError(f"{where} is not an id")
    return str(value).strip()


def optional_time(value: Any, where: str) -> datetime | None:
    """An ISO 8601 timestamp field with an offset; absent or empty is None."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > 64:
        raise PayloadError(f"{where} is not an ISO 8601 timestamp")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise PayloadError(f"{where} is not an ISO 8601 timestamp") from exc
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise PayloadError(f"{where} has no UTC offset")
    return parsed
