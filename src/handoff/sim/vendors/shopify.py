"""Shopify look-alike (POS and storefront, one shop): signed webhooks and an Admin API subset.

Webhooks (vendors.md §1): `customers/create`, `orders/create|paid|fulfilled|cancelled` and
`refunds/create`, JSON bodies with the field names of Shopify's REST resources, signed with
`X-Shopify-Hmac-Sha256` (handoff.connectors.shopify.sign) and carrying `X-Shopify-Topic`,
`-Webhook-Id` (the same on every retry), `-Event-Id`, `-Triggered-At`, `-Shop-Domain` and
`-API-Version`. Retry and subscription deletion: `delivery.SHOPIFY`. Stores listed in
`faults.silent_pos_stores` never fire profile or order webhooks.

Admin GraphQL subset (`POST /admin/api/{version}/graphql.json`, `X-Shopify-Access-Token`):
- `customers(first:, query: "email:…" | "phone:…")` and `customer(id:)` — lookups;
- `metafieldsSet(metafields: [...])` — at most 25 inputs (more → a top-level
  `MAX_INPUT_SIZE_EXCEEDED` error), atomic, `compareDigest` compare-and-set (`null` = must not
  exist; a mismatch → userError `STALE_OBJECT`, nothing written);
- `tagsAdd(id:, tags:)` / `tagsRemove(id:, tags:)`.
The operation is recognised by its root field, arguments come from `variables` or inline
literals; the response holds the whole object whatever the selection set asked for (a
superset, which GraphQL clients read fine). Cost-based throttling (`ratelimit.CostBucket`,
2,000 points restoring 100/s by default): a query over budget gets HTTP 200 with
`errors[{message: "Throttled", extensions.code: THROTTLED}]`; every answer carries
`extensions.cost` with `throttleStatus`.

REST subset: `GET /admin/api/{version}/customers/{id}.json` and `customers/search.json`
behind a leaky bucket (40, leaking 2/s) with `X-Shopify-Shop-Api-Call-Limit: n/40` and 429 +
`Retry-After: 2.0` when full.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from handoff.connectors import shopify as shopify_connector
from handoff.sim.clock import SimClock
from handoff.sim.delivery import Message, stable_uuid
from handoff.sim.faults import World
from handoff.sim.ratelimit import CostBucket, LeakyBucket
from handoff.sim.scenario import Order, Refund, ShopCustomer, iso, money
from handoff.sim.scenario_config import FaultWindow
from handoff.sim.vendors.common import VendorApi, json_response, read_json

API_VERSION = "2026-01"
MAX_METAFIELDS = 25
MUTATION_COST = 10
REST_THROTTLED = (
    "Exceeded 2 calls per second for api client. "
    "Reduce request rates to resume uninterrupted service."
)


# --- webhook payloads ---------------------------------------------------------------------------


def customer_json(c: ShopCustomer) -> dict[str, Any]:
    return {
        "id": c.shopify_id,
        "admin_graphql_api_id": c.gid,
        "email": c.email,
        "phone": c.phone,
        "first_name": c.first_name,
        "last_name": c.last_name,
        "created_at": iso(c.created_at),
        "updated_at": iso(c.created_at),
        "state": "disabled" if c.store_id != "WEB" else "enabled",
        "tags": "",
        "currency": "USD",
        "email_marketing_consent": {
            "state": "subscribed" if c.accepts_marketing else "not_subscribed",
            "opt_in_level": "single_opt_in" if c.accepts_marketing else None,
            "consent_updated_at": iso(c.created_at) if c.accepts_marketing else None,
        },
        "default_address": {"zip": c.zip, "country_code": "US", "default": True},
    }


def order_json(order: Order, customer: ShopCustomer, step: str) -> dict[str, Any]:
    """The order resource as it stands at `step` (create, paid, fulfilled, cancelled)."""
    currency = order.currency
    lines = []
    for line in order.lines:
        lines.append(
            {
                "id": line.line_id,
                "sku": line.sku,
                "title": line.sku.replace("-", " ").title(),
                "quantity": line.quantity,
                "price": money(line.unit_price),
                "gift_card": line.gift_card,
                "taxable": not line.gift_card,
                "total_discount": money(line.discount),
                "discount_allocations": (
                    [{"amount": money(line.discount), "discount_application_index": 0}]
                    if line.discount
                    else []
                ),
                "product_type": line.category,
            }
        )
    data: dict[str, Any] = {
        "id": order.shopify_id,
        "admin_graphql_api_id": order.shopify_gid,
        "name": f"#{order.number}",
        "order_number": order.number,
        "email": customer.email,
        "phone": customer.phone,
        "currency": currency,
        "presentment_currency": currency,
        "created_at": iso(order.placed_at),
        "processed_at": iso(order.paid_at if step != "create" else order.placed_at),
        "updated_at": iso(_step_time(order, step)),
        "financial_status": "pending" if step == "create" else "paid",
        "fulfillment_status": "fulfilled" if step == "fulfilled" else None,
        "cancelled_at": iso(order.cancelled_at)
        if step == "cancelled" and order.cancelled_at
        else None,
        "cancel_reason": "customer" if step == "cancelled" else None,
        "source_name": "pos" if order.channel == "pos" else "web",
        "location_id": _location_id(order.store_id) if order.channel == "pos" else None,
        "taxes_included": False,
        "total_line_items_price": money(order.subtotal),
        "subtotal_price": money(order.subtotal - order.discount),
        "total_discounts": money(order.discount),
        "total_tax": money(order.tax),
        "total_price": money(order.total),
        "total_shipping_price_set": {
            "shop_money": {"amount": money(order.shipping), "currency_code": currency}
        },
        "shipping_lines": (
            [{"title": "Standard", "price": money(order.shipping)}] if order.shipping else []
        ),
        "customer": {
            "id": customer.shopify_id,
            "email": customer.email,
            "phone": customer.phone,
            "first_name": customer.first_name,
            "last_name": customer.last_name,
            "default_address": {"zip": customer.zip},
        },
        "line_items": lines,
    }
    return data


def refund_json(refund: Refund, order: Order) -> dict[str, Any]:
    by_id = {line.line_id: line for line in order.lines}
    return {
        "id": refund.shopify_id,
        "order_id": order.shopify_id,
        "created_at": iso(refund.refunded_at),
        "processed_at": iso(refund.refunded_at),
        "restock": True,
        "note": "full refund" if refund.full else "return",
        "refund_line_items": [
            {
                "id": refund.shopify_id * 10 + i,
                "line_item_id": r.line_id,
                "quantity": r.quantity,
                "subtotal": money(r.amount),
                "subtotal_set": {
                    "shop_money": {"amount": money(r.amount), "currency_code": order.currency}
                },
                "line_item": {
                    "id": r.line_id,
                    "sku": r.sku,
                    "price": money(by_id[r.line_id].unit_price),
                    "gift_card": False,
                },
            }
            for i, r in enumerate(refund.lines)
        ],
        "transactions": [
            {
                "amount": money(refund.amount),
                "kind": "refund",
                "status": "success",
                "currency": order.currency,
            }
        ],
        "order_adjustments": [],
    }


def _location_id(store_id: str) -> int:
    digits = "".join(ch for ch in store_id if ch.isdigit()) or "0"
    return 61_000_000 + int(digits)


def _step_time(order: Order, step: str) -> datetime:
    times = {
        "create": order.placed_at,
        "paid": order.paid_at,
        "fulfilled": order.fulfilled_at,
        "cancelled": order.cancelled_at,
    }
    return times[step] or order.placed_at


def _message(
    topic: str, resource: str, at: datetime, ref: str, payload: Any, **extra: Any
) -> Message:
    webhook_id = stable_uuid("shopify", topic, resource)
    return Message(
        message_id=f"shopify:{topic}:{resource}",
        system="shopify",
        topic=topic,
        fired_at=at,
        ref=ref,
        payload=payload,
        delivery_id=webhook_id,
        subscription=topic,
        **extra,
    )


def webhook_messages(world: World) -> list[Message]:
    """Every webhook the shop fires in the scenario (silent stores marked never_fired)."""
    scenario = world.scenario
    out: list[Message] = []
    for c in scenario.customers:
        silent = "pos_silent_store" if world.is_silent(c.store_id) else None
        out.append(
            _message(
                "customers/create",
                str(c.shopify_id),
                c.created_at,
                f"customer:{c.shopify_id}",
                customer_json(c),
                never_fired=silent,
            )
        )
    for order in scenario.orders:
        customer = scenario.customer(order.shopify_customer_id)
        silent = "pos_silent_store" if world.is_silent(order.store_id) else None
        steps: list[tuple[str, str, datetime | None]] = [
            ("orders/create", "create", order.placed_at),
            ("orders/paid", "paid", order.paid_at),
            ("orders/fulfilled", "fulfilled", order.fulfilled_at),
            ("orders/cancelled", "cancelled", order.cancelled_at),
        ]
        for topic, step, at in steps:
            if at is None:
                continue
            out.append(
                _message(
                    topic,
                    str(order.shopify_id),
                    at,
                    f"order:{order.order_id}:{step}",
                    order_json(order, customer, step),
                    order_id=order.order_id,
                    never_fired=silent,
                )
            )
        for refund in scenario.refunds_of(order.order_id):
            out.append(
                _message(
                    "refunds/create",
                    str(refund.shopify_id),
                    refund.refunded_at,
                    f"refund:{refund.refund_id}",
                    refund_json(refund, order),
                    order_id=order.order_id,
                    never_fired=silent,
                )
            )
    return out


@dataclass(frozen=True)
class ShopifySigner:
    """Signs like Shopify: HMAC over the raw body; the same headers on every retry."""

    secret: str
    shop_domain: str = "sim-retail.myshopify.com"
    api_version: str = API_VERSION

    def __call__(
        self, message: Message, attempt: int, now: datetime, url: str
    ) -> tuple[bytes, dict[str, str]]:
        body = json.dumps(message.payload, separators=(",", ":"), ensure_ascii=False).encode()
        headers = shopify_connector.sign(
            self.secret.encode(),
            body,
            topic=message.topic,
            webhook_id=message.delivery_id,
            shop_domain=self.shop_domain,
            api_version=self.api_version,
            triggered_at=iso(message.fired_at),
        )
        headers["X-Shopify-Event-Id"] = stable_uuid("shopify-event", message.message_id)
        headers["Content-Type"] = "application/json"
        return body, headers


# --- Admin API ---------------------------------------------------------------------------------


@dataclass
class Metafield:
    id: int
    owner_id: str
    namespace: str
    key: str
    type: str
    value: str
    created_at: datetime
    updated_at: datetime
    version: int = 1

    @property
    def compare_digest(self) -> str:
        raw = f"{self.owner_id}|{self.namespace}|{self.key}|{self.type}|{self.value}|{self.version}"
        return hashlib.sha256(raw.encode()).hexdigest()

    def json(self) -> dict[str, Any]:
        return {
            "id": f"gid://shopify/Metafield/{self.id}",
            "namespace": self.namespace,
            "key": self.key,
            "type": self.type,
            "value": self.value,
            "compareDigest": self.compare_digest,
            "ownerType": "CUSTOMER",
            "createdAt": iso(self.created_at),
            "updatedAt": iso(self.updated_at),
        }


@dataclass
class ShopCustomerState:
    id: int
    email: str | None
    phone: str | None
    first_name: str
    last_name: str
    zip: str
    tags: list[str] = field(default_factory=list)
    metafields: dict[tuple[str, str], Metafield] = field(default_factory=dict)
    updated_at: datetime | None = None

    @property
    def gid(self) -> str:
        return f"gid://shopify/Customer/{self.id}"

    def graphql(self, wanted: tuple[str, str] | None) -> dict[str, Any]:
        fields = sorted(self.metafields.values(), key=lambda m: (m.namespace, m.key))
        node: dict[str, Any] = {
            "id": self.gid,
            "legacyResourceId": str(self.id),
            "email": self.email,
            "phone": self.phone,
            "firstName": self.first_name,
            "lastName": self.last_name,
            "tags": sorted(self.tags, key=str.lower),
            "updatedAt": iso(self.updated_at) if self.updated_at else None,
            "metafields": {
                "nodes": [m.json() for m in fields],
                "edges": [{"node": m.json()} for m in fields],
            },
        }
        if wanted is not None:
            found = self.metafields.get(wanted)
            node["metafield"] = found.json() if found else None
        return node

    def rest(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "email": self.email,
            "phone": self.phone,
            "first_name": self.first_name,
            "last_name": self.last_name,
            "tags": ", ".join(sorted(self.tags, key=str.lower)),
            "default_address": {"zip": self.zip},
            "admin_graphql_api_id": self.gid,
        }


_ROOT = re.compile(r"\b(customers|customer|metafieldsSet|tagsAdd|tagsRemove)\s*(\(|\{)")
_ARG = re.compile(
    r"(\w+)\s*:\s*(\$\w+|\"(?:[^\"\\]|\\.)*\"|-?\d+|\[(?:\s*\"(?:[^\"\\]|\\.)*\"\s*,?)*\s*\])"
)
_METAFIELD_ARG = re.compile(
    r"metafield\s*\(\s*(?:namespace\s*:\s*\"([^\"]*)\"\s*,?\s*key\s*:\s*\"([^\"]*)\"|"
    r"key\s*:\s*\"([^\"]*)\"\s*,?\s*namespace\s*:\s*\"([^\"]*)\")"
)
_QUERY_TERM = re.compile(r"(email|phone|id)\s*:\s*(\"[^\"]*\"|\S+)")


def _strip_comments(query: str) -> str:
    return "\n".join(line.split("#", 1)[0] for line in query.splitlines())


def _args(query: str, start: int, variables: dict[str, Any]) -> dict[str, Any]:
    """The root field's arguments: the parenthesised text after it, literals or $variables."""
    if start >= len(query) or query[start] != "(":
        return {}
    depth, end = 0, start
    for end in range(start, len(query)):
        if query[end] == "(":
            depth += 1
        elif query[end] == ")":
            depth -= 1
            if depth == 0:
                break
    out: dict[str, Any] = {}
    for name, raw in _ARG.findall(query[start + 1 : end]):
        if raw.startswith("$"):
            out[name] = variables.get(raw[1:])
        else:
            out[name] = json.loads(raw)
    return out


class ShopifyApi(VendorApi):
    """The Admin API subset over an inspectable shop state."""

    name = "shopify"

    def __init__(
        self,
        clock: SimClock,
        *,
        token: str,
        seed: int = 0,
        windows: Sequence[FaultWindow] = (),
        origin: datetime | None = None,
        graphql_maximum: float = 2000.0,
        graphql_restore_rate: float = 100.0,
    ) -> None:
        super().__init__(clock, token=token, seed=seed, windows=windows, origin=origin)
        self.customers: dict[int, ShopCustomerState] = {}
        self.cost = CostBucket(clock, maximum=graphql_maximum, restore_rate=graphql_restore_rate)
        self.rest_bucket = LeakyBucket(clock, capacity=40, leak_rate=2)
        self.subscriptions: dict[str, datetime | None] = {}  # topic → deleted at (None: active)
        self._metafield_seq = 1
        self.app = Starlette(
            routes=[
                Route(
                    "/admin/api/{version}/graphql.json", self.route(self.graphql), methods=["POST"]
                ),
                Route(
                    "/admin/api/{version}/customers/search.json",
                    self.route(self.rest_search),
                    methods=["GET"],
                ),
                Route(
                    "/admin/api/{version}/customers/{id:int}.json",
                    self.route(self.rest_customer),
                    methods=["GET"],
                ),
            ]
        )

    def load(self, world: World) -> None:
        """Seed the shop from the scenario (VIP tags as the POS shows them)."""
        vip = {f.external_id for f in world.flags if f.system == "pos" and f.is_vip}
        for c in world.scenario.customers:
            self.customers[c.shopify_id] = ShopCustomerState(
                c.shopify_id,
                c.email,
                c.phone,
                c.first_name,
                c.last_name,
                c.zip,
                ["VIP"] if str(c.shopify_id) in vip else [],
                updated_at=c.created_at,
            )
        for topic in (
            "customers/create",
            "orders/create",
            "orders/paid",
            "orders/fulfilled",
            "orders/cancelled",
            "refunds/create",
        ):
            self.subscriptions.setdefault(topic, None)

    # --- auth and errors ------------------------------------------------------------------------

    def authorised(self, request: Request) -> bool:
        return request.headers.get("x-shopify-access-token") == self.token

    def unauthorised(self) -> Response:
        return json_response(
            {
                "errors": "[API] Invalid API key or access token "
                "(unrecognized login or wrong password)"
            },
            401,
        )

    def fault_response(self, status: int, retry_after: int | None) -> Response:
        headers = {"Retry-After": f"{retry_after}.0"} if retry_after else {}
        return json_response(
            {"errors": "Internal Server Error" if status >= 500 else REST_THROTTLED},
            status,
            headers,
        )

    # --- customer lookups -------------------------------------------------------------------------

    def find(self, query: str) -> list[ShopCustomerState]:
        terms = _QUERY_TERM.findall(query or "")
        found = list(self.customers.values())
        for name, raw in terms:
            value = raw.strip('"').lower()
            if name == "email":
                found = [c for c in found if (c.email or "").lower() == value]
            elif name == "phone":
                found = [c for c in found if (c.phone or "") == raw.strip('"')]
            elif name == "id":
                found = [c for c in found if str(c.id) == value]
        return sorted(found, key=lambda c: c.id)

    def by_gid(self, gid: Any) -> ShopCustomerState | None:
        if not isinstance(gid, str) or not gid.startswith("gid://shopify/Customer/"):
            return None
        tail = gid.rsplit("/", 1)[-1]
        return self.customers.get(int(tail)) if tail.isdigit() else None

    # --- GraphQL ----------------------------------------------------------------------------------

    async def graphql(self, request: Request) -> Response:
        data = await read_json(request)
        if not isinstance(data, dict) or not isinstance(data.get("query"), str):
            return json_response(
                {"errors": {"query": "Required parameter missing or invalid"}}, 400
            )
        query = _strip_comments(data["query"])
        variables = data.get("variables") or {}
        if not isinstance(variables, dict):
            return json_response({"errors": [{"message": "Variables must be an object"}]}, 200)
        match = _ROOT.search(query)
        if match is None:
            return json_response(
                {
                    "errors": [
                        {
                            "message": "Unsupported operation in the simulator",
                            "extensions": {"code": "UNSUPPORTED"},
                        }
                    ]
                }
            )
        root = match.group(1)
        args = _args(query, match.end() - 1, variables)
        requested = self._requested_cost(root, args)
        decision = self.cost.spend(requested)
        cost = {
            "requestedQueryCost": requested,
            "actualQueryCost": None,
            "throttleStatus": decision.throttle_status(),
        }
        if not decision.allowed:
            return json_response(
                {
                    "errors": [
                        {
                            "message": "Throttled",
                            "extensions": {
                                "code": "THROTTLED",
                                "documentation": "https://shopify.dev/api/usage/rate-limits",
                            },
                        }
                    ],
                    "extensions": {"cost": cost},
                }
            )
        with self.lock:
            payload, actual = self._execute(root, args, query)
        refunded = self.cost.refund(requested - actual)
        cost["actualQueryCost"] = actual
        cost["throttleStatus"] = {**decision.throttle_status(), "currentlyAvailable": int(refunded)}
        return json_response(payload | {"extensions": {"cost": cost}})

    @staticmethod
    def _requested_cost(root: str, args: dict[str, Any]) -> int:
        if root in ("metafieldsSet", "tagsAdd", "tagsRemove"):
            return MUTATION_COST
        if root == "customers":
            first = args.get("first")
            return 2 + (first if isinstance(first, int) and first > 0 else 10)
        return 1

    def _execute(self, root: str, args: dict[str, Any], query: str) -> tuple[dict[str, Any], int]:
        wanted_match = _METAFIELD_ARG.search(query)
        wanted = None
        if wanted_match:
            ns, key, key2, ns2 = wanted_match.groups()
            wanted = (ns or ns2 or "", key or key2 or "")
        if root == "customers":
            first = args.get("first") if isinstance(args.get("first"), int) else 10
            found = self.find(str(args.get("query") or ""))[: max(0, int(first or 0))]
            nodes = [c.graphql(wanted) for c in found]
            return (
                {
                    "data": {
                        "customers": {
                            "edges": [{"node": n, "cursor": n["id"]} for n in nodes],
                            "nodes": nodes,
                            "pageInfo": {"hasNextPage": False, "hasPreviousPage": False},
                        }
                    }
                },
                2 + len(nodes),
            )
        if root == "customer":
            customer = self.by_gid(args.get("id"))
            return {"data": {"customer": customer.graphql(wanted) if customer else None}}, 1
        if root == "metafieldsSet":
            return {"data": {"metafieldsSet": None}} | self._metafields_set(args), MUTATION_COST
        return {"data": {root: self._tags(root, args)}}, MUTATION_COST

    def _metafields_set(self, args: dict[str, Any]) -> dict[str, Any]:
        inputs = args.get("metafields")
        if not isinstance(inputs, list):
            return {
                "errors": [
                    {
                        "message": "Variable $metafields of type [MetafieldsSetInput!]! "
                        "was provided invalid value",
                        "extensions": {"code": "INVALID_VARIABLE"},
                    }
                ]
            }
        if len(inputs) > MAX_METAFIELDS:
            return {
                "data": {"metafieldsSet": None},
                "errors": [
                    {
                        "message": f"The input array size of {len(inputs)} is greater than the "
                        f"maximum allowed of {MAX_METAFIELDS}.",
                        "path": ["metafieldsSet", "metafields"],
                        "extensions": {"code": "MAX_INPUT_SIZE_EXCEEDED"},
                    }
                ],
            }
        errors: list[dict[str, Any]] = []
        plan: list[tuple[ShopCustomerState, dict[str, Any]]] = []
        for i, item in enumerate(inputs):
            where = ["metafields", str(i)]
            if not isinstance(item, dict):
                errors.append({"field": where, "message": "Input is invalid", "code": "INVALID"})
                continue
            owner = self.by_gid(item.get("ownerId"))
            if owner is None:
                errors.append(
                    {
                        "field": [*where, "ownerId"],
                        "message": "Owner does not exist.",
                        "code": "INVALID_VALUE",
                    }
                )
                continue
            namespace, key = item.get("namespace") or "$app", item.get("key")
            value, type_ = item.get("value"), item.get("type")
            if not isinstance(key, str) or not key or not isinstance(value, str):
                errors.append(
                    {
                        "field": [*where, "key"],
                        "message": "Key and value are required.",
                        "code": "BLANK",
                    }
                )
                continue
            existing = owner.metafields.get((namespace, key))
            if type_ is None and existing is not None:
                type_ = existing.type
            if not isinstance(type_, str) or not _valid_value(type_, value):
                errors.append(
                    {
                        "field": [*where, "value"],
                        "message": f"Value is invalid for type {type_}.",
                        "code": "INVALID_VALUE",
                    }
                )
                continue
            if "compareDigest" in item:
                digest = item["compareDigest"]
                current = existing.compare_digest if existing else None
                if digest != current:
                    errors.append(
                        {
                            "field": [*where],
                            "message": "The resource has been updated since it was loaded. "
                            "Try again with an updated `compareDigest` value.",
                            "code": "STALE_OBJECT",
                        }
                    )
                    continue
            plan.append(
                (owner, {"namespace": namespace, "key": key, "value": value, "type": type_})
            )
        if errors:
            return {"data": {"metafieldsSet": {"metafields": None, "userErrors": errors}}}
        now = self.clock.now()
        written = []
        for owner, spec in plan:
            k = (spec["namespace"], spec["key"])
            existing = owner.metafields.get(k)
            if existing is None:
                existing = Metafield(
                    self._metafield_seq,
                    owner.gid,
                    spec["namespace"],
                    spec["key"],
                    spec["type"],
                    spec["value"],
                    now,
                    now,
                )
                self._metafield_seq += 1
                owner.metafields[k] = existing
            elif (existing.value, existing.type) != (spec["value"], spec["type"]):
                existing.value, existing.type = spec["value"], spec["type"]
                existing.version += 1
                existing.updated_at = now
            owner.updated_at = now
            written.append(existing.json())
        return {"data": {"metafieldsSet": {"metafields": written, "userErrors": []}}}

    def _tags(self, root: str, args: dict[str, Any]) -> dict[str, Any]:
        customer = self.by_gid(args.get("id"))
        raw = args.get("tags")
        tags = [t.strip() for t in raw.split(",")] if isinstance(raw, str) else raw
        if customer is None:
            return {
                "node": None,
                "userErrors": [{"field": ["id"], "message": "Resource not found"}],
            }
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            return {
                "node": None,
                "userErrors": [{"field": ["tags"], "message": "Tags are invalid"}],
            }
        lower = {t.lower(): t for t in customer.tags}
        for tag in (t for t in tags if t):
            if root == "tagsAdd":
                lower.setdefault(tag.lower(), tag)
            else:
                lower.pop(tag.lower(), None)
        customer.tags = list(lower.values())
        customer.updated_at = self.clock.now()
        return {"node": {"id": customer.gid}, "userErrors": []}

    # --- REST -------------------------------------------------------------------------------------

    def _rest_gate(self) -> tuple[Response | None, dict[str, str]]:
        decision = self.rest_bucket.acquire()
        used = round(self.rest_bucket.capacity - decision.remaining)
        headers = {"X-Shopify-Shop-Api-Call-Limit": f"{used}/{int(self.rest_bucket.capacity)}"}
        if not decision.allowed:
            return (
                json_response(
                    {"errors": REST_THROTTLED},
                    429,
                    headers | {"Retry-After": "2.0"},
                ),
                headers,
            )
        return None, headers

    async def rest_customer(self, request: Request) -> Response:
        refused, headers = self._rest_gate()
        if refused is not None:
            return refused
        customer = self.customers.get(int(request.path_params["id"]))
        if customer is None:
            return json_response({"errors": "Not Found"}, 404, headers)
        return json_response({"customer": customer.rest()}, 200, headers)

    def export_rows(self) -> list[dict[str, Any]]:
        """reconcile.md's `pos_customers`: the VIP flag as the POS shows it (the `VIP` tag)."""
        with self.lock:
            return [
                {
                    "id": str(c.id),
                    "email": c.email,
                    "phone": c.phone,
                    "is_vip": any(t.lower() == "vip" for t in c.tags),
                    "tags": ";".join(sorted(c.tags, key=str.lower)),
                }
                for c in sorted(self.customers.values(), key=lambda c: c.id)
            ]

    async def rest_search(self, request: Request) -> Response:
        refused, headers = self._rest_gate()
        if refused is not None:
            return refused
        found = self.find(request.query_params.get("query", ""))
        return json_response({"customers": [c.rest() for c in found]}, 200, headers)


def _valid_value(type_: str, value: str) -> bool:
    if type_ == "boolean":
        return value in ("true", "false")
    if type_ == "number_integer":
        return value.lstrip("-").isdigit()
    if type_ == "json":
        try:
            json.loads(value)
        except ValueError:
            return False
        return True
    return type_ in (
        "single_line_text_field",
        "multi_line_text_field",
        "date",
        "date_time",
        "number_decimal",
    )
