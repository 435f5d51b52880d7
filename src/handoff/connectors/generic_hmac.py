"""Vendor "hmac": a configurable HMAC signature carrying handoff's ERP event schema.

For senders that cannot do Standard Webhooks but can compute an HMAC (middleware, iPaaS
recipes, an ERP's own callout feature). The body is the ERP event schema (docs/erp-events.md),
mapped exactly like the `standard` vendor; only the signature differs.

Options (`[sources.<name>.options]` in the configuration), validated when the connector is built:

- `header` (default `X-Signature`): the header that carries the signature;
- `algorithm`: `sha1` | `sha256` (default) | `sha512`;
- `encoding`: `hex` (default, compared case-insensitively) | `base64`;
- `prefix` (default empty): text before the digest, e.g. `sha256=`;
- `format`: `plain` (default: the header is prefix + digest) | `t_v1` (the header is
  `t=<unix seconds>,v1=<digest>[,v1=<digest>…]`, as Stripe sends it);
- `timestamp_header` (plain format only): a header holding unix seconds; when set, the signed
  content is `{timestamp}.{body}` and the timestamp must lie within ±tolerance_seconds;
- `id_header`: a header whose value is the delivery id (stable across retries).

With `format = "t_v1"` the signed content is always `{t}.{body}` and the same tolerance applies
(both stale and future, which is stricter than Stripe's own library). The secret is used as its
UTF-8 bytes.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Final, Literal

from handoff.connectors import erp_schema
from handoff.connectors.base import (
    Inbound,
    SignatureError,
    SourceOptions,
    StoredReceipt,
    any_matches,
    hmac_digest,
)
from handoff.connectors.standard import check_timestamp
from handoff.domain.events import EventDraft

ALGORITHMS: Final = ("sha1", "sha256", "sha512")
ENCODINGS: Final = ("hex", "base64")
FORMATS: Final = ("plain", "t_v1")
DEFAULT_HEADER = "X-Signature"


@dataclass(frozen=True, slots=True)
class HmacScheme:
    """The validated options: one place that knows how this source signs."""

    header: str = DEFAULT_HEADER.lower()  # stored lower-cased, as Inbound headers are
    algorithm: Literal["sha1", "sha256", "sha512"] = "sha256"
    encoding: Literal["hex", "base64"] = "hex"
    prefix: str = ""
    format: Literal["plain", "t_v1"] = "plain"
    timestamp_header: str | None = None
    id_header: str | None = None


def _text(extra: Mapping[str, Any], key: str, default: str | None) -> str | None:
    value = extra.get(key, default)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"hmac option {key}={value!r} must be a string")
    return value


def _choice(extra: Mapping[str, Any], key: str, default: str, allowed: Sequence[str]) -> Any:
    value = extra.get(key, default)
    if value not in allowed:
        raise ValueError(
            f"hmac option {key}={value!r} is not supported; allowed: {', '.join(allowed)}"
        )
    return value


def _header_name(extra: Mapping[str, Any], key: str, default: str | None) -> str | None:
    value = _text(extra, key, default)
    if value is None:
        return None
    name = value.strip()
    if not name or any(c.isspace() or c == ":" for c in name) or not name.isascii():
        raise ValueError(f"hmac option {key}={value!r} is not a valid HTTP header name")
    return name.lower()


def scheme_from_options(extra: Mapping[str, Any]) -> HmacScheme:
    """Validate `options.extra`; ValueError names the key, the value and what is allowed."""
    header = _header_name(extra, "header", DEFAULT_HEADER)
    scheme = HmacScheme(
        header=header or DEFAULT_HEADER.lower(),
        algorithm=_choice(extra, "algorithm", "sha256", ALGORITHMS),
        encoding=_choice(extra, "encoding", "hex", ENCODINGS),
        prefix=_text(extra, "prefix", "") or "",
        format=_choice(extra, "format", "plain", FORMATS),
        timestamp_header=_header_name(extra, "timestamp_header", None),
        id_header=_header_name(extra, "id_header", None),
    )
    if scheme.format == "t_v1":
        if scheme.timestamp_header is not None:
            raise ValueError(
                f"hmac option timestamp_header={extra.get('timestamp_header')!r} cannot be "
                "combined with format='t_v1' (the timestamp travels in the signature header)"
            )
        if scheme.prefix:
            raise ValueError(
                f"hmac option prefix={scheme.prefix!r} cannot be combined with format='t_v1'"
            )
    return scheme


# --- signing -------------------------------------------------------------------------------


def _key(secret: str | bytes) -> bytes:
    return secret.encode() if isinstance(secret, str) else secret


def digest_text(scheme: HmacScheme, secret: str | bytes, content: bytes) -> str:
    raw = hmac_digest(_key(secret), content, scheme.algorithm)
    return raw.hex() if scheme.encoding == "hex" else base64.b64encode(raw).decode("ascii")


def _timestamp_text(timestamp: int | datetime) -> str:
    if isinstance(timestamp, datetime):
        return str(int(timestamp.timestamp()))
    return str(int(timestamp))


def sign(
    scheme: HmacScheme | Mapping[str, Any],
    secret: str | bytes | Sequence[str | bytes],
    body: bytes,
    *,
    timestamp: int | datetime | None = None,
    delivery_id: str | None = None,
) -> dict[str, str]:
    """The headers a sender configured like `scheme` would send (lower-cased names).

    `timestamp` is required when the scheme signs one (t_v1, or a timestamp_header). Several
    secrets give several `v1=` entries in t_v1 format (rotation); plain format takes one."""
    if not isinstance(scheme, HmacScheme):
        scheme = scheme_from_options(scheme)
    keys = [secret] if isinstance(secret, str | bytes) else list(secret)
    headers: dict[str, str] = {}
    if scheme.format == "t_v1":
        if timestamp is None:
            raise ValueError("format t_v1 needs a timestamp")
        stamp = _timestamp_text(timestamp)
        content = f"{stamp}.".encode() + body
        parts = [f"t={stamp}"] + [f"v1={digest_text(scheme, k, content)}" for k in keys]
        headers[scheme.header] = ",".join(parts)
    else:
        if len(keys) != 1:
            raise ValueError("the plain format carries exactly one signature")
        content = body
        if scheme.timestamp_header is not None:
            if timestamp is None:
                raise ValueError("a timestamp_header scheme needs a timestamp")
            stamp = _timestamp_text(timestamp)
            headers[scheme.timestamp_header] = stamp
            content = f"{stamp}.".encode() + body
        headers[scheme.header] = scheme.prefix + digest_text(scheme, keys[0], content)
    if scheme.id_header is not None and delivery_id is not None:
        headers[scheme.id_header] = delivery_id
    return headers


# --- verification --------------------------------------------------------------------------


def _normalise(scheme: HmacScheme, presented: str) -> str | None:
    """A presented digest in the form we compute, or None if it cannot be one."""
    value = presented.strip()
    if scheme.encoding == "hex":
        value = value.lower()
        try:
            bytes.fromhex(value)
        except ValueError:
            return None
        return value
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    return value


def _parse_t_v1(header_value: str) -> tuple[str, list[str]]:
    stamp: str | None = None
    signatures: list[str] = []
    for item in header_value.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            stamp = value.strip()
        elif key == "v1":
            signatures.append(value.strip())
    if stamp is None:
        raise SignatureError("signature header has no t= timestamp")
    if not signatures:
        raise SignatureError("signature header has no v1= signature")
    return stamp, signatures


class GenericHmacConnector:
    """A configurable HMAC in front of the ERP event schema (see the module docstring)."""

    vendor: ClassVar[str] = "hmac"
    kept_headers: ClassVar[tuple[str, ...]] = ("content-type",)

    def __init__(self, options: SourceOptions) -> None:
        self.options = options
        self.scheme = scheme_from_options(options.extra)

    def verify(self, request: Inbound, secrets: Sequence[bytes]) -> None:
        if not secrets:
            raise SignatureError("no secret configured")
        scheme = self.scheme
        header_value = request.require(scheme.header)
        if scheme.format == "t_v1":
            stamp, presented = _parse_t_v1(header_value)
            check_timestamp(
                stamp, request.received_at, self.options.tolerance_seconds, f"{scheme.header} t="
            )
            content = f"{stamp}.".encode() + request.body
        else:
            value = header_value.strip()
            if not value.startswith(scheme.prefix):
                raise SignatureError(f"{scheme.header} does not start with {scheme.prefix!r}")
            presented = [value[len(scheme.prefix) :]]
            content = request.body
            if scheme.timestamp_header is not None:
                stamp = request.require(scheme.timestamp_header).strip()
                check_timestamp(
                    stamp,
                    request.received_at,
                    self.options.tolerance_seconds,
                    scheme.timestamp_header,
                )
                content = f"{stamp}.".encode() + request.body
        candidates = [c for c in (_normalise(scheme, p) for p in presented) if c is not None]
        if not candidates:
            raise SignatureError(f"{scheme.header} holds no {scheme.encoding} digest")
        expected = [digest_text(scheme, secret, content) for secret in secrets]
        if not any_matches(candidates, expected):
            raise SignatureError("signature does not match")

    def delivery_id(self, request: Inbound) -> str | None:
        if self.scheme.id_header is None:
            return None
        value = request.header(self.scheme.id_header)
        return value.strip() if value and value.strip() else None

    def parse(self, body: bytes) -> erp_schema.ErpEvent:
        return erp_schema.parse_event(body)

    def map(self, receipt: StoredReceipt) -> list[EventDraft]:
        return erp_schema.map_receipt(receipt)
