"""Vendor "zendesk": Zendesk Support webhooks (the helpdesk side of a customer).

Signature (developer.zendesk.com/documentation/webhooks/verifying):
`X-Zendesk-Webhook-Signature` = base64(HMAC-SHA256(signing secret, TIMESTAMP + BODY)), where
TIMESTAMP is the `X-Zendesk-Webhook-Signature-Timestamp` header exactly as sent (ISO 8601, e.g.
`2021-03-25T05:09:27Z`) and BODY the raw body, possibly empty. The signing secret is used as
its UTF-8 bytes, not decoded.

Zendesk states no replay window. handoff applies the source's `tolerance_seconds` (default 300)
to the signature timestamp, both stale and future, so a captured request cannot be replayed
later; a timestamp without an offset is read as UTC.

Mapping (event webhooks, `zen:event-type:user.*`; the `zen:event-type/` spelling is accepted):
- `user.created`, `user.name_changed`, `user.details_changed`, `user.external_id_changed`,
  `user.identity_created`, `user.identity_changed` → `customer.profile.captured` with the
  detail's email, external_id = Zendesk user id (`detail.id`), and names split from `name`
  (or, for `user.name_changed`, the new name in `event.current`) at the first space;
- `user.custom_field_changed` → `customer.attributes.changed` with one attribute named
  `zendesk.<field key>` (or `zendesk.field_<field id>` when the payload carries no key) set to
  `event.current`; lists become `;`-joined text, decimals text;
- users whose `detail.role` is present and not `end-user` (agents, admins) are not customers;
  every other event type → NothingToMap, kept as `skipped`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, ClassVar, Final

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from handoff.connectors.base import (
    Inbound,
    NothingToMap,
    PayloadError,
    SignatureError,
    SourceOptions,
    StoredReceipt,
    any_matches,
    b64,
    hmac_digest,
    parse_json_object,
)
from handoff.connectors.erp_schema import Identifier, IsoTime, validation_reason
from handoff.domain.events import (
    AttributesBody,
    CustomerRef,
    EventDraft,
    EventType,
    ProfileBody,
)

SIGNATURE_HEADER = "x-zendesk-webhook-signature"
TIMESTAMP_HEADER = "x-zendesk-webhook-signature-timestamp"
ATTRIBUTE_PREFIX = "zendesk."

_TYPE_PREFIXES: Final = ("zen:event-type:", "zen:event-type/")
PROFILE_EVENTS: Final = frozenset(
    {
        "user.created",
        "user.name_changed",
        "user.details_changed",
        "user.external_id_changed",
        "user.identity_created",
        "user.identity_changed",
    }
)
CUSTOM_FIELD_EVENT: Final = "user.custom_field_changed"


# --- signing -------------------------------------------------------------------------------


def timestamp_text(when: datetime) -> str:
    """The header's format as Zendesk sends it: ISO 8601 seconds in UTC with Z."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def signature(secret: str | bytes, timestamp: str, body: bytes) -> str:
    key = secret.encode() if isinstance(secret, str) else secret
    return b64(hmac_digest(key, timestamp.encode() + body))


def sign(secret: str | bytes, timestamp: datetime | str, body: bytes) -> dict[str, str]:
    """The two Zendesk signature headers for `body` (lower-cased, as the gateway stores them)."""
    stamp = timestamp if isinstance(timestamp, str) else timestamp_text(timestamp)
    return {SIGNATURE_HEADER: signature(secret, stamp, body), TIMESTAMP_HEADER: stamp}


# --- payload -------------------------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class _Envelope(_Model):
    type: Annotated[str, Field(min_length=1)]
    id: Identifier | None = None
    time: IsoTime | None = None
    detail: dict[str, Any] | None = None
    event: dict[str, Any] | None = None


class ZendeskUser(_Model):
    """The `detail` of a user event (Zendesk returns ids as strings)."""

    id: Identifier
    email: str | None = None
    name: str | None = None
    external_id: str | None = None
    role: str | None = None


class ZendeskField(_Model):
    id: Identifier | None = None
    key: str | None = None
    title: str | None = None
    type: str | None = None


AttributeValue = str | int | bool | None


class _FieldChange(_Model):
    field: ZendeskField
    current: Any = None


@dataclass(frozen=True, slots=True)
class ZendeskEvent:
    """A shape-checked Zendesk event; `user` is set for user events, `change` for field ones."""

    type: str  # without the zen:event-type prefix, e.g. "user.created"
    id: str | None
    time: datetime | None
    user: ZendeskUser | None = None
    field_name: str | None = None
    field_value: AttributeValue = None
    event: dict[str, Any] = field(default_factory=dict)


def _short_type(raw: str) -> str:
    for prefix in _TYPE_PREFIXES:
        if raw.startswith(prefix):
            return raw[len(prefix) :]
    return raw


def _attribute_value(value: Any) -> AttributeValue:
    """Zendesk field values → the attribute value types the hub stores, losing nothing:
    decimals become text, multi-select lists `;`-joined text, anything else its JSON text."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, list) and all(isinstance(v, str | int) for v in value):
        return ";".join(str(v) for v in value)
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def parse_event(body: bytes) -> ZendeskEvent:
    raw = parse_json_object(body)
    try:
        envelope = _Envelope.model_validate(raw)
    except ValidationError as exc:
        raise PayloadError(validation_reason(exc)) from None
    short = _short_type(envelope.type)
    event = envelope.event or {}
    if not short.startswith("user."):
        return ZendeskEvent(type=short, id=envelope.id, time=envelope.time, event=event)
    if envelope.detail is None:
        raise PayloadError("detail: field required for user events")
    try:
        user = ZendeskUser.model_validate(envelope.detail)
    except ValidationError as exc:
        raise PayloadError(validation_reason(exc, "detail")) from None
    if short != CUSTOM_FIELD_EVENT:
        return ZendeskEvent(type=short, id=envelope.id, time=envelope.time, user=user, event=event)
    try:
        change = _FieldChange.model_validate(event)
    except ValidationError as exc:
        raise PayloadError(validation_reason(exc, "event")) from None
    if change.field.key:
        name = ATTRIBUTE_PREFIX + change.field.key
    elif change.field.id:
        name = f"{ATTRIBUTE_PREFIX}field_{change.field.id}"
    else:
        raise PayloadError("event.field: needs a key or an id")
    return ZendeskEvent(
        type=short,
        id=envelope.id,
        time=envelope.time,
        user=user,
        field_name=name,
        field_value=_attribute_value(change.current),
        event=event,
    )


def _split_name(name: str | None) -> tuple[str | None, str | None]:
    """Zendesk keeps one `name`; split at the first space (identity scoring is tolerant)."""
    if not name or not name.strip():
        return None, None
    first, _, last = name.strip().partition(" ")
    return first, (last.strip() or None)


def _blank_to_none(value: str | None) -> str | None:
    return value if value and value.strip() else None


# --- connector -----------------------------------------------------------------------------


class ZendeskConnector:
    """Zendesk user events → profiles and attribute changes (helpdesk side of identity)."""

    vendor: ClassVar[str] = "zendesk"
    kept_headers: ClassVar[tuple[str, ...]] = (
        TIMESTAMP_HEADER,
        "x-zendesk-account-id",
        "x-zendesk-webhook-id",
        "x-zendesk-webhook-invocation-id",
        "content-type",
    )

    def __init__(self, options: SourceOptions) -> None:
        self.options = options

    def verify(self, request: Inbound, secrets: Sequence[bytes]) -> None:
        if not secrets:
            raise SignatureError("no secret configured")
        presented = request.require(SIGNATURE_HEADER).strip()
        stamp = request.require(TIMESTAMP_HEADER)
        try:
            signed_at = datetime.fromisoformat(stamp.strip())
        except ValueError:
            raise SignatureError(f"{TIMESTAMP_HEADER} is not an ISO 8601 time") from None
        if signed_at.tzinfo is None:
            signed_at = signed_at.replace(tzinfo=UTC)
        now = request.received_at
        if now.tzinfo is None:
            now = now.replace(tzinfo=UTC)
        tolerance = timedelta(seconds=self.options.tolerance_seconds)
        skew = signed_at - now
        if skew < -tolerance:
            raise SignatureError(
                f"{TIMESTAMP_HEADER} is {int(-skew.total_seconds())} s old; "
                f"tolerance is {self.options.tolerance_seconds} s"
            )
        if skew > tolerance:
            raise SignatureError(
                f"{TIMESTAMP_HEADER} is {int(skew.total_seconds())} s in the future; "
                f"tolerance is {self.options.tolerance_seconds} s"
            )
        expected = [signature(secret, stamp, request.body) for secret in secrets]
        if not any_matches([presented], expected):
            raise SignatureError("signature does not match")

    def delivery_id(self, request: Inbound) -> str | None:
        """The event's own `id` (stable across Zendesk's retries); None for bodies without one."""
        try:
            raw = parse_json_object(request.body)
        except PayloadError:
            return None
        value = raw.get("id")
        if isinstance(value, str) and value.strip():
            return value.strip()
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return None

    def parse(self, body: bytes) -> ZendeskEvent:
        return parse_event(body)

    def map(self, receipt: StoredReceipt) -> list[EventDraft]:
        event = parse_event(receipt.body)
        user = event.user
        if user is None or (event.type not in PROFILE_EVENTS and event.type != CUSTOM_FIELD_EVENT):
            raise NothingToMap(f"Zendesk event {event.type} is not mapped")
        if user.role is not None and user.role != "end-user":
            raise NothingToMap(f"Zendesk user {user.id} has role {user.role!r}, not a customer")
        occurred = event.time or receipt.received_at
        source_event_id = event.id or receipt.delivery_id
        name = user.name
        if event.type == "user.name_changed" and isinstance(event.event.get("current"), str):
            name = event.event["current"]
        first, last = _split_name(name)
        email = _blank_to_none(user.email)
        ref = CustomerRef(
            system=receipt.source,
            external_id=user.id,
            email=email,
            first_name=first,
            last_name=last,
        )
        try:
            if event.type == CUSTOM_FIELD_EVENT:
                if event.field_name is None:  # pragma: no cover - parse_event guarantees it
                    raise PayloadError("event.field: needs a key or an id")
                return [
                    EventDraft(
                        source_event_id=source_event_id,
                        type=EventType.ATTRIBUTES_CHANGED,
                        occurred_at=occurred,
                        customer=ref,
                        body=AttributesBody(
                            attributes={event.field_name: event.field_value},
                            updated_at=occurred,
                        ),
                    )
                ]
            return [
                EventDraft(
                    source_event_id=source_event_id,
                    type=EventType.PROFILE_CAPTURED,
                    occurred_at=occurred,
                    customer=ref,
                    body=ProfileBody(
                        email=email, first_name=first, last_name=last, channel="helpdesk"
                    ),
                )
            ]
        except ValidationError as exc:  # pragma: no cover - the parse above enforces the shape
            raise PayloadError(validation_reason(exc)) from None
