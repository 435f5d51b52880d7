"""Vendor "quickbooks": QuickBooks Online (QBO) data-change webhooks.

Signature (developer.intuit.com, webhooks): `intuit-signature` = base64(HMAC-SHA256(verifier
token, raw body)). The verifier token is used as its UTF-8 bytes. There is no signed timestamp,
so there is no replay window: duplicates are absorbed by delivery ids and content hashes.

Two body formats are accepted:
- legacy: `{"eventNotifications": [{"realmId", "dataChangeEvent": {"entities": [{"name", "id",
  "operation", "lastUpdated", "deletedId"?}]}}]}`;
- CloudEvents (mandatory from 2026-05-15): a JSON array of `{"specversion": "1.0", "id",
  "source", "type": "qbo.<entity>.<operation>.v<n>", "time", "intuitentityid",
  "intuitaccountid", "data"?}`.

QBO notifications are thin: entity names and ids only. Mapping them to canonical events needs a
read-back through the QBO API, which is not configured yet, so map() raises NothingToMap naming
the entities; the receipts stay in the log (skipped) and can be replayed once read-back exists.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, ClassVar, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

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
    parse_json,
)
from handoff.connectors.erp_schema import Identifier, IsoTime, validation_reason
from handoff.domain.events import EventDraft

SIGNATURE_HEADER = "intuit-signature"

# CloudEvents verbs → the legacy operation names, so both formats read the same
_CE_OPERATIONS: Final[dict[str, str]] = {
    "created": "Create",
    "updated": "Update",
    "deleted": "Delete",
    "merged": "Merge",
    "voided": "Void",
    "emailed": "Emailed",
}
# CloudEvents entity segments are lower case; the QBO API names the entities in CamelCase
_ENTITY_NAMES: Final[dict[str, str]] = {
    name.lower(): name
    for name in (
        "Account",
        "Bill",
        "BillPayment",
        "Budget",
        "Class",
        "CreditMemo",
        "Currency",
        "Customer",
        "Department",
        "Deposit",
        "Employee",
        "Estimate",
        "Invoice",
        "Item",
        "JournalCode",
        "JournalEntry",
        "Payment",
        "PaymentMethod",
        "Preferences",
        "Purchase",
        "PurchaseOrder",
        "RefundReceipt",
        "SalesReceipt",
        "TaxAgency",
        "Term",
        "TimeActivity",
        "Transfer",
        "Vendor",
        "VendorCredit",
    )
}
_MAX_NAMED_ENTITIES = 10


# --- signing -------------------------------------------------------------------------------


def signature(verifier_token: str | bytes, body: bytes) -> str:
    key = verifier_token.encode() if isinstance(verifier_token, str) else verifier_token
    return b64(hmac_digest(key, body))


def sign(verifier_token: str | bytes, body: bytes) -> dict[str, str]:
    """The header QBO sends with `body`."""
    return {SIGNATURE_HEADER: signature(verifier_token, body)}


# --- payload -------------------------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


NonEmpty = Annotated[str, Field(min_length=1)]


class _LegacyEntity(_Model):
    """Field names are QBO's own (camelCase), so error paths match the payload."""

    name: NonEmpty
    id: Identifier
    operation: Literal["Create", "Update", "Delete", "Merge", "Void", "Emailed"]
    lastUpdated: IsoTime | None = None
    deletedId: Identifier | None = None


class _DataChangeEvent(_Model):
    entities: Annotated[list[_LegacyEntity], Field(min_length=1)]


class _LegacyNotification(_Model):
    realmId: Identifier
    dataChangeEvent: _DataChangeEvent


class _LegacyBody(_Model):
    eventNotifications: Annotated[list[_LegacyNotification], Field(min_length=1)]


class _CloudEvent(_Model):
    specversion: Literal["1.0"]
    id: NonEmpty
    source: NonEmpty
    type: Annotated[str, Field(pattern=r"^qbo\.[a-z0-9_]+\.[a-z_]+\.v[0-9]+$")]
    time: IsoTime | None = None
    intuitentityid: Identifier
    intuitaccountid: Identifier
    data: dict[str, Any] | None = None


_CLOUD_EVENTS = TypeAdapter(Annotated[list[_CloudEvent], Field(min_length=1)])


@dataclass(frozen=True, slots=True)
class EntityChange:
    """One changed QBO entity, the same for both formats (what a read-back will need)."""

    realm_id: str
    entity: str  # QBO API name, e.g. "Invoice"
    entity_id: str
    operation: str  # Create, Update, Delete, Merge, Void, Emailed
    occurred_at: datetime | None
    event_id: str | None = None  # CloudEvents id; None in the legacy format
    deleted_id: str | None = None  # Merge: the id merged away


@dataclass(frozen=True, slots=True)
class QboNotification:
    format: Literal["legacy", "cloudevents"]
    changes: tuple[EntityChange, ...]


def _from_cloud_event(event: _CloudEvent, index: int) -> EntityChange:
    _, entity, verb, _version = event.type.split(".")
    operation = _CE_OPERATIONS.get(verb)
    if operation is None:
        raise PayloadError(
            f"[{index}].type: unknown operation {verb!r}; expected one of "
            + ", ".join(sorted(_CE_OPERATIONS))
        )
    deleted = (event.data or {}).get("deletedid")
    return EntityChange(
        realm_id=event.intuitaccountid,
        entity=_ENTITY_NAMES.get(entity, entity[:1].upper() + entity[1:]),
        entity_id=event.intuitentityid,
        operation=operation,
        occurred_at=event.time,
        event_id=event.id,
        deleted_id=str(deleted) if isinstance(deleted, str | int) else None,
    )


def parse_notification(body: bytes) -> QboNotification:
    """Shape-check either format; PayloadError names the first offending path."""
    raw = parse_json(body)
    if isinstance(raw, list):
        try:
            events = _CLOUD_EVENTS.validate_python(raw)
        except ValidationError as exc:
            raise PayloadError(validation_reason(exc)) from None
        changes = tuple(_from_cloud_event(e, i) for i, e in enumerate(events))
        return QboNotification(format="cloudevents", changes=changes)
    if isinstance(raw, dict):
        try:
            legacy = _LegacyBody.model_validate(raw)
        except ValidationError as exc:
            raise PayloadError(validation_reason(exc)) from None
        return QboNotification(
            format="legacy",
            changes=tuple(
                EntityChange(
                    realm_id=n.realmId,
                    entity=e.name,
                    entity_id=e.id,
                    operation=e.operation,
                    occurred_at=e.lastUpdated,
                    deleted_id=e.deletedId,
                )
                for n in legacy.eventNotifications
                for e in n.dataChangeEvent.entities
            ),
        )
    raise PayloadError(
        f"expected a JSON object (legacy) or array (CloudEvents), got {type(raw).__name__}"
    )


def cloud_event_delivery_id(ids: Sequence[str]) -> str:
    """One CloudEvents id as is; a batch as a hash of its ids (the batch is what is retried)."""
    if len(ids) == 1:
        return ids[0]
    joined = "\n".join(ids).encode()
    return "qbo-ce:" + hashlib.sha256(joined).hexdigest()


def describe(changes: Sequence[EntityChange]) -> str:
    """Names the changed entities, e.g. `Invoice 1234 Create, Customer 56 Update` (capped)."""
    named = [f"{c.entity} {c.entity_id} {c.operation}" for c in changes[:_MAX_NAMED_ENTITIES]]
    rest = len(changes) - _MAX_NAMED_ENTITIES
    return ", ".join(named) + (f" and {rest} more" if rest > 0 else "")


# --- connector -----------------------------------------------------------------------------


class QuickBooksConnector:
    """QBO change notifications: verified and logged; mapped once read-back exists."""

    vendor: ClassVar[str] = "quickbooks"
    kept_headers: ClassVar[tuple[str, ...]] = ("content-type",)

    def __init__(self, options: SourceOptions) -> None:
        self.options = options

    def verify(self, request: Inbound, secrets: Sequence[bytes]) -> None:
        if not secrets:
            raise SignatureError("no verifier token configured")
        presented = request.require(SIGNATURE_HEADER).strip()
        expected = [signature(secret, request.body) for secret in secrets]
        if not any_matches([presented], expected):
            raise SignatureError("signature does not match")

    def delivery_id(self, request: Inbound) -> str | None:
        """CloudEvents carry ids; the legacy format has none (the gateway hashes the body)."""
        try:
            notification = parse_notification(request.body)
        except PayloadError:
            return None
        ids = [c.event_id for c in notification.changes if c.event_id]
        return cloud_event_delivery_id(ids) if ids else None

    def parse(self, body: bytes) -> QboNotification:
        return parse_notification(body)

    def map(self, receipt: StoredReceipt) -> list[EventDraft]:
        notification = parse_notification(receipt.body)
        raise NothingToMap(
            f"thin QuickBooks notification: {describe(notification.changes)}; "
            "read-back not configured"
        )
