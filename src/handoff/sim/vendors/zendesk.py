"""Zendesk look-alike (helpdesk): users with `user_fields`, update by id, 429 + Retry-After.

API (`Authorization: Bearer <token>`; paths with or without `.json`):
- `GET /api/v2/users/{id}`; `PUT /api/v2/users/{id}` `{"user": {"user_fields": {...}, ...}}`
  — user fields merge (a key set to null clears it; fields that are not defined on the account
  are ignored, as Zendesk does);
- `GET /api/v2/users/search?query=email:…`;
- `POST /api/v2/users/create_or_update` `{"user": {...}}` (by email).
Defined user fields: `vip` (checkbox), `loyalty_tier` (text), `loyalty_points` (integer).
Rate limit: 200 requests per minute by default (`ratelimit.FixedWindow`), `X-Rate-Limit` and
`X-Rate-Limit-Remaining` on every answer, 429 with `Retry-After` (seconds to the next window).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from handoff.sim.clock import SimClock
from handoff.sim.faults import World
from handoff.sim.ratelimit import FixedWindow
from handoff.sim.scenario import iso
from handoff.sim.scenario_config import FaultWindow
from handoff.sim.vendors.common import VendorApi, json_response, read_json

USER_FIELDS: dict[str, type] = {"vip": bool, "loyalty_tier": str, "loyalty_points": int}


@dataclass
class ZendeskUser:
    id: int
    name: str
    email: str | None
    phone: str | None
    created_at: datetime
    updated_at: datetime
    user_fields: dict[str, Any] = field(default_factory=dict)

    def json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "url": f"https://sim.zendesk.com/api/v2/users/{self.id}.json",
            "name": self.name,
            "email": self.email,
            "phone": self.phone,
            "role": "end-user",
            "active": True,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            "user_fields": {k: self.user_fields.get(k) for k in USER_FIELDS},
        }


class ZendeskApi(VendorApi):
    name = "zendesk"

    def __init__(
        self,
        clock: SimClock,
        *,
        token: str,
        seed: int = 0,
        windows: Sequence[FaultWindow] = (),
        origin: datetime | None = None,
        per_minute: int = 200,
    ) -> None:
        super().__init__(clock, token=token, seed=seed, windows=windows, origin=origin)
        self.users: dict[int, ZendeskUser] = {}
        self.limiter = FixedWindow(clock, limit=per_minute, window=60.0)
        self._next_id = 3_700_000_001
        routes = []
        for suffix in ("", ".json"):
            routes += [
                Route(f"/api/v2/users/search{suffix}", self.route(self.search), methods=["GET"]),
                Route(
                    f"/api/v2/users/create_or_update{suffix}",
                    self.route(self.create_or_update),
                    methods=["POST"],
                ),
                Route(
                    f"/api/v2/users/{{user_id:int}}{suffix}", self.route(self.show), methods=["GET"]
                ),
                Route(
                    f"/api/v2/users/{{user_id:int}}{suffix}",
                    self.route(self.update),
                    methods=["PUT"],
                ),
            ]
        self.app = Starlette(routes=routes)

    def load(self, world: World) -> None:
        vip = {f.external_id for f in world.flags if f.system == "helpdesk" and f.is_vip}
        for p in world.scenario.helpdesk_users:
            uid = int(p.external_id)
            self.users[uid] = ZendeskUser(
                uid,
                f"{p.first_name} {p.last_name}",
                p.email,
                p.phone,
                p.created_at,
                p.created_at,
                {"vip": p.external_id in vip},
            )

    def unauthorised(self) -> Response:
        return json_response({"error": "Couldn't authenticate you"}, 401)

    def _gate(self) -> tuple[Response | None, dict[str, str]]:
        decision = self.limiter.acquire()
        headers = {
            "X-Rate-Limit": str(self.limiter.limit),
            "X-Rate-Limit-Remaining": str(int(decision.remaining)),
        }
        if decision.allowed:
            return None, headers
        return (
            json_response(
                {"error": "TooManyRequests", "description": "You have exceeded the rate limit"},
                429,
                headers | {"Retry-After": decision.retry_after_header},
            ),
            headers,
        )

    @staticmethod
    def _not_found(headers: dict[str, str]) -> Response:
        return json_response({"error": "RecordNotFound", "description": "Not found"}, 404, headers)

    def _apply(self, user: ZendeskUser, data: dict[str, Any]) -> str | None:
        fields = data.get("user_fields")
        if fields is not None and not isinstance(fields, dict):
            return "user_fields must be an object"
        for key, value in (fields or {}).items():
            kind = USER_FIELDS.get(key)
            if kind is None:
                continue
            if value is not None and (
                not isinstance(value, kind) or (kind is int and isinstance(value, bool))
            ):
                return f"user_fields.{key} must be {kind.__name__}"
            user.user_fields[key] = value
        for key in ("name", "email", "phone"):
            if isinstance(data.get(key), str):
                setattr(user, key, data[key])
        user.updated_at = self.clock.now()
        return None

    async def show(self, request: Request) -> Response:
        refused, headers = self._gate()
        if refused:
            return refused
        user = self.users.get(request.path_params["user_id"])
        return (
            json_response({"user": user.json()}, 200, headers) if user else self._not_found(headers)
        )

    async def update(self, request: Request) -> Response:
        refused, headers = self._gate()
        if refused:
            return refused
        data = await read_json(request)
        if not isinstance(data, dict) or not isinstance(data.get("user"), dict):
            return json_response(
                {"error": "InvalidEndpoint", "description": "user object required"}, 400, headers
            )
        with self.lock:
            user = self.users.get(request.path_params["user_id"])
            if user is None:
                return self._not_found(headers)
            problem = self._apply(user, data["user"])
        if problem:
            return json_response({"error": "RecordInvalid", "description": problem}, 422, headers)
        return json_response({"user": user.json()}, 200, headers)

    async def search(self, request: Request) -> Response:
        refused, headers = self._gate()
        if refused:
            return refused
        query = request.query_params.get("query", "").strip()
        found = list(self.users.values())
        if query.startswith("email:"):
            email = query.removeprefix("email:").strip().lower()
            found = [u for u in found if (u.email or "").lower() == email]
        rows = [u.json() for u in sorted(found, key=lambda u: u.id)]
        return json_response(
            {"users": rows, "count": len(rows), "next_page": None, "previous_page": None},
            200,
            headers,
        )

    async def create_or_update(self, request: Request) -> Response:
        refused, headers = self._gate()
        if refused:
            return refused
        data = await read_json(request)
        if not isinstance(data, dict) or not isinstance(data.get("user"), dict):
            return json_response(
                {"error": "InvalidEndpoint", "description": "user object required"}, 400, headers
            )
        spec = data["user"]
        email = spec.get("email")
        with self.lock:
            existing = next(
                (
                    u
                    for u in self.users.values()
                    if isinstance(email, str) and (u.email or "").lower() == email.lower()
                ),
                None,
            )
            status = 200
            if existing is None:
                now = self.clock.now()
                existing = ZendeskUser(
                    self._next_id, str(spec.get("name") or email or ""), email, None, now, now
                )
                self._next_id += 1
                self.users[existing.id] = existing
                status = 201
            problem = self._apply(existing, spec)
        if problem:
            return json_response({"error": "RecordInvalid", "description": problem}, 422, headers)
        return json_response({"user": existing.json()}, status, headers)

    def export_rows(self) -> list[dict[str, Any]]:
        with self.lock:
            return [
                {
                    "id": str(u.id),
                    "email": u.email,
                    "phone": u.phone,
                    "name": u.name,
                    "is_vip": bool(u.user_fields.get("vip")),
                    "tier": u.user_fields.get("loyalty_tier"),
                }
                for u in sorted(self.users.values(), key=lambda u: u.id)
            ]
