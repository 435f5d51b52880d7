"""Canonical events: the one data contract every vendor payload is mapped into.

Every inbound payload becomes zero or more of these (ARCHITECTURE.md §4). Money is integer minor
units with a currency; time is timezone-aware UTC. Connectors build them; the pipeline stores them;
identity, the ledger and delivery consume them without knowing any vendor's field names.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field


class EventType(StrEnum):
    PROFILE_CAPTURED = "customer.profile.captured"
    ATTRIBUTES_CHANGED = "customer.attributes.changed"
    ORDER_PLACED = "order.placed"
    ORDER_PAID = "order.paid"
    ORDER_FULFILLED = "order.fulfilled"
    ORDER_CANCELLED = "order.cancelled"
    ORDER_REFUNDED = "order.refunded"
    POINTS_RECORDED = "loyalty.points.recorded"


ORDER_TYPES = frozenset(
    {
        EventType.ORDER_PLACED,
        EventType.ORDER_PAID,
        EventType.ORDER_FULFILLED,
        EventType.ORDER_CANCELLED,
        EventType.ORDER_REFUNDED,
    }
)


def _require_utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("timestamp must be timezone-aware")
    return value.astimezone(UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_require_utc)]
MinorUnits = int
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CustomerRef(_Model):
    """Who an event is about, as the source system knows them (identity resolves it later)."""

    system: str
    external_id: str | None = None
    email: str | None = None
    phone: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    zip: str | None = None


class ProfileBody(_Model):
    email: str | None = None
    phone: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    zip: str | None = None
    birth_date: str | None = None
    accepts_marketing: bool | None = None
    tags: tuple[str, ...] = ()
    channel: str | None = None  # "pos", "online", "crm" … where the profile was captured


class AttributesBody(_Model):
    """Attribute values as the source states them; `version` orders competing updates."""

    attributes: dict[str, str | int | bool | None]
    version: str | None = None
    updated_at: UtcDatetime | None = None


class OrderLine(_Model):
    sku: str | None = None
    quantity: int
    unit_price: MinorUnits
    discount: MinorUnits = 0
    category: str | None = None
    gift_card: bool = False
    line_id: str | None = None


class RefundLine(_Model):
    line_id: str | None = None
    sku: str | None = None
    quantity: int
    amount: MinorUnits


class OrderBody(_Model):
    """An order at one point of its life. Amounts are the order's totals in minor units.

    `net_merchandise` is what loyalty programs earn on: line prices less discounts, with tax,
    shipping and gift cards excluded.
    """

    order_id: str
    currency: Currency
    subtotal: MinorUnits
    discounts: MinorUnits = 0
    tax: MinorUnits = 0
    shipping: MinorUnits = 0
    gift_cards: MinorUnits = 0
    net_merchandise: MinorUnits
    total: MinorUnits
    channel: str | None = None
    location_id: str | None = None
    lines: tuple[OrderLine, ...] = ()
    # only for order.refunded
    refund_id: str | None = None
    refund_amount: MinorUnits | None = None
    refund_lines: tuple[RefundLine, ...] = ()


class PointsBody(_Model):
    """What the loyalty platform itself says it recorded (its own log, never the expectation)."""

    member_id: str
    delta: int
    balance: int | None = None
    pending: int | None = None
    reason: str | None = None
    order_ref: str | None = None
    tier: str | None = None


Body = ProfileBody | AttributesBody | OrderBody | PointsBody

BODY_FOR_TYPE: dict[EventType, type[_Model]] = {
    EventType.PROFILE_CAPTURED: ProfileBody,
    EventType.ATTRIBUTES_CHANGED: AttributesBody,
    EventType.POINTS_RECORDED: PointsBody,
    **{t: OrderBody for t in ORDER_TYPES},
}


class CanonicalEvent(_Model):
    """One fact from one source system, in the hub's vocabulary."""

    event_id: str
    source: str
    source_event_id: str
    type: EventType
    occurred_at: UtcDatetime
    received_at: UtcDatetime
    customer: CustomerRef | None = None
    body: Body

    def body_json(self) -> dict[str, Any]:
        return self.body.model_dump(mode="json")


class EventDraft(_Model):
    """What a connector's mapping produces; the pipeline stamps ids and receipt time."""

    source_event_id: str
    type: EventType
    occurred_at: UtcDatetime
    customer: CustomerRef | None = None
    body: Body

    def model_post_init(self, __context: Any) -> None:
        expected = BODY_FOR_TYPE[self.type]
        if not isinstance(self.body, expected):
            raise ValueError(
                f"{self.type} needs a {expected.__name__}, got {type(self.body).__name__}"
            )

    def stamp(self, *, source: str, received_at: datetime) -> CanonicalEvent:
        return CanonicalEvent(
            event_id=event_id_for(source, self.source_event_id, self.type),
            source=source,
            source_event_id=self.source_event_id,
            type=self.type,
            occurred_at=self.occurred_at,
            received_at=received_at,
            customer=self.customer,
            body=self.body,
        )


def event_id_for(source: str, source_event_id: str, type_: EventType | str) -> str:
    """A deterministic hub id, so the same fact mapped twice gets the same id (idempotency)."""
    digest = hashlib.sha256(f"{source}\x1f{source_event_id}\x1f{type_}".encode()).hexdigest()
    return f"evt_{digest[:26]}"


def parse_body(type_: EventType, data: dict[str, Any]) -> Body:
    model = BODY_FOR_TYPE[type_]
    return model.model_validate(data)  # type: ignore[return-value]


ReceiptStatus = Literal["pending", "processed", "quarantined", "skipped"]
