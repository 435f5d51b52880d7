"""Shopify: signed webhooks for customers, orders and refunds.

Signature (vendors.md §1): `X-Shopify-Hmac-Sha256` = base64(HMAC-SHA256(client secret, raw body)).
Shopify signs no timestamp, so there is no freshness check; `X-Shopify-Triggered-At` is kept (lag
metrics, last-resort event time) but is unsigned and never trusted for security.

Kept headers: topic (the body does not say what it is), webhook id (dedupe), event id, triggered-at,
shop domain and API version (payload shape differs by version). The signature is *not* kept: Shopify
signs no timestamp, so a leaked receive log holding body + signature would be a ready-made request
that verifies forever. The receipt's existence already records that it was verified.

Order amounts (integer minor units of the order's `currency`, the shop currency):

- `subtotal`: gross merchandise, `total_line_items_price` (Σ line price x quantity, before any
  discount; gift cards sold included). Computed from the lines if the field is absent.
- `discounts`: merchandise discounts, line-level and order-level: `total_line_items_price -
  subtotal_price`. Shopify defines `subtotal_price` as the price after discounts and before
  shipping and tax, so a shipping discount (which `total_discounts` may include) never lowers the
  earning base. Falls back to `total_discounts` when `subtotal_price` is absent.
- `tax`: `total_tax`. `shipping`: `total_shipping_price_set.shop_money.amount`, else Σ
  `shipping_lines[].price` (both before shipping discounts).
- `gift_cards`: Σ over lines with `gift_card: true` of price x quantity less that line's own
  discounts (Shopify does not discount gift cards, so in practice the gross). Gift cards never earn.
- `net_merchandise` = subtotal - discounts - gift_cards. When the shop's prices include tax
  (`taxes_included: true`) the tax on merchandise lines (Σ `tax_lines[].price` of non-gift-card
  lines) is also removed, so the earning base is always tax-exclusive.
- `total`: `total_price` (what the customer pays: after discounts, with tax and shipping).
- Each `OrderLine.discount` is that line's total discount over all its units (Σ
  `discount_allocations[].amount`, else the legacy `total_discount`).

Refunds (`refunds/create`): the payload carries only the refund, so the `OrderBody` has the order
id, `refund_id`, `refund_lines` and `refund_amount`; the order totals (subtotal, tax, …, total) are
0 because the payload does not state them — consumers look the order up by `order_id`.
`refund_amount` is merchandise refunded after discounts and before tax: the sum of each refund
line's subtotal (`subtotal_set.shop_money.amount`, else `subtotal`) over non-gift-card lines; a
line without either counts price x quantity less its pro-rata share of the line's discounts.
`refund_lines` list every refunded line, gift cards too. Shipping refunds and refund
discrepancies (`order_adjustments`) are not part of `refund_amount`. The refund payload has no
top-level currency: it is taken from the refund transactions, then the line `subtotal_set`, then
`options.extra["currency"]`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, ClassVar

from pydantic import ValidationError

from handoff.connectors.base import (
    ConnectorFactory,
    Inbound,
    NothingToMap,
    PayloadError,
    SourceOptions,
    StoredReceipt,
    b64,
    hmac_digest,
    invalid_event_reason,
    optional_time,
    parse_json_object,
    verify_body_hmac,
)
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

SIGNATURE_HEADER = "X-Shopify-Hmac-Sha256"
TOPIC_HEADER = "X-Shopify-Topic"
WEBHOOK_ID_HEADER = "X-Shopify-Webhook-Id"
TRIGGERED_AT_HEADER = "X-Shopify-Triggered-At"

ORDER_TOPICS: dict[str, EventType] = {
    "orders/create": EventType.ORDER_PLACED,
    "orders/paid": EventType.ORDER_PAID,
    "orders/fulfilled": EventType.ORDER_FULFILLED,
    "orders/cancelled": EventType.ORDER_CANCELLED,
}
CUSTOMER_TOPICS = frozenset({"customers/create", "customers/update"})
REFUND_TOPIC = "refunds/create"

_AMOUNT = re.compile(r"-?[0-9]{1,15}(\.[0-9]{1,6})?")
_CURRENCY = re.compile(r"[A-Za-z]{3}")


def sign(
    secret: bytes,
    body: bytes,
    *,
    topic: str | None = None,
    webhook_id: str | None = None,
    shop_domain: str | None = None,
    api_version: str | None = None,
    triggered_at: str | None = None,
) -> dict[str, str]:
    """The headers Shopify would send with `body` (for tests, the demo and the simulator)."""
    headers = {SIGNATURE_HEADER: b64(hmac_digest(secret, body))}
    optional = {
        TOPIC_HEADER: topic,
        WEBHOOK_ID_HEADER: webhook_id,
        "X-Shopify-Shop-Domain": shop_domain,
        "X-Shopify-API-Version": api_version,
        TRIGGERED_AT_HEADER: triggered_at,
    }
    headers.update({name: value for name, value in optional.items() if value is not None})
    return headers


class ShopifyConnector:
    """Shopify webhooks → customer profiles and order lifecycle events."""

    vendor: ClassVar[str] = "shopify"
    kept_headers: ClassVar[tuple[str, ...]] = (
        "x-shopify-topic",
        "x-shopify-webhook-id",
        "x-shopify-event-id",
        "x-shopify-triggered-at",
        "x-shopify-shop-domain",
        "x-shopify-api-version",
    )

    def __init__(self, options: SourceOptions) -> None:
        self.options = options

    # --- gateway side ------------------------------------------------------------------------

    def verify(self, request: Inbound, secrets: Sequence[bytes]) -> None:
        verify_body_hmac(request, secrets, SIGNATURE_HEADER)

    def delivery_id(self, request: Inbound) -> str | None:
        value = request.header(WEBHOOK_ID_HEADER)
        return value.strip() if value and value.strip() else None

    def parse(self, body: bytes) -> dict[str, Any]:
        return parse_json_object(body)

    # --- processor side ----------------------------------------------------------------------

    def map(self, receipt: StoredReceipt) -> list[EventDraft]:
        topic = (receipt.header(TOPIC_HEADER) or "").strip()
        if not topic:
            raise PayloadError("missing header x-shopify-topic")
        if topic not in ORDER_TOPICS and topic not in CUSTOMER_TOPICS and topic != REFUND_TOPIC:
            raise NothingToMap(f"topic {topic} is not mapped")
        data = self.parse(receipt.body)
        try:
            if topic in CUSTOMER_TOPICS:
                return [self._map_customer(data, receipt)]
            if topic == REFUND_TOPIC:
                return [self._map_refund(data, receipt)]
            return [self._map_order(data, topic, receipt)]
        except ValidationError as exc:
            raise PayloadError(invalid_event_reason(exc)) from exc

    def _map_customer(self, data: dict[str, Any], receipt: StoredReceipt) -> EventDraft:
        customer_id = _required_id(data.get("id"), "id")
        updated_at = _optional_str(data.get("updated_at"), "updated_at")
        occurred = _first_time(data, ("updated_at", "created_at")) or self._fallback_time(receipt)
        ref = _customer_ref(receipt.source, data, fallback_email=None, fallback_phone=None)
        body = ProfileBody(
            email=ref.email,
            phone=ref.phone,
            first_name=ref.first_name,
            last_name=ref.last_name,
            zip=ref.zip,
            accepts_marketing=_accepts_marketing(data),
            tags=_tags(data.get("tags")),
            channel=self.options.role,
        )
        return EventDraft(
            source_event_id=f"customer:{customer_id}:{updated_at or ''}",
            type=EventType.PROFILE_CAPTURED,
            occurred_at=occurred,
            customer=ref,
            body=body,
        )

    def _map_order(self, data: dict[str, Any], topic: str, receipt: StoredReceipt) -> EventDraft:
        order_id = _required_id(data.get("id"), "id")
        currency = _currency(data.get("currency"), "currency")
        lines, gift_cards, line_tax = _order_lines(data.get("line_items"), currency)

        if "total_line_items_price" in data and data["total_line_items_price"] is not None:
            subtotal = _money(data["total_line_items_price"], currency, "total_line_items_price")
        else:
            subtotal = sum(line.unit_price * line.quantity for line in lines)
        if data.get("subtotal_price") is not None:
            discounts = subtotal - _money(data["subtotal_price"], currency, "subtotal_price")
        else:
            discounts = _money(data.get("total_discounts"), currency, "total_discounts")
        tax = _money(data.get("total_tax"), currency, "total_tax")
        shipping = _shipping(data, currency)
        net = subtotal - discounts - gift_cards
        if data.get("taxes_included") is True:
            net -= line_tax
        total = _money(data.get("total_price"), currency, "total_price")
        location = data.get("location_id")

        body = OrderBody(
            order_id=order_id,
            currency=currency,
            subtotal=subtotal,
            discounts=discounts,
            tax=tax,
            shipping=shipping,
            gift_cards=gift_cards,
            net_merchandise=net,
            total=total,
            channel="pos" if data.get("source_name") == "pos" else "online",
            location_id=None if location is None else _required_id(location, "location_id"),
            lines=tuple(lines),
        )
        customer = data.get("customer")
        fallback_email = _optional_str(data.get("email"), "email")
        fallback_phone = _optional_str(data.get("phone"), "phone")
        if customer is not None:
            ref: CustomerRef | None = _customer_ref(
                receipt.source,
                _object(customer, "customer"),
                fallback_email=fallback_email,
                fallback_phone=fallback_phone,
            )
        elif fallback_email or fallback_phone:
            ref = CustomerRef(system=receipt.source, email=fallback_email, phone=fallback_phone)
        else:
            ref = None  # an anonymous sale (typically POS): nobody to attach it to
        return EventDraft(
            source_event_id=f"order:{order_id}:{topic}",
            type=ORDER_TOPICS[topic],
            occurred_at=_order_time(data, topic) or self._fallback_time(receipt),
            customer=ref,
            body=body,
        )

    def _map_refund(self, data: dict[str, Any], receipt: StoredReceipt) -> EventDraft:
        refund_id = _required_id(data.get("id"), "id")
        order_id = _required_id(data.get("order_id"), "order_id")
        raw_lines = _array(data.get("refund_line_items"), "refund_line_items")
        currency = self._refund_currency(data, raw_lines)

        refund_lines: list[RefundLine] = []
        refund_amount = 0
        for index, raw in enumerate(raw_lines):
            where = f"refund_line_items[{index}]"
            item = _object(raw, where)
            line_item = _object(item.get("line_item") or {}, f"{where}.line_item")
            quantity = _quantity(item.get("quantity"), f"{where}.quantity")
            amount = _refund_line_amount(item, line_item, quantity, currency, where)
            line_id = item.get("line_item_id", line_item.get("id"))
            refund_lines.append(
                RefundLine(
                    line_id=None
                    if line_id is None
                    else _required_id(line_id, f"{where}.line_item_id"),
                    sku=_optional_str(line_item.get("sku"), f"{where}.line_item.sku"),
                    quantity=quantity,
                    amount=amount,
                )
            )
            if line_item.get("gift_card") is not True:
                refund_amount += amount

        body = OrderBody(
            order_id=order_id,
            currency=currency,
            subtotal=0,
            net_merchandise=0,
            total=0,
            refund_id=refund_id,
            refund_amount=refund_amount,
            refund_lines=tuple(refund_lines),
        )
        occurred = _first_time(data, ("processed_at", "created_at")) or self._fallback_time(receipt)
        return EventDraft(
            source_event_id=f"refund:{refund_id}",
            type=EventType.ORDER_REFUNDED,
            occurred_at=occurred,
            customer=None,  # the refund payload names no customer; the order does
            body=body,
        )

    def _refund_currency(self, data: dict[str, Any], raw_lines: list[Any]) -> str:
        for index, raw in enumerate(_array(data.get("transactions"), "transactions")):
            transaction = _object(raw, f"transactions[{index}]")
            if transaction.get("currency") is not None:
                return _currency(transaction["currency"], f"transactions[{index}].currency")
        for index, raw in enumerate(raw_lines):
            if not isinstance(raw, dict):
                continue
            money = _shop_money(raw.get("subtotal_set"), f"refund_line_items[{index}].subtotal_set")
            if money is not None and money.get("currency_code") is not None:
                return _currency(
                    money["currency_code"],
                    f"refund_line_items[{index}].subtotal_set.shop_money.currency_code",
                )
        configured = self.options.extra.get("currency")
        if isinstance(configured, str):
            return _currency(configured, "options.extra.currency")
        raise PayloadError(
            "refund carries no currency (no transaction currency or subtotal_set) "
            "and options.extra has no 'currency'"
        )

    def _fallback_time(self, receipt: StoredReceipt) -> datetime:
        """The unsigned trigger time if it parses, else when the hub received the webhook."""
        raw = receipt.header(TRIGGERED_AT_HEADER)
        if raw:
            try:
                parsed = optional_time(raw.strip(), "x-shopify-triggered-at")
            except PayloadError:
                parsed = None
            if parsed is not None:
                return parsed
        return receipt.received_at


_factory_check: ConnectorFactory = ShopifyConnector  # static check against the protocol


# --- field helpers (each raises PayloadError naming the field) ---------------------------------


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise PayloadError(f"{where} is not an object")
    return value


def _array(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise PayloadError(f"{where} is not an array")
    return value


def _required_id(value: Any, where: str) -> str:
    if isinstance(value, bool) or value is None:
        raise PayloadError(f"{where} is missing")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    raise PayloadError(f"{where} is not an id")


def _optional_str(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise PayloadError(f"{where} is not a string")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return value.strip() or None
    raise PayloadError(f"{where} is not a string")


def _currency(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _CURRENCY.fullmatch(value.strip()):
        raise PayloadError(f"{where} is missing or not an ISO 4217 code")
    return value.strip().upper()


def _money(value: Any, currency: str, where: str) -> int:
    """A Shopify decimal string (or integer) in minor units; absent means zero."""
    if value is None or value == "":
        return 0
    if isinstance(value, bool | float):
        raise PayloadError(f"{where} is not a decimal string")
    if isinstance(value, int):
        if abs(value) >= 10**15:
            raise PayloadError(f"{where} is out of range")
        text = str(value)
    elif isinstance(value, str) and _AMOUNT.fullmatch(value.strip()):
        text = value.strip()
    else:
        raise PayloadError(f"{where} is not a decimal string")
    try:
        return to_minor(text, currency)
    except MoneyError as exc:
        raise PayloadError(f"{where}: {exc}") from exc


def _quantity(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 10**9:
        raise PayloadError(f"{where} is missing or not a non-negative integer")
    return value


def _first_time(data: Mapping[str, Any], fields: Sequence[str]) -> datetime | None:
    for name in fields:
        parsed = optional_time(data.get(name), name)
        if parsed is not None:
            return parsed
    return None


def _order_time(data: dict[str, Any], topic: str) -> datetime | None:
    """The moment the topic's fact became true, as near as the payload states it."""
    if topic == "orders/create":
        return _first_time(data, ("created_at", "processed_at"))
    if topic == "orders/cancelled":
        return _first_time(data, ("cancelled_at", "updated_at"))
    if topic == "orders/fulfilled":
        latest: datetime | None = None
        for index, raw in enumerate(_array(data.get("fulfillments"), "fulfillments")):
            fulfillment = _object(raw, f"fulfillments[{index}]")
            at = _first_time(fulfillment, ("created_at", "updated_at"))
            if at is not None and (latest is None or at > latest):
                latest = at
        return latest or _first_time(data, ("updated_at", "processed_at"))
    # orders/paid: the payload has no payment time; the update that made it paid is closest.
    return _first_time(data, ("updated_at", "processed_at", "created_at"))


def _line_discount(item: dict[str, Any], currency: str, where: str) -> int:
    allocations = item.get("discount_allocations")
    if isinstance(allocations, list):
        total = 0
        for index, raw in enumerate(allocations):
            allocation = _object(raw, f"{where}.discount_allocations[{index}]")
            total += _money(
                allocation.get("amount"), currency, f"{where}.discount_allocations[{index}].amount"
            )
        return total
    return _money(item.get("total_discount"), currency, f"{where}.total_discount")


def _order_lines(value: Any, currency: str) -> tuple[list[OrderLine], int, int]:
    """The order's lines, the gift-card amount, and the tax on non-gift-card lines."""
    lines: list[OrderLine] = []
    gift_cards = 0
    line_tax = 0
    for index, raw in enumerate(_array(value, "line_items")):
        where = f"line_items[{index}]"
        item = _object(raw, where)
        quantity = _quantity(item.get("quantity"), f"{where}.quantity")
        unit_price = _money(item.get("price"), currency, f"{where}.price")
        discount = _line_discount(item, currency, where)
        gift_card = item.get("gift_card") is True
        if gift_card:
            gift_cards += unit_price * quantity - discount
        else:
            for tax_index, raw_tax in enumerate(
                _array(item.get("tax_lines"), f"{where}.tax_lines")
            ):
                tax_line = _object(raw_tax, f"{where}.tax_lines[{tax_index}]")
                line_tax += _money(
                    tax_line.get("price"), currency, f"{where}.tax_lines[{tax_index}].price"
                )
        line_id = item.get("id")
        lines.append(
            OrderLine(
                sku=_optional_str(item.get("sku"), f"{where}.sku"),
                quantity=quantity,
                unit_price=unit_price,
                discount=discount,
                category=_optional_str(item.get("product_type"), f"{where}.product_type"),
                gift_card=gift_card,
                line_id=None if line_id is None else _required_id(line_id, f"{where}.id"),
            )
        )
    return lines, gift_cards, line_tax


def _shop_money(value: Any, where: str) -> dict[str, Any] | None:
    if value is None:
        return None
    shop_money = _object(value, where).get("shop_money")
    return None if shop_money is None else _object(shop_money, f"{where}.shop_money")


def _shipping(data: dict[str, Any], currency: str) -> int:
    shop_money = _shop_money(data.get("total_shipping_price_set"), "total_shipping_price_set")
    if shop_money is not None and shop_money.get("amount") is not None:
        return _money(shop_money["amount"], currency, "total_shipping_price_set.shop_money.amount")
    total = 0
    for index, raw in enumerate(_array(data.get("shipping_lines"), "shipping_lines")):
        line = _object(raw, f"shipping_lines[{index}]")
        total += _money(line.get("price"), currency, f"shipping_lines[{index}].price")
    return total


def _refund_line_amount(
    item: dict[str, Any], line_item: dict[str, Any], quantity: int, currency: str, where: str
) -> int:
    """Merchandise refunded for one line, after discounts and before tax.

    Prefers `subtotal_set` (a decimal string); the REST `subtotal` is a JSON number, read through
    its shortest decimal form, which is the amount Shopify wrote."""
    shop_money = _shop_money(item.get("subtotal_set"), f"{where}.subtotal_set")
    if shop_money is not None and shop_money.get("amount") is not None:
        return _money(shop_money["amount"], currency, f"{where}.subtotal_set.shop_money.amount")
    subtotal = item.get("subtotal")
    if isinstance(subtotal, float):
        subtotal = repr(subtotal)
    if subtotal is not None:
        return _money(subtotal, currency, f"{where}.subtotal")
    if line_item.get("price") is None:
        raise PayloadError(f"{where} has no subtotal and no line_item.price")
    unit_price = _money(line_item["price"], currency, f"{where}.line_item.price")
    gross = unit_price * quantity
    line_discount = _line_discount(line_item, currency, f"{where}.line_item")
    line_quantity = line_item.get("quantity")
    if (
        line_discount
        and isinstance(line_quantity, int)
        and not isinstance(line_quantity, bool)
        and line_quantity > 0
    ):
        share = (Decimal(line_discount) * quantity / line_quantity).quantize(
            Decimal(1), rounding=ROUND_HALF_EVEN
        )
        return gross - int(share)
    return gross


def _zip(data: dict[str, Any]) -> str | None:
    for field in ("default_address", "billing_address"):
        address = data.get(field)
        if isinstance(address, dict):
            value = _optional_str(address.get("zip"), f"{field}.zip")
            if value:
                return value
    return None


def _customer_ref(
    system: str,
    customer: dict[str, Any],
    *,
    fallback_email: str | None,
    fallback_phone: str | None,
) -> CustomerRef:
    customer_id = customer.get("id")
    return CustomerRef(
        system=system,
        external_id=None if customer_id is None else _required_id(customer_id, "customer.id"),
        email=_optional_str(customer.get("email"), "customer.email") or fallback_email,
        phone=_optional_str(customer.get("phone"), "customer.phone") or fallback_phone,
        first_name=_optional_str(customer.get("first_name"), "customer.first_name"),
        last_name=_optional_str(customer.get("last_name"), "customer.last_name"),
        zip=_zip(customer),
    )


def _tags(value: Any) -> tuple[str, ...]:
    """Shopify sends tags as one comma-separated string; newer shapes send a list."""
    if value is None:
        return ()
    if isinstance(value, str):
        parts = value.split(",")
    elif isinstance(value, list) and all(isinstance(part, str) for part in value):
        parts = value
    else:
        raise PayloadError("tags is not a string or a list of strings")
    return tuple(tag.strip() for tag in parts if tag.strip())


def _accepts_marketing(data: dict[str, Any]) -> bool | None:
    """The legacy flag if present, else the email consent state (2022-04+ payloads)."""
    legacy = data.get("accepts_marketing")
    if isinstance(legacy, bool):
        return legacy
    consent = data.get("email_marketing_consent")
    if isinstance(consent, dict):
        state = consent.get("state")
        if state == "subscribed":
            return True
        if state in ("not_subscribed", "unsubscribed"):
            return False
    return None
