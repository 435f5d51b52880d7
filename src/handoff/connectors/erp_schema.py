"""handoff's ERP event schema: what an ERP (or a NetSuite script) posts, and how it maps.

NetSuite and most ERPs have no webhooks of their own, so handoff defines the contract
(docs/erp-events.md). It is shared by the `standard` connector (Standard Webhooks signatures)
and the `hmac` connector (a configurable plain HMAC), so the signing is the only difference.

The envelope follows the Standard Webhooks payload recommendation::

    {"type": "order.paid", "timestamp": "2026-03-01T12:00:00Z", "data": {...}}

The vocabulary is the reconciliation export's (contracts/reconcile.md): amounts are decimal
strings in major units ("12.50"), times ISO 8601 with an offset. Unknown fields are ignored so
the ERP side can add fields before the hub reads them; required fields are enforced, and every
violation becomes a PayloadError naming the field path ("data.currency: field required").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal, cast

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from handoff.connectors.base import NothingToMap, PayloadError, StoredReceipt, parse_json_object
from handoff.domain.events import (
    CustomerRef,
    EventDraft,
    EventType,
    OrderBody,
    OrderLine,
    ProfileBody,
    RefundLine,
)
from handoff.domain.money import MoneyError, to_minor

ORDER_EVENT_TYPES: Final = (
    "order.placed",
    "order.paid",
    "order.fulfilled",
    "order.cancelled",
)
REFUND_EVENT_TYPE: Final = "order.refunded"
PROFILE_EVENT_TYPE: Final = "customer.profile.captured"
ERP_EVENT_TYPES: Final = (*ORDER_EVENT_TYPES, REFUND_EVENT_TYPE, PROFILE_EVENT_TYPE)

# the data field that carries each type's own time (occurred_at); else the envelope timestamp
TIME_FIELD: Final[dict[str, str]] = {
    "order.placed": "placed_at",
    "order.paid": "paid_at",
    "order.fulfilled": "fulfilled_at",
    "order.cancelled": "cancelled_at",
    "order.refunded": "refunded_at",
    "customer.profile.captured": "captured_at",
}

_MAX_REPORTED_ERRORS = 5


# --- field types ---------------------------------------------------------------------------


_MAX_WHOLE_DIGITS = 15  # any real order; minor units stay within int64 (exponent <= 3)
_MAX_FRACTION_DIGITS = 6  # beyond any currency's exponent; keeps Decimal arithmetic exact


def _amount(value: Any) -> Any:
    """Amounts travel as decimal strings so no float ever touches money."""
    if not isinstance(value, str):
        raise ValueError('must be a decimal string in major units, like "12.50"')
    text = value.strip()
    whole, _, fraction = text.partition(".")
    digits = whole + fraction
    if not digits.isascii() or not digits.isdigit() or not whole or text.endswith("."):
        raise ValueError('must be a non-negative decimal string in major units, like "12.50"')
    if len(whole) > _MAX_WHOLE_DIGITS or len(fraction) > _MAX_FRACTION_DIGITS:
        raise ValueError(
            f"has more than {_MAX_WHOLE_DIGITS} digits before or {_MAX_FRACTION_DIGITS} after "
            "the decimal point"
        )
    return text


def _identifier(value: Any) -> Any:
    """ERP ids are often numeric (NetSuite internal ids); accept them, store them as text."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str):
        if not value.strip():
            raise ValueError("must not be empty")
        return value
    raise ValueError("must be a string (or an integer id)")


def parse_iso_time(text: str) -> datetime:
    """ISO 8601 with an offset (or Z) → aware UTC datetime; ValueError with a reason otherwise.

    Times must say their offset: a naive time is ambiguous across stores and servers."""
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            "must be an ISO 8601 time with an offset, like 2026-03-01T12:00:00Z"
        ) from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ValueError("must include a UTC offset or Z, like 2026-03-01T12:00:00Z")
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise ValueError("is out of range") from None


def _iso_time(value: Any) -> Any:
    if not isinstance(value, str):
        raise ValueError("must be an ISO 8601 string with an offset, like 2026-03-01T12:00:00Z")
    return parse_iso_time(value)


def _currency(value: Any) -> Any:
    """Codes are matched exactly against the minor-unit table, so no case folding here."""
    ok = isinstance(value, str) and len(value) == 3 and value.isascii()
    if not ok or not value.isalpha() or not value.isupper():
        raise ValueError('must be an ISO 4217 code in capitals, like "USD"')
    return value


Amount = Annotated[str, BeforeValidator(_amount)]
Identifier = Annotated[str, BeforeValidator(_identifier)]
IsoTime = Annotated[datetime, BeforeValidator(_iso_time)]
CurrencyCode = Annotated[str, BeforeValidator(_currency)]
Channel = Literal["pos", "online"]


class _ErpModel(BaseModel):
    # extra fields are ignored: the ERP side may add fields before the hub reads them
    model_config = ConfigDict(extra="ignore", frozen=True)


# --- payload models ------------------------------------------------------------------------


class ErpCustomer(_ErpModel):
    """The ERP's customer record as seen on the event; `id` is the ERP customer id."""

    id: Identifier
    email: str | None = None
    phone: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    zip: str | None = None


class ErpOrderLine(_ErpModel):
    """One order line. `discount` is the line's total discount (all units), not per unit."""

    line_id: Identifier | None = None
    sku: str | None = None
    quantity: Annotated[int, Field(strict=True, gt=0)]
    unit_price: Amount
    discount: Amount = "0"
    category: str | None = None
    gift_card: bool = False


class ErpRefundLine(_ErpModel):
    """One refunded line; `amount` is what was refunded for it, after discounts."""

    line_id: Identifier | None = None
    sku: str | None = None
    quantity: Annotated[int, Field(strict=True, gt=0)]
    amount: Amount


class ErpOrderData(_ErpModel):
    """order.placed / paid / fulfilled / cancelled: the order's totals at that point."""

    order_id: Identifier
    customer: ErpCustomer
    currency: CurrencyCode
    subtotal: Amount  # gross merchandise before discounts, gift-card merchandise included
    discount: Amount = "0"
    tax: Amount = "0"
    shipping: Amount = "0"
    gift_card: Amount = "0"  # gift-card merchandise within subtotal; never earns
    total: Amount | None = None  # computed when absent
    channel: Channel | None = None
    store_id: Identifier | None = None
    lines: tuple[ErpOrderLine, ...] = ()
    placed_at: IsoTime | None = None
    paid_at: IsoTime | None = None
    fulfilled_at: IsoTime | None = None
    cancelled_at: IsoTime | None = None


class ErpRefundData(_ErpModel):
    """order.refunded: `amount` is the merchandise refunded, after discounts.

    The order's totals are optional here: the ledger reverses against the original order's
    basis, so a refund only has to name the order and the amount."""

    refund_id: Identifier
    order_id: Identifier
    currency: CurrencyCode
    amount: Amount
    customer: ErpCustomer | None = None
    lines: tuple[ErpRefundLine, ...] = ()
    refunded_at: IsoTime | None = None
    subtotal: Amount = "0"
    discount: Amount = "0"
    tax: Amount = "0"
    shipping: Amount = "0"
    gift_card: Amount = "0"
    total: Amount | None = None
    channel: Channel | None = None
    store_id: Identifier | None = None


class ErpProfileData(_ErpModel):
    """customer.profile.captured: a customer created or edited in the ERP."""

    customer: ErpCustomer
    channel: str | None = None
    birth_date: str | None = None
    accepts_marketing: bool | None = None
    tags: tuple[str, ...] = ()
    captured_at: IsoTime | None = None


class _Envelope(_ErpModel):
    type: Annotated[str, Field(min_length=1)]
    timestamp: IsoTime
    data: dict[str, Any]


ErpData = ErpOrderData | ErpRefundData | ErpProfileData

_DATA_MODEL: Final[dict[str, type[_ErpModel]]] = {
    **dict.fromkeys(ORDER_EVENT_TYPES, ErpOrderData),
    REFUND_EVENT_TYPE: ErpRefundData,
    PROFILE_EVENT_TYPE: ErpProfileData,
}


@dataclass(frozen=True, slots=True)
class ErpEvent:
    """A validated envelope. `data` is None for a type this hub version does not know."""

    type: str
    timestamp: datetime
    data: ErpData | None


# --- parsing -------------------------------------------------------------------------------


def _loc(parts: tuple[int | str, ...], prefix: str) -> str:
    text = prefix
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text = f"{text}.{part}" if text else str(part)
    return text or "body"


def _message(error: Any) -> str:
    if error["type"] == "missing":
        return "field required"
    msg = str(error["msg"])
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    return msg[:1].lower() + msg[1:]


def validation_reason(exc: ValidationError, prefix: str = "") -> str:
    """A PayloadError reason from pydantic errors: paths and reasons, never the input values."""
    errors = exc.errors(include_url=False, include_input=False)
    parts = [f"{_loc(tuple(e['loc']), prefix)}: {_message(e)}" for e in errors]
    extra = len(parts) - _MAX_REPORTED_ERRORS
    text = "; ".join(parts[:_MAX_REPORTED_ERRORS])
    return f"{text}; and {extra} more" if extra > 0 else text


def parse_event(body: bytes) -> ErpEvent:
    """Decode and validate one ERP event; raise PayloadError naming the offending field."""
    raw = parse_json_object(body)
    try:
        envelope = _Envelope.model_validate(raw)
    except ValidationError as exc:
        raise PayloadError(validation_reason(exc)) from None
    model = _DATA_MODEL.get(envelope.type)
    if model is None:
        return ErpEvent(type=envelope.type, timestamp=envelope.timestamp, data=None)
    try:
        data = cast(ErpData, model.model_validate(envelope.data))
    except ValidationError as exc:
        raise PayloadError(validation_reason(exc, "data")) from None
    event = ErpEvent(type=envelope.type, timestamp=envelope.timestamp, data=data)
    _body(event)  # amounts that do not fit the currency are a payload error too, found early
    return event


# --- mapping -------------------------------------------------------------------------------


def _minor(amount: str, currency: str, path: str) -> int:
    try:
        return to_minor(amount, currency)
    except MoneyError as exc:
        raise PayloadError(f"{path}: {exc}") from None


def _order_amounts(data: ErpOrderData | ErpRefundData) -> dict[str, int]:
    cur = data.currency
    subtotal = _minor(data.subtotal, cur, "data.subtotal")
    discount = _minor(data.discount, cur, "data.discount")
    tax = _minor(data.tax, cur, "data.tax")
    shipping = _minor(data.shipping, cur, "data.shipping")
    gift_card = _minor(data.gift_card, cur, "data.gift_card")
    net = subtotal - discount - gift_card
    if net < 0:
        raise PayloadError(
            "data: discount + gift_card exceed subtotal (net merchandise would be negative)"
        )
    total = (
        _minor(data.total, cur, "data.total")
        if data.total is not None
        else subtotal - discount + tax + shipping
    )
    return {
        "subtotal": subtotal,
        "discounts": discount,
        "tax": tax,
        "shipping": shipping,
        "gift_cards": gift_card,
        "net_merchandise": net,
        "total": total,
    }


def _order_lines(lines: tuple[ErpOrderLine, ...], currency: str) -> tuple[OrderLine, ...]:
    return tuple(
        OrderLine(
            line_id=line.line_id,
            sku=line.sku,
            quantity=line.quantity,
            unit_price=_minor(line.unit_price, currency, f"data.lines[{i}].unit_price"),
            discount=_minor(line.discount, currency, f"data.lines[{i}].discount"),
            category=line.category,
            gift_card=line.gift_card,
        )
        for i, line in enumerate(lines)
    )


def _refund_lines(lines: tuple[ErpRefundLine, ...], currency: str) -> tuple[RefundLine, ...]:
    return tuple(
        RefundLine(
            line_id=line.line_id,
            sku=line.sku,
            quantity=line.quantity,
            amount=_minor(line.amount, currency, f"data.lines[{i}].amount"),
        )
        for i, line in enumerate(lines)
    )


def _body(event: ErpEvent) -> OrderBody | ProfileBody:
    data = event.data
    if isinstance(data, ErpOrderData):
        return OrderBody(
            order_id=data.order_id,
            currency=data.currency,
            channel=data.channel,
            location_id=data.store_id,
            lines=_order_lines(data.lines, data.currency),
            **_order_amounts(data),
        )
    if isinstance(data, ErpRefundData):
        return OrderBody(
            order_id=data.order_id,
            currency=data.currency,
            channel=data.channel,
            location_id=data.store_id,
            refund_id=data.refund_id,
            refund_amount=_minor(data.amount, data.currency, "data.amount"),
            refund_lines=_refund_lines(data.lines, data.currency),
            **_order_amounts(data),
        )
    if isinstance(data, ErpProfileData):
        c = data.customer
        return ProfileBody(
            email=c.email,
            phone=c.phone,
            first_name=c.first_name,
            last_name=c.last_name,
            zip=c.zip,
            birth_date=data.birth_date,
            accepts_marketing=data.accepts_marketing,
            tags=data.tags,
            channel=data.channel,
        )
    raise NothingToMap(f"ERP event type {event.type!r} is not mapped by this hub version")


def _customer_ref(customer: ErpCustomer | None, system: str) -> CustomerRef | None:
    if customer is None:
        return None
    return CustomerRef(
        system=system,
        external_id=customer.id,
        email=customer.email,
        phone=customer.phone,
        first_name=customer.first_name,
        last_name=customer.last_name,
        zip=customer.zip,
    )


def _utc_text(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def source_event_id(event: ErpEvent) -> str:
    """Stable per fact, so an ERP re-send of the same fact maps to the same canonical event."""
    data = event.data
    if isinstance(data, ErpRefundData):
        return f"refund:{data.refund_id}"
    if isinstance(data, ErpOrderData):
        return f"{event.type}:{data.order_id}"
    if isinstance(data, ErpProfileData):
        return f"profile:{data.customer.id}:{_utc_text(event.timestamp)}"
    raise NothingToMap(f"ERP event type {event.type!r} is not mapped by this hub version")


def occurred_at(event: ErpEvent) -> datetime:
    """The type's own time field when the ERP sent it, else the envelope timestamp."""
    field = TIME_FIELD.get(event.type)
    own = getattr(event.data, field, None) if field else None
    return own if isinstance(own, datetime) else event.timestamp


def map_event(event: ErpEvent, system: str) -> list[EventDraft]:
    """One ERP event → one canonical draft; the customer ref's system is the hub source name."""
    if event.data is None:
        raise NothingToMap(f"ERP event type {event.type!r} is not mapped by this hub version")
    body = _body(event)
    try:
        return [
            EventDraft(
                source_event_id=source_event_id(event),
                type=EventType(event.type),
                occurred_at=occurred_at(event),
                customer=_customer_ref(event.data.customer, system),
                body=body,
            )
        ]
    except ValidationError as exc:  # pragma: no cover - the models above already enforce this
        raise PayloadError(validation_reason(exc)) from None


def map_receipt(receipt: StoredReceipt) -> list[EventDraft]:
    """Parse and map a stored ERP receipt (shared by the standard and hmac connectors)."""
    return map_event(parse_event(receipt.body), receipt.source)
