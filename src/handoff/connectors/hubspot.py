"""HubSpot: signed webhook batches of CRM contact events.

Signatures (vendors.md §1; developers.hubspot.com, "Validating requests"):

- v3, preferred: `X-HubSpot-Signature-v3` = base64(HMAC-SHA256(client secret,
  method + URI + body + timestamp)), timestamp = `X-HubSpot-Request-Timestamp` (ms, signed as sent).
  HubSpot signs the URI with these percent-escapes decoded: %3A : %2F / %3F ? %40 @ %21 ! %24 $
  %27 ' %28 ( %29 ) %2A * %2C , %3B ; — we decode exactly those (hex case-insensitive, one pass, so
  `%253A` stays as sent) and nothing else. Rejected when older than `options.tolerance_seconds`
  (default 300, HubSpot's 5 minutes) or more than MAX_FUTURE_SKEW_SECONDS (60 s) in the future:
  HubSpot's clock and ours may disagree by a little, never by minutes, and a far-future timestamp
  would otherwise stay replayable until it became stale.
- legacy `X-HubSpot-Signature` per `X-HubSpot-Signature-Version`: v1 = hex SHA-256(secret + body),
  v2 = hex SHA-256(secret + method + URI + body) with the URI exactly as sent (no decoding).
  These carry no timestamp, so they can be replayed; a replay carries the same eventIds, so it
  dedupes on `delivery_id`. Set `options.extra["require_v3"] = True` to refuse them outright.

The URI is `options.public_url` when set (the exact URL configured in HubSpot, query string
included; what the proxy in front of us rewrote does not matter), else the request URL.

Mapping: each array element is one event.
- `contact.creation` → customer.profile.captured (thin: only the contact id; HubSpot sends no
  properties, a read-back fills them later).
- `contact.propertyChange` on an identifying property (email, phone, firstname, lastname, zip) →
  customer.profile.captured carrying that one field; a cleared identifying property is skipped.
- any other `contact.propertyChange` → customer.attributes.changed. The attribute name comes from
  the property map (defaults vip_status→is_vip, loyalty_tier→tier; `options.extra["property_map"]`
  is merged over the defaults). Unmapped properties are kept as `hubspot:<property>`: a signed
  fact is never dropped silently, and the prefix keeps it out of every canonical rule until
  someone maps it. Canonical names starting with `is_` are booleans ("true"/"false"); an empty
  value means the property was cleared (None).
- `object.creation` / `object.propertyChange` with objectTypeId "0-1" (contacts) are treated as
  the contact.* events above.
- everything else (contact.deletion, contact.merge, contact.privacyDeletion, other objects) is
  skipped; a batch with nothing mapped raises NothingToMap.

Read-back: HubSpot's webhooks carry the contact id alone, so a contact known by nothing else is
read back through the CRM API (`read_contacts`: `POST /crm/v3/objects/contacts/batch/read`,
`options.api_base_url` + the private app token in `options.api_token_env`), and each contact is
written into the receive log by handoff itself (`READ_BACK_HEADER`), mapped here into a full
customer.profile.captured.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import httpx
from pydantic import ValidationError

from handoff.connectors.base import (
    ConnectorFactory,
    Inbound,
    NothingToMap,
    PayloadError,
    SignatureError,
    SourceOptions,
    StoredReceipt,
    any_matches,
    b64,
    hmac_digest,
    invalid_event_reason,
    parse_json,
    required_id,
)
from handoff.domain.events import (
    AttributesBody,
    CustomerRef,
    EventDraft,
    EventType,
    ProfileBody,
)

SIGNATURE_V3_HEADER = "X-HubSpot-Signature-v3"
TIMESTAMP_HEADER = "X-HubSpot-Request-Timestamp"
SIGNATURE_HEADER = "X-HubSpot-Signature"
VERSION_HEADER = "X-HubSpot-Signature-Version"

MAX_FUTURE_SKEW_SECONDS = 60
"""How far ahead of our clock a v3 timestamp may be (clock skew), in seconds."""

DEFAULT_PROPERTY_MAP: Mapping[str, str] = {"vip_status": "is_vip", "loyalty_tier": "tier"}
"""HubSpot contact property → canonical attribute name (extended by options.extra)."""

IDENTIFYING_PROPERTIES: Mapping[str, str] = {
    "email": "email",
    "phone": "phone",
    "firstname": "first_name",
    "lastname": "last_name",
    "zip": "zip",
}
"""HubSpot contact property → ProfileBody/CustomerRef field."""

CONTACT_OBJECT_TYPE_ID = "0-1"
MAX_DELIVERY_ID_LENGTH = 200

_DECODED_IN_V3 = {
    "%3A": ":",
    "%2F": "/",
    "%3F": "?",
    "%40": "@",
    "%21": "!",
    "%24": "$",
    "%27": "'",
    "%28": "(",
    "%29": ")",
    "%2A": "*",
    "%2C": ",",
    "%3B": ";",
}
_ENCODED_IN_V3 = re.compile("|".join(re.escape(code) for code in _DECODED_IN_V3), re.IGNORECASE)
_TRUE = frozenset({"true", "yes", "1"})
_FALSE = frozenset({"false", "no", "0"})


# --- signing (tests, demo, simulator) -----------------------------------------------------------


def v3_uri(uri: str) -> str:
    """The URI as HubSpot puts it into the v3 source string (the listed escapes decoded)."""
    return _ENCODED_IN_V3.sub(lambda match: _DECODED_IN_V3[match.group(0).upper()], uri)


def signature_v1(secret: bytes, body: bytes) -> str:
    return hashlib.sha256(secret + body).hexdigest()


def signature_v2(secret: bytes, method: str, uri: str, body: bytes) -> str:
    return hashlib.sha256(secret + method.upper().encode() + uri.encode() + body).hexdigest()


def signature_v3(secret: bytes, method: str, uri: str, body: bytes, timestamp_ms: int | str) -> str:
    message = method.upper().encode() + v3_uri(uri).encode() + body + str(timestamp_ms).encode()
    return b64(hmac_digest(secret, message))


def sign_v1(secret: bytes, body: bytes) -> dict[str, str]:
    return {SIGNATURE_HEADER: signature_v1(secret, body), VERSION_HEADER: "v1"}


def sign_v2(secret: bytes, method: str, uri: str, body: bytes) -> dict[str, str]:
    return {SIGNATURE_HEADER: signature_v2(secret, method, uri, body), VERSION_HEADER: "v2"}


def sign_v3(secret: bytes, method: str, uri: str, body: bytes, timestamp_ms: int) -> dict[str, str]:
    return {
        SIGNATURE_V3_HEADER: signature_v3(secret, method, uri, body, timestamp_ms),
        TIMESTAMP_HEADER: str(timestamp_ms),
    }


def sign(secret: bytes, method: str, uri: str, body: bytes, timestamp_ms: int) -> dict[str, str]:
    """What HubSpot's webhooks send: the v3 signature plus the legacy v1 one."""
    return {**sign_v3(secret, method, uri, body, timestamp_ms), **sign_v1(secret, body)}


# --- the connector ------------------------------------------------------------------------------


class HubSpotConnector:
    """HubSpot contact webhooks → profile captures and attribute changes."""

    vendor: ClassVar[str] = "hubspot"
    # Timestamp and version say how the request was verified; the signatures themselves are not
    # kept (a leaked v1/v2 signature plus the stored body would verify forever).
    kept_headers: ClassVar[tuple[str, ...]] = (
        "x-hubspot-request-timestamp",
        "x-hubspot-signature-version",
    )

    def __init__(self, options: SourceOptions) -> None:
        self.options = options
        self.require_v3 = options.extra.get("require_v3") is True
        extra_map = options.extra.get("property_map") or {}
        if not isinstance(extra_map, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in extra_map.items()
        ):
            raise ValueError("options.extra['property_map'] must map strings to strings")
        self.property_map: dict[str, str] = {**DEFAULT_PROPERTY_MAP, **extra_map}
        api, token_env = options.extra.get("api_base_url"), options.extra.get("api_token_env")
        if (api is None) != (token_env is None):
            raise ValueError("options api_base_url and api_token_env go together (read-back)")
        if api is not None and not (
            isinstance(api, str) and api.startswith(("http://", "https://"))
        ):
            raise ValueError("options.api_base_url must be an http(s) URL")
        if token_env is not None and not (isinstance(token_env, str) and token_env):
            raise ValueError("options.api_token_env must name an environment variable")
        self.api_base_url: str | None = api
        self.api_token_env: str | None = token_env

    # --- gateway side ------------------------------------------------------------------------

    def verify(self, request: Inbound, secrets: Sequence[bytes]) -> None:
        if not secrets:
            raise SignatureError("no secret configured")
        uri = self.options.public_url or request.url
        v3 = request.header(SIGNATURE_V3_HEADER)
        if v3:
            self._verify_v3(request, uri, v3.strip(), secrets)
            return
        if self.require_v3 or not request.header(SIGNATURE_HEADER):
            raise SignatureError(f"missing header {SIGNATURE_V3_HEADER}")
        presented = request.require(SIGNATURE_HEADER).strip().lower()
        version = request.require(VERSION_HEADER).strip().lower()
        if version == "v1":
            expected = [signature_v1(secret, request.body) for secret in secrets]
        elif version == "v2":
            expected = [
                signature_v2(secret, request.method, uri, request.body) for secret in secrets
            ]
        else:
            raise SignatureError(f"unsupported {VERSION_HEADER} (expected v1 or v2)")
        if not any_matches([presented], expected):
            raise SignatureError("signature mismatch")

    def _verify_v3(
        self, request: Inbound, uri: str, presented: str, secrets: Sequence[bytes]
    ) -> None:
        raw = request.require(TIMESTAMP_HEADER).strip()
        if not (raw.isascii() and raw.isdigit() and len(raw) <= 16):
            raise SignatureError(f"invalid {TIMESTAMP_HEADER} (expected milliseconds)")
        expected = [
            signature_v3(secret, request.method, uri, request.body, raw) for secret in secrets
        ]
        if not any_matches([presented], expected):
            raise SignatureError("signature mismatch")
        now_ms = _epoch_ms(request.received_at)
        age_ms = now_ms - int(raw)
        tolerance = self.options.tolerance_seconds
        if age_ms > tolerance * 1000:
            raise SignatureError(f"timestamp {age_ms // 1000} s old, tolerance {tolerance} s")
        if -age_ms > MAX_FUTURE_SKEW_SECONDS * 1000:
            raise SignatureError("timestamp in the future")

    def delivery_id(self, request: Inbound) -> str | None:
        """HubSpot sends no delivery header and bumps `attemptNumber` in the body on each retry,
        so the batch's sorted eventIds are the only stable name for it."""
        try:
            events = self.parse(request.body)
        except PayloadError:
            return None
        ids = sorted({str(event["eventId"]) for event in events})
        joined = ",".join(ids)
        if len(joined) > MAX_DELIVERY_ID_LENGTH:
            return "events:sha256:" + hashlib.sha256(joined.encode()).hexdigest()
        return "events:" + joined

    def parse(self, body: bytes) -> list[dict[str, Any]]:
        data = parse_json(body)
        if not isinstance(data, list):
            raise PayloadError(f"expected a JSON array of events, got {type(data).__name__}")
        if not data:
            raise PayloadError("event array is empty")
        for index, event in enumerate(data):
            if not isinstance(event, dict):
                raise PayloadError(f"event [{index}] is not an object")
            event_id = event.get("eventId")
            if event_id is None:
                raise PayloadError(f"event [{index}] has no eventId")
            if isinstance(event_id, bool) or not isinstance(event_id, int | str) or event_id == "":
                raise PayloadError(f"event [{index}] eventId is not an id")
            subscription = event.get("subscriptionType")
            if subscription is None:
                raise PayloadError(f"event [{index}] has no subscriptionType")
            if not isinstance(subscription, str):
                raise PayloadError(f"event [{index}] subscriptionType is not a string")
        return data

    # --- processor side ----------------------------------------------------------------------

    def map(self, receipt: StoredReceipt) -> list[EventDraft]:
        if receipt.headers.get(READ_BACK_HEADER) == "contact":
            return [self._map_read_back(receipt)]
        events = self.parse(receipt.body)
        drafts: list[EventDraft] = []
        skipped: list[str] = []
        for index, event in enumerate(events):
            try:
                draft = self._map_event(index, event, receipt.source)
            except ValidationError as exc:
                raise PayloadError(f"event [{index}]: {invalid_event_reason(exc)}") from exc
            if draft is None:
                skipped.append(str(event["subscriptionType"])[:80])
            else:
                drafts.append(draft)
        if not drafts:
            kinds = sorted(set(skipped))
            listed = ", ".join(kinds[:5]) + (", …" if len(kinds) > 5 else "")
            raise NothingToMap(f"no mappable HubSpot events ({listed})")
        return drafts

    def _map_event(self, index: int, event: dict[str, Any], source: str) -> EventDraft | None:
        kind = _contact_event_kind(event)
        if kind is None:
            return None
        where = f"event [{index}]"
        object_id = required_id(event.get("objectId"), f"{where} objectId")
        occurred_ms = event.get("occurredAt")
        occurred_at = _from_epoch_ms(occurred_ms, f"{where} occurredAt")
        source_event_id = str(event["eventId"])
        if kind == "creation":
            return EventDraft(
                source_event_id=source_event_id,
                type=EventType.PROFILE_CAPTURED,
                occurred_at=occurred_at,
                customer=CustomerRef(system=source, external_id=object_id),
                body=ProfileBody(channel=self.options.role),
            )
        name = event.get("propertyName")
        if not isinstance(name, str) or not name:
            raise PayloadError(f"{where} has no propertyName")
        value = _property_value(event.get("propertyValue"), f"{where} propertyValue")
        field = IDENTIFYING_PROPERTIES.get(name)
        if field is not None:
            if value is None:
                return None  # a cleared identifier captures nothing
            return EventDraft(
                source_event_id=source_event_id,
                type=EventType.PROFILE_CAPTURED,
                occurred_at=occurred_at,
                customer=CustomerRef(system=source, external_id=object_id, **{field: value}),
                body=ProfileBody(channel=self.options.role, **{field: value}),
            )
        attribute = self.property_map.get(name, f"hubspot:{name}")
        typed: str | bool | None = value
        if attribute.startswith("is_") and value is not None:
            typed = _boolean(value, f"{where} property {name}")
        return EventDraft(
            source_event_id=source_event_id,
            type=EventType.ATTRIBUTES_CHANGED,
            occurred_at=occurred_at,
            customer=CustomerRef(system=source, external_id=object_id),
            body=AttributesBody(
                attributes={attribute: typed},
                version=str(occurred_ms),
                updated_at=occurred_at,
            ),
        )

    def _map_read_back(self, receipt: StoredReceipt) -> EventDraft:
        contact = parse_json(receipt.body)
        if not isinstance(contact, dict) or not isinstance(contact.get("properties"), dict):
            raise PayloadError("a read-back contact needs an object with properties")
        contact_id = required_id(contact.get("id"), "contact id")
        props: dict[str, Any] = contact["properties"]
        fields = {
            name: text
            for prop, name in IDENTIFYING_PROPERTIES.items()
            if isinstance(text := props.get(prop), str) and text.strip()
        }
        updated = contact.get("updatedAt") or props.get("lastmodifieddate")
        occurred_at = receipt.received_at
        if isinstance(updated, str):
            try:
                occurred_at = datetime.fromisoformat(updated.replace("Z", "+00:00"))
            except ValueError as exc:
                raise PayloadError(f"contact updatedAt {updated[:40]!r} is not a time") from exc
        return EventDraft(
            source_event_id=f"read-back:{contact_id}:{updated or receipt.delivery_id}",
            type=EventType.PROFILE_CAPTURED,
            occurred_at=occurred_at,
            customer=CustomerRef(system=receipt.source, external_id=contact_id, **fields),
            body=ProfileBody(channel=self.options.role, **fields),
        )


_factory_check: ConnectorFactory = HubSpotConnector  # static check against the protocol

READ_BACK_HEADER = "x-handoff-read-back"
"""Marks a receipt handoff wrote itself from the CRM API (value "contact"); never from outside:
the gateway stores only `kept_headers`, and this is not one of them."""

READ_PROPERTIES = ("email", "firstname", "lastname", "phone", "zip", "lastmodifieddate")


def read_contacts(
    client: httpx.Client, base_url: str, token: str, ids: Sequence[str]
) -> tuple[list[dict[str, Any]], list[str]]:
    """Contacts by id through `batch/read` (at most 100 per call): (found, ids not found).

    Raises httpx.HTTPError on transport errors and on any status but 200/207."""
    found: list[dict[str, Any]] = []
    missing: list[str] = []
    url = f"{base_url.rstrip('/')}/crm/v3/objects/contacts/batch/read"
    for start in range(0, len(ids), 100):
        chunk = list(ids[start : start + 100])
        response = client.post(
            url,
            json={"properties": list(READ_PROPERTIES), "inputs": [{"id": i} for i in chunk]},
            headers={"Authorization": f"Bearer {token}"},
        )
        if response.status_code not in (200, 207):
            response.raise_for_status()
            raise httpx.HTTPStatusError(
                f"unexpected status {response.status_code}",
                request=response.request,
                response=response,
            )
        data = response.json()
        results = [r for r in data.get("results") or [] if isinstance(r, dict)]
        found += results
        got = {str(r.get("id")) for r in results}
        missing += [i for i in chunk if i not in got]
    return found, missing


# --- helpers -----------------------------------------------------------------------------------


def _contact_event_kind(event: dict[str, Any]) -> str | None:
    """The action ("creation" or "propertyChange") of a contact event, else None."""
    subscription = event["subscriptionType"]
    family, _, action = subscription.partition(".")
    if family == "object" and event.get("objectTypeId") != CONTACT_OBJECT_TYPE_ID:
        return None
    if family not in ("contact", "object"):
        return None
    return action if action in ("creation", "propertyChange") else None


def _epoch_ms(moment: datetime) -> int:
    if moment.tzinfo is None:  # the hub's clock is UTC; never let a naive value crash verify
        moment = moment.replace(tzinfo=UTC)
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def _from_epoch_ms(value: Any, where: str) -> datetime:
    if value is None:
        raise PayloadError(f"{where} is missing")
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not 0 <= value < 253_402_300_800_000
    ):
        raise PayloadError(f"{where} is not epoch milliseconds")
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=value)


def _property_value(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return value.strip() or None
    raise PayloadError(f"{where} is not a string")


def _boolean(value: str, where: str) -> bool:
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise PayloadError(f"{where} is not a boolean (expected true or false)")
