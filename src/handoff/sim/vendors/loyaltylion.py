"""LoyaltyLion look-alike (loyalty): members, points, approval period, tiers, webhooks, exports.

The platform's state starts as `faults.LoyaltyView` (members and an activity log that already
carries the injected faults) and changes with API writes. Balances are always computed from
the activity log as of the SimClock's now, so the approval period (points pending until
`vests_at`) and tiers (on the spend the platform has counted) move with simulated time.

Webhooks (vendors.md §1), signed `x-loyaltylion-hmac-sha256` = base64(HMAC-SHA256(secret, body))
(handoff.connectors.loyaltylion.sign), deduplicated on the body `id`:
- `customers/update` when a member is created and after each change to their points;
- `program_events/customer.points_earned` five minutes after an earn, with the transaction and
  the `$purchase` activity naming the order.
Retries: `delivery.LOYALTYLION` (exponential backoff; 5 s timeout).

API (`Authorization: Bearer <token>`, 20 requests/s, 429 + Retry-After):
- `GET /v2/customers?email=&merchant_id=` and `GET /v2/customers/{merchant_id}`;
- `POST /v2/customers/{merchant_id}/points` `{"points": 1..1000000, "reason"}` (vendors.md §2);
- `POST /v2/customers/{merchant_id}/remove_points` `{"points", "reason"}` — the path is our
  guess (vendors.md lists the remove-points path as unconfirmed);
- `POST /v2/orders` `{merchant_id, customer_id, total, total_shipping, total_tax, payment_status}`
  — earns on total less shipping and tax when paid, pending for the approval period;
- `GET /v2/transactions?customer_id=` — the activity log;
- `GET /exports/activity.csv`, `GET /exports/members.csv` — reconcile.md's `loyalty_events` and
  `loyalty_members`.
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

from handoff.connectors import loyaltylion as loyaltylion_connector
from handoff.sim.clock import SimClock
from handoff.sim.delivery import Message, stable_uuid
from handoff.sim.faults import LoyaltyActivity, LoyaltyMember, World
from handoff.sim.ratelimit import FixedWindow
from handoff.sim.scenario import iso
from handoff.sim.scenario_config import FaultWindow, ProgramRules
from handoff.sim.truth import points_for, tier_for
from handoff.sim.vendors.common import VendorApi, json_response, read_json

POINTS_EARNED_DELAY = timedelta(minutes=5)
MAX_POINTS = 1_000_000


def _tier_json(rules: ProgramRules, spend: int) -> dict[str, Any]:
    name = tier_for(spend, rules)
    number = next(i for i, t in enumerate(rules.tiers, start=1) if t.name == name)
    return {
        "manual": False,
        "expires_at": None,
        "loyalty_tier": {"id": 100 + number, "name": name, "number": number},
    }


def customer_json(
    member: LoyaltyMember, rules: ProgramRules, total: int, pending: int, spend: int, at: datetime
) -> dict[str, Any]:
    return {
        "id": member.loyaltylion_id,
        "merchant_id": member.member_id,
        "email": member.email,
        "points_approved": total - pending,
        "points_pending": pending,
        "points_spent": 0,
        "updated_at": iso(at),
        "properties": {"first_name": member.first_name, "last_name": member.last_name},
        "loyalty_tier_membership": _tier_json(rules, spend),
    }


def webhook_messages(world: World) -> list[Message]:
    view = world.loyalty
    rules = view.rules
    members = {m.member_id: m for m in view.members}
    by_member: dict[str, list[LoyaltyActivity]] = {}
    for a in view.activity:
        by_member.setdefault(a.member_id, []).append(a)
    out: list[Message] = []

    def update(
        member: LoyaltyMember, at: datetime, history: list[LoyaltyActivity], key: str
    ) -> None:
        total = sum(a.points for a in history)
        pending = sum(a.points for a in history if a.vests_at > at)
        spend = sum(a.spend for a in history)
        body_id = stable_uuid("loyaltylion", "customers/update", key)
        out.append(
            Message(
                message_id=f"loyaltylion:update:{key}",
                system="loyaltylion",
                topic="customers/update",
                fired_at=at,
                ref=f"member:{member.member_id}:update",
                payload={
                    "id": body_id,
                    "topic": "customers/update",
                    "created_at": iso(at),
                    "customer": customer_json(member, rules, total, pending, spend, at),
                },
                delivery_id=body_id,
            )
        )

    for member in view.members:
        update(member, member.created_at, [], f"{member.member_id}:created")
    for member_id, activities in sorted(by_member.items()):
        member = members[member_id]
        for i, a in enumerate(activities):
            history = activities[: i + 1]
            update(member, a.occurred_at, history, a.event_id)
            if a.kind != "earn":
                continue
            at = a.occurred_at + POINTS_EARNED_DELAY
            total = sum(h.points for h in history)
            pending = sum(h.points for h in history if h.vests_at > at)
            spend = sum(h.spend for h in history)
            body_id = stable_uuid("loyaltylion", "points_earned", a.event_id)
            vested = a.vests_at <= a.occurred_at
            out.append(
                Message(
                    message_id=f"loyaltylion:earned:{a.event_id}",
                    system="loyaltylion",
                    topic="program_events/customer.points_earned",
                    fired_at=at,
                    ref=f"member:{member_id}:earn:{a.order_id}",
                    payload={
                        "id": body_id,
                        "topic": "program_events/customer.points_earned",
                        "created_at": iso(at),
                        "payload": {
                            "properties": {
                                "customer": customer_json(member, rules, total, pending, spend, at),
                                "transaction": {
                                    "id": a.event_id,
                                    "points_approved": a.points if vested else 0,
                                    "points_pending": 0 if vested else a.points,
                                    "created_at": iso(a.occurred_at),
                                    "resource": "activity",
                                    "activity": {
                                        "id": f"act-{a.event_id}",
                                        "merchant_id": a.order_id,
                                        "rule": {"name": a.reason},
                                    },
                                },
                            }
                        },
                    },
                    delivery_id=body_id,
                    order_id=a.order_id,
                )
            )
    return out


@dataclass(frozen=True)
class LoyaltyLionSigner:
    secret: str

    def __call__(
        self, message: Message, attempt: int, now: datetime, url: str
    ) -> tuple[bytes, dict[str, str]]:
        body = json.dumps(message.payload, separators=(",", ":"), ensure_ascii=False).encode()
        headers = loyaltylion_connector.sign(self.secret.encode(), body)
        headers["Content-Type"] = "application/json"
        return body, headers


# --- API ----------------------------------------------------------------------------------------


class LoyaltyLionApi(VendorApi):
    name = "loyaltylion"

    def __init__(
        self,
        clock: SimClock,
        *,
        token: str,
        seed: int = 0,
        windows: Sequence[FaultWindow] = (),
        origin: datetime | None = None,
        rules: ProgramRules | None = None,
        per_second: int = 20,
        allow_negative: bool = True,
    ) -> None:
        super().__init__(clock, token=token, seed=seed, windows=windows, origin=origin)
        self.rules = rules or ProgramRules()
        self.members: dict[str, LoyaltyMember] = {}
        self.activity: list[LoyaltyActivity] = []
        self.limiter = FixedWindow(clock, limit=per_second, window=1.0)
        self.allow_negative = allow_negative
        self._seq = 0
        self.app = Starlette(
            routes=[
                Route("/v2/customers", self.route(self.list_customers), methods=["GET"]),
                Route(
                    "/v2/customers/{merchant_id}", self.route(self.get_customer), methods=["GET"]
                ),
                Route(
                    "/v2/customers/{merchant_id}/points",
                    self.route(self.add_points),
                    methods=["POST"],
                ),
                Route(
                    "/v2/customers/{merchant_id}/remove_points",
                    self.route(self.remove_points),
                    methods=["POST"],
                ),
                Route("/v2/orders", self.route(self.track_order), methods=["POST"]),
                Route("/v2/transactions", self.route(self.transactions), methods=["GET"]),
                Route("/exports/activity.csv", self.route(self.activity_csv), methods=["GET"]),
                Route("/exports/members.csv", self.route(self.members_csv), methods=["GET"]),
            ]
        )

    def load(self, world: World) -> None:
        self.rules = world.loyalty.rules
        for m in world.loyalty.members:
            self.members[m.member_id] = m
        self.activity = list(world.loyalty.activity)
        self._seq = len(self.activity)

    # --- state ----------------------------------------------------------------------------------

    def state(self, member_id: str, as_of: datetime | None = None) -> tuple[int, int, int]:
        """(points approved + pending, pending, spend) of a member as of `as_of` (default now)."""
        when = as_of or self.clock.now()
        total = pending = spend = 0
        with self.lock:
            for a in self.activity:
                if a.member_id != member_id or a.occurred_at > when:
                    continue
                total += a.points
                spend += a.spend
                if a.vests_at > when:
                    pending += a.points
        return total, pending, spend

    def customer(self, member_id: str) -> dict[str, Any]:
        member = self.members[member_id]
        total, pending, spend = self.state(member_id)
        return customer_json(member, self.rules, total, pending, spend, self.clock.now())

    def _append(
        self,
        member_id: str,
        kind: str,
        points: int,
        reason: str,
        order_id: str | None,
        spend: int,
        vests: datetime,
    ) -> LoyaltyActivity:
        now = self.clock.now()
        with self.lock:
            self._seq += 1
            activity = LoyaltyActivity(
                f"LLT-{self._seq:07d}", member_id, kind, points, now, order_id, reason, spend, vests
            )
            self.activity.append(activity)
        return activity

    # --- gate -----------------------------------------------------------------------------------

    def _throttled(self) -> Response | None:
        decision = self.limiter.acquire()
        if decision.allowed:
            return None
        return json_response(
            {"error": "Too many requests"}, 429, {"Retry-After": decision.retry_after_header}
        )

    def unauthorised(self) -> Response:
        return json_response({"error": "Unauthorized"}, 401)

    # --- handlers ---------------------------------------------------------------------------------

    async def list_customers(self, request: Request) -> Response:
        if (refused := self._throttled()) is not None:
            return refused
        email = request.query_params.get("email")
        merchant = request.query_params.get("merchant_id")
        now = self.clock.now()
        found = [
            m
            for m in sorted(self.members.values(), key=lambda m: m.loyaltylion_id)
            if m.created_at <= now
            and (email is None or (m.email or "").lower() == email.lower())
            and (merchant is None or m.member_id == merchant)
        ]
        return json_response(
            {
                "customers": [self.customer(m.member_id) for m in found],
                "cursor": {"next": None, "prev": None},
            }
        )

    def _member(self, request: Request) -> LoyaltyMember | None:
        member = self.members.get(request.path_params["merchant_id"])
        if member is None or member.created_at > self.clock.now():
            return None
        return member

    async def get_customer(self, request: Request) -> Response:
        if (refused := self._throttled()) is not None:
            return refused
        member = self._member(request)
        if member is None:
            return json_response({"error": "Customer not found"}, 404)
        return json_response(self.customer(member.member_id))

    async def _points(self, request: Request, sign: int) -> Response:
        if (refused := self._throttled()) is not None:
            return refused
        member = self._member(request)
        if member is None:
            return json_response({"error": "Customer not found"}, 404)
        data = await read_json(request)
        points = data.get("points") if isinstance(data, dict) else None
        if isinstance(points, bool) or not isinstance(points, int) or not 1 <= points <= MAX_POINTS:
            return json_response(
                {"error": f"points must be an integer between 1 and {MAX_POINTS}"}, 400
            )
        reason = data.get("reason") if isinstance(data.get("reason"), str) else None
        if sign < 0 and not self.allow_negative:
            total, pending, _ = self.state(member.member_id)
            if points > total - pending:
                return json_response({"error": "Customer does not have enough points"}, 422)
        now = self.clock.now()
        self._append(
            member.member_id,
            "adjust",
            sign * points,
            reason or ("add" if sign > 0 else "remove"),
            None,
            0,
            now,
        )
        return json_response({}, 201)

    async def add_points(self, request: Request) -> Response:
        return await self._points(request, +1)

    async def remove_points(self, request: Request) -> Response:
        return await self._points(request, -1)

    async def track_order(self, request: Request) -> Response:
        if (refused := self._throttled()) is not None:
            return refused
        data = await read_json(request)
        if not isinstance(data, dict) or not data.get("merchant_id") or not data.get("customer_id"):
            return json_response({"error": "merchant_id and customer_id are required"}, 400)
        member = self.members.get(str(data["customer_id"]))
        if member is None:
            return json_response({"error": "Customer not found"}, 404)
        try:
            total = _minor(data.get("total"))
            shipping = _minor(data.get("total_shipping"))
            tax = _minor(data.get("total_tax"))
        except ValueError as exc:
            return json_response({"error": str(exc)}, 400)
        order_id = str(data["merchant_id"])
        if any(a.order_id == order_id and a.kind == "earn" for a in self.activity):
            return json_response({"error": "Order already exists"}, 409)
        if data.get("payment_status", "paid") == "paid":
            basis = max(0, total - shipping - tax)
            vests = self.clock.now() + timedelta(days=self.rules.pending_days)
            self._append(
                member.member_id,
                "earn",
                points_for(basis, self.rules),
                "$purchase",
                order_id,
                basis,
                vests,
            )
        return json_response({}, 201)

    async def transactions(self, request: Request) -> Response:
        if (refused := self._throttled()) is not None:
            return refused
        wanted = request.query_params.get("customer_id")
        now = self.clock.now()
        rows = [
            {
                "id": a.event_id,
                "customer_id": a.member_id,
                "points": a.points,
                "kind": a.kind,
                "reason": a.reason,
                "merchant_order_id": a.order_id,
                "created_at": iso(a.occurred_at),
                "approved_at": iso(a.vests_at),
            }
            for a in self.activity
            if a.occurred_at <= now and (wanted is None or a.member_id == wanted)
        ]
        return json_response({"transactions": rows})

    # --- exports ----------------------------------------------------------------------------------

    def event_rows(self, as_of: datetime | None = None) -> list[dict[str, Any]]:
        when = as_of or self.clock.now()
        with self.lock:
            rows = [
                {
                    "event_id": a.event_id,
                    "member_id": a.member_id,
                    "kind": a.kind,
                    "points": a.points,
                    "occurred_at": a.occurred_at,
                    "order_id": a.order_id,
                    "email": self.members[a.member_id].email,
                    "reason": a.reason,
                    "vests_at": a.vests_at,
                }
                for a in self.activity
                if a.occurred_at <= when
            ]
        return sorted(rows, key=lambda r: str(r["event_id"]))

    def member_rows(self, as_of: datetime | None = None) -> list[dict[str, Any]]:
        when = as_of or self.clock.now()
        rows = []
        for m in sorted(self.members.values(), key=lambda m: int(m.member_id)):
            if m.created_at > when:
                continue
            total, pending, spend = self.state(m.member_id, when)
            rows.append(
                {
                    "member_id": m.member_id,
                    "points_balance": total,
                    "points_pending": pending,
                    "email": m.email,
                    "phone": m.phone,
                    "first_name": m.first_name,
                    "last_name": m.last_name,
                    "zip": m.zip,
                    "tier": tier_for(spend, self.rules),
                    "customer_id": m.customer_id,
                    "loyaltylion_id": m.loyaltylion_id,
                    "created_at": m.created_at,
                }
            )
        return rows

    async def activity_csv(self, request: Request) -> Response:
        from handoff.sim.exports import LOYALTY_EVENTS_COLUMNS, csv_text

        return Response(csv_text(LOYALTY_EVENTS_COLUMNS, self.event_rows()), media_type="text/csv")

    async def members_csv(self, request: Request) -> Response:
        from handoff.sim.exports import LOYALTY_MEMBERS_COLUMNS, csv_text

        return Response(
            csv_text(LOYALTY_MEMBERS_COLUMNS, self.member_rows()), media_type="text/csv"
        )


def _minor(value: Any) -> int:
    """A decimal string or integer cents → minor units."""
    if value is None:
        return 0
    if isinstance(value, bool | float):
        raise ValueError("amounts must be decimal strings")
    if isinstance(value, int):
        return value
    text = str(value).strip()
    whole, _, frac = text.partition(".")
    if not whole.isdigit() or (frac and (not frac.isdigit() or len(frac) > 2)):
        raise ValueError(f"invalid amount {text!r}")
    return int(whole) * 100 + (int(frac.ljust(2, "0")) if frac else 0)
