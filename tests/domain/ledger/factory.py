"""Builders for canonical events in ledger tests (amounts in cents, times from T0)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from handoff.domain.events import (
    AttributesBody,
    CanonicalEvent,
    EventType,
    OrderBody,
    PointsBody,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def at(days: float = 0, hours: float = 0) -> datetime:
    return T0 + timedelta(days=days, hours=hours)


def order_event(
    kind: str,
    order_id: str,
    when: datetime,
    *,
    net: int = 10_000,
    discounts: int = 0,
    tax: int = 0,
    shipping: int = 0,
    gift_cards: int = 0,
    currency: str = "USD",
    channel: str | None = None,
    source: str = "erp",
    event_id: str | None = None,
) -> CanonicalEvent:
    """order.placed / paid / fulfilled / cancelled with net merchandise `net` (cents)."""
    subtotal = net + discounts + gift_cards
    type_ = EventType(f"order.{kind}")
    return CanonicalEvent(
        event_id=event_id or f"evt-{kind}-{order_id}-{source}",
        source=source,
        source_event_id=f"{type_}:{order_id}",
        type=type_,
        occurred_at=when,
        received_at=when,
        body=OrderBody(
            order_id=order_id,
            currency=currency,
            subtotal=subtotal,
            discounts=discounts,
            tax=tax,
            shipping=shipping,
            gift_cards=gift_cards,
            net_merchandise=net,
            total=subtotal - discounts + tax + shipping,
            channel=channel,
        ),
    )


def refund_event(
    order_id: str,
    refund_id: str,
    amount: int,
    when: datetime,
    *,
    source: str = "erp",
    event_id: str | None = None,
) -> CanonicalEvent:
    """order.refunded: only the order id and merchandise amount, like the ERP contract."""
    return CanonicalEvent(
        event_id=event_id or f"evt-refund-{refund_id}-{source}",
        source=source,
        source_event_id=f"refund:{refund_id}",
        type=EventType.ORDER_REFUNDED,
        occurred_at=when,
        received_at=when,
        body=OrderBody(
            order_id=order_id,
            currency="USD",
            subtotal=0,
            net_merchandise=0,
            total=0,
            refund_id=refund_id,
            refund_amount=amount,
        ),
    )


def vip_flag(
    value: bool | str | None,
    when: datetime,
    *,
    version: str | None = None,
    source: str = "crm",
    event_id: str | None = None,
    attribute: str = "is_vip",
) -> CanonicalEvent:
    return CanonicalEvent(
        event_id=event_id or f"evt-flag-{when.isoformat()}-{version}-{value}",
        source=source,
        source_event_id=f"flag:{when.isoformat()}",
        type=EventType.ATTRIBUTES_CHANGED,
        occurred_at=when,
        received_at=when,
        body=AttributesBody(attributes={attribute: value}, version=version, updated_at=when),
    )


def recorded(
    delta: int, when: datetime, *, balance: int | None = None, ref: str = ""
) -> CanonicalEvent:
    return CanonicalEvent(
        event_id=f"evt-recorded-{when.isoformat()}-{delta}",
        source="loyalty",
        source_event_id=f"tx:{when.isoformat()}",
        type=EventType.POINTS_RECORDED,
        occurred_at=when,
        received_at=when,
        body=PointsBody(member_id="M-1", delta=delta, balance=balance, order_ref=ref or None),
    )
