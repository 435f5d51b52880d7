"""ERP look-alike (NetSuite-style): the authoritative orders, posted as signed Standard Webhooks.

Webhooks follow docs/erp-events.md exactly: one event per request, envelope
`{type, timestamp, data}`, amounts as decimal strings, times in ISO 8601 with `Z`, signed with
Standard Webhooks (`webhook-id` the same on every retry, `webhook-timestamp` the time of the
attempt, `webhook-signature: v1,<b64>`; handoff.connectors.standard.sign). The ids follow the
contract's NetSuite advice: `SO-100001-paid`, no dots. Each step is posted a minute after it
happens in the ERP (an afterSubmit script). Retries: `delivery.STANDARD`.

API (bearer token; what a reconciliation pull would call):
- `GET /api/orders?customer_id=&status=` and `GET /api/orders/{order_id}`;
- `GET /api/customers/{customer_id}`;
- `GET /exports/orders.csv` and `GET /exports/refunds.csv` (reconcile.md formats, as of now).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from handoff.connectors import standard
from handoff.sim.clock import SimClock
from handoff.sim.delivery import Message
from handoff.sim.faults import World
from handoff.sim.scenario import Order, Refund, Scenario, ShopCustomer, iso, money
from handoff.sim.scenario_config import FaultWindow
from handoff.sim.vendors.common import VendorApi, json_response

POST_LAG = timedelta(minutes=1)  # the ERP script posts a minute after the record is saved


def customer_json(c: ShopCustomer, *, full: bool = True) -> dict[str, Any]:
    data: dict[str, Any] = {"id": c.erp_id}
    if full:
        for key, value in (
            ("email", c.email),
            ("phone", c.phone),
            ("first_name", c.first_name),
            ("last_name", c.last_name),
            ("zip", c.zip),
        ):
            if value:
                data[key] = value
    return data


def order_data(order: Order, customer: ShopCustomer, step: str) -> dict[str, Any]:
    data: dict[str, Any] = {
        "order_id": order.order_id,
        "customer": customer_json(customer),
        "currency": order.currency,
        "subtotal": money(order.subtotal),
        "discount": money(order.discount),
        "tax": money(order.tax),
        "shipping": money(order.shipping),
        "gift_card": money(order.gift_card),
        "total": money(order.total),
        "channel": order.channel,
        "store_id": order.store_id,
        "lines": [
            {
                "line_id": str(line.line_id),
                "sku": line.sku,
                "quantity": line.quantity,
                "unit_price": money(line.unit_price),
                "discount": money(line.discount),
                "category": line.category,
                "gift_card": line.gift_card,
            }
            for line in order.lines
        ],
        "placed_at": iso(order.placed_at),
    }
    if step in ("paid", "fulfilled", "cancelled"):
        data["paid_at"] = iso(order.paid_at)
    if step == "fulfilled" and order.fulfilled_at:
        data["fulfilled_at"] = iso(order.fulfilled_at)
    if step == "cancelled" and order.cancelled_at:
        data["cancelled_at"] = iso(order.cancelled_at)
    return data


def refund_data(refund: Refund, order: Order) -> dict[str, Any]:
    return {
        "refund_id": refund.refund_id,
        "order_id": order.order_id,
        "currency": order.currency,
        "amount": money(refund.amount),
        "customer": {"id": order.erp_customer_id},
        "lines": [
            {
                "line_id": str(r.line_id),
                "sku": r.sku,
                "quantity": r.quantity,
                "amount": money(r.amount),
            }
            for r in refund.lines
        ],
        "refunded_at": iso(refund.refunded_at),
        "subtotal": money(order.subtotal),
        "discount": money(order.discount),
        "gift_card": money(order.gift_card),
    }


def _message(
    msg_id: str, type_: str, at: datetime, ref: str, data: dict[str, Any], order_id: str | None
) -> Message:
    return Message(
        message_id=f"erp:{msg_id}",
        system="erp",
        topic=type_,
        fired_at=at + POST_LAG,
        ref=ref,
        payload={"type": type_, "timestamp": iso(at), "data": data},
        delivery_id=msg_id,
        order_id=order_id,
    )


def webhook_messages(world: World) -> list[Message]:
    scenario = world.scenario
    out: list[Message] = []
    for c in scenario.customers:
        out.append(
            _message(
                f"{c.erp_id}-captured",
                "customer.profile.captured",
                c.created_at,
                f"customer:{c.erp_id}",
                {
                    "customer": customer_json(c),
                    "channel": c.channel,
                    "accepts_marketing": c.accepts_marketing,
                    "captured_at": iso(c.created_at),
                },
                None,
            )
        )
    for order in scenario.orders:
        customer = scenario.customer(order.shopify_customer_id)
        for step, at in (
            ("placed", order.placed_at),
            ("paid", order.paid_at),
            ("fulfilled", order.fulfilled_at),
            ("cancelled", order.cancelled_at),
        ):
            if at is None:
                continue
            out.append(
                _message(
                    f"{order.order_id}-{step}",
                    f"order.{step}",
                    at,
                    f"order:{order.order_id}:{step}",
                    order_data(order, customer, step),
                    order.order_id,
                )
            )
        for refund in scenario.refunds_of(order.order_id):
            out.append(
                _message(
                    f"{refund.refund_id}-refunded",
                    "order.refunded",
                    refund.refunded_at,
                    f"refund:{refund.refund_id}",
                    refund_data(refund, order),
                    None,  # the refund itself is never held back; its order is
                )
            )
    return out


@dataclass(frozen=True)
class StandardSigner:
    """Signs like a Standard Webhooks sender: a fresh timestamp on every attempt."""

    secret: str

    def __call__(
        self, message: Message, attempt: int, now: datetime, url: str
    ) -> tuple[bytes, dict[str, str]]:
        body = json.dumps(message.payload, separators=(",", ":"), ensure_ascii=False).encode()
        headers = standard.sign(self.secret, message.delivery_id, now, body)
        headers["Content-Type"] = "application/json"
        return body, headers


# --- exports and API -----------------------------------------------------------------------------


def order_row(order: Order, customer: ShopCustomer, as_of: datetime) -> dict[str, Any] | None:
    if order.placed_at > as_of:
        return None

    def upto(moment: datetime | None) -> datetime | None:
        return moment if moment is not None and moment <= as_of else None

    cancelled, fulfilled, paid = (
        upto(order.cancelled_at),
        upto(order.fulfilled_at),
        upto(order.paid_at),
    )
    status = (
        "cancelled" if cancelled else "fulfilled" if fulfilled else "paid" if paid else "placed"
    )
    return {
        "order_id": order.order_id,
        "customer_id": order.erp_customer_id,
        "email": customer.email,
        "phone": customer.phone,
        "first_name": customer.first_name,
        "last_name": customer.last_name,
        "zip": customer.zip,
        "channel": order.channel,
        "store_id": order.store_id,
        "currency": order.currency,
        "subtotal": money(order.subtotal),
        "discount": money(order.discount),
        "tax": money(order.tax),
        "shipping": money(order.shipping),
        "gift_card": money(order.gift_card),
        "total": money(order.total),
        "status": status,
        "placed_at": order.placed_at,
        "paid_at": paid,
        "fulfilled_at": fulfilled,
        "cancelled_at": cancelled,
    }


class ErpApi(VendorApi):
    """Read-only ERP API and CSV exports over the scenario, as of the clock's now."""

    name = "erp"

    def __init__(
        self,
        clock: SimClock,
        *,
        token: str,
        seed: int = 0,
        windows: Sequence[FaultWindow] = (),
        origin: datetime | None = None,
    ) -> None:
        super().__init__(clock, token=token, seed=seed, windows=windows, origin=origin)
        self.scenario: Scenario | None = None
        self.app = Starlette(
            routes=[
                Route("/api/orders", self.route(self.list_orders), methods=["GET"]),
                Route("/api/orders/{order_id}", self.route(self.get_order), methods=["GET"]),
                Route(
                    "/api/customers/{customer_id}", self.route(self.get_customer), methods=["GET"]
                ),
                Route("/exports/orders.csv", self.route(self.orders_csv), methods=["GET"]),
                Route("/exports/refunds.csv", self.route(self.refunds_csv), methods=["GET"]),
            ]
        )

    def load(self, world: World) -> None:
        self.scenario = world.scenario

    def _scenario(self) -> Scenario:
        if self.scenario is None:
            raise RuntimeError("ErpApi.load(world) first")
        return self.scenario

    def order_rows(self, as_of: datetime | None = None) -> list[dict[str, Any]]:
        s, when = self._scenario(), as_of or self.clock.now()
        rows = (order_row(o, s.customer(o.shopify_customer_id), when) for o in s.orders)
        return sorted((r for r in rows if r is not None), key=lambda r: str(r["order_id"]))

    def refund_rows(self, as_of: datetime | None = None) -> list[dict[str, Any]]:
        s, when = self._scenario(), as_of or self.clock.now()
        return sorted(
            (
                {
                    "refund_id": r.refund_id,
                    "order_id": r.order_id,
                    "refunded_at": r.refunded_at,
                    "amount": money(r.amount),
                    "currency": s.order(r.order_id).currency,
                }
                for r in s.refunds
                if r.refunded_at <= when
            ),
            key=lambda r: str(r["refund_id"]),
        )

    async def list_orders(self, request: Request) -> Response:
        rows = self.order_rows()
        customer = request.query_params.get("customer_id")
        status = request.query_params.get("status")
        rows = [
            r
            for r in rows
            if (customer is None or r["customer_id"] == customer)
            and (status is None or r["status"] == status)
        ]
        return json_response({"orders": [_jsonable(r) for r in rows]})

    async def get_order(self, request: Request) -> Response:
        wanted = request.path_params["order_id"]
        for row in self.order_rows():
            if row["order_id"] == wanted:
                return json_response({"order": _jsonable(row)})
        return json_response({"error": "not_found"}, 404)

    async def get_customer(self, request: Request) -> Response:
        wanted = request.path_params["customer_id"]
        for c in self._scenario().customers:
            if c.erp_id == wanted and c.created_at <= self.clock.now():
                return json_response({"customer": customer_json(c)})
        return json_response({"error": "not_found"}, 404)

    async def orders_csv(self, request: Request) -> Response:
        from handoff.sim.exports import ORDERS_COLUMNS, csv_text

        return Response(csv_text(ORDERS_COLUMNS, self.order_rows()), media_type="text/csv")

    async def refunds_csv(self, request: Request) -> Response:
        from handoff.sim.exports import REFUNDS_COLUMNS, csv_text

        return Response(csv_text(REFUNDS_COLUMNS, self.refund_rows()), media_type="text/csv")


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: iso(v) if isinstance(v, datetime) else v for k, v in row.items()}
