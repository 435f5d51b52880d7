"""Klaviyo look-alike (email/SMS): profile-import upsert with properties, burst + steady limits.

API (`Authorization: Klaviyo-API-Key <key>`, a `revision` header is required):
- `POST /api/profile-import` — JSON:API `{"data": {"type": "profile", "id"?, "attributes":
  {email, phone_number, external_id, first_name, last_name, properties: {...}}}}`; matched by
  id, then email, then phone number, then external id; 201 when created, 200 when updated.
  Semantics as documented (vendors.md §2): an attribute or property set to `null` is cleared,
  one that is omitted is kept;
- `GET /api/profiles/{id}` and `PATCH /api/profiles/{id}` (same merge rules).
Rate limits: 75 per second burst and 750 per minute steady (`ratelimit.MultiWindow`); over
either → 429 with a JSON:API `throttled` error and `Retry-After`; `RateLimit-Limit`,
`RateLimit-Remaining` and `RateLimit-Reset` on every answer.
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
from handoff.sim.ratelimit import Decision, FixedWindow, MultiWindow
from handoff.sim.scenario import iso
from handoff.sim.scenario_config import FaultWindow
from handoff.sim.vendors.common import VendorApi, json_response, read_json

ATTRIBUTES = ("email", "phone_number", "external_id", "first_name", "last_name")


@dataclass
class Profile:
    id: str
    attributes: dict[str, Any]
    properties: dict[str, Any]
    created: datetime
    updated: datetime
    history: list[tuple[datetime, str, Any]] = field(default_factory=list)

    def json(self) -> dict[str, Any]:
        return {
            "type": "profile",
            "id": self.id,
            "attributes": {k: self.attributes.get(k) for k in ATTRIBUTES}
            | {
                "properties": dict(sorted(self.properties.items())),
                "created": iso(self.created),
                "updated": iso(self.updated),
            },
            "links": {"self": f"https://a.klaviyo.com/api/profiles/{self.id}/"},
        }


def _error(
    status: int, code: str, title: str, detail: str, headers: dict[str, str] | None = None
) -> Response:
    return json_response(
        {
            "errors": [
                {
                    "id": code,
                    "status": status,
                    "code": code,
                    "title": title,
                    "detail": detail,
                    "source": {"pointer": "/data/"},
                }
            ]
        },
        status,
        headers,
    )


class KlaviyoApi(VendorApi):
    name = "klaviyo"

    def __init__(
        self,
        clock: SimClock,
        *,
        token: str,
        seed: int = 0,
        windows: Sequence[FaultWindow] = (),
        origin: datetime | None = None,
        burst: int = 75,
        steady: int = 750,
    ) -> None:
        super().__init__(clock, token=token, seed=seed, windows=windows, origin=origin)
        self.profiles: dict[str, Profile] = {}
        self.burst = FixedWindow(clock, limit=burst, window=1.0, name="burst")
        self.steady = FixedWindow(clock, limit=steady, window=60.0, name="steady")
        self.limiter = MultiWindow([self.burst, self.steady])
        self._seq = 0
        self.app = Starlette(
            routes=[
                Route("/api/profile-import", self.route(self.profile_import), methods=["POST"]),
                Route("/api/profile-import/", self.route(self.profile_import), methods=["POST"]),
                Route("/api/profiles/{profile_id}", self.route(self.get_profile), methods=["GET"]),
                Route(
                    "/api/profiles/{profile_id}", self.route(self.patch_profile), methods=["PATCH"]
                ),
            ]
        )

    def load(self, world: World) -> None:
        vip = {f.external_id for f in world.flags if f.system == "comms" and f.is_vip}
        for p in world.scenario.comms_profiles:
            self.profiles[p.external_id] = Profile(
                p.external_id,
                {
                    "email": p.email,
                    "phone_number": p.phone,
                    "external_id": None,
                    "first_name": p.first_name,
                    "last_name": p.last_name,
                },
                {"is_vip": p.external_id in vip},
                p.created_at,
                p.created_at,
            )
        self._seq = len(self.profiles)

    def authorised(self, request: Request) -> bool:
        return request.headers.get("authorization", "") == f"Klaviyo-API-Key {self.token}"

    def unauthorised(self) -> Response:
        return _error(
            401,
            "not_authenticated",
            "Authentication credentials were not provided.",
            "Missing or invalid private key.",
        )

    def _headers(self, decision: Decision) -> dict[str, str]:
        return {
            "RateLimit-Limit": (
                f"{self.burst.limit}, {self.burst.limit};w=1, {self.steady.limit};w=60"
            ),
            "RateLimit-Remaining": str(int(decision.remaining)),
            "RateLimit-Reset": str(max(0, int(decision.reset_after + 0.999))),
        }

    def _gate(self, request: Request) -> tuple[Response | None, dict[str, str]]:
        if not request.headers.get("revision"):
            return _error(
                400, "invalid", "Invalid input.", "The 'revision' header is required."
            ), {}
        decision = self.limiter.acquire()
        headers = self._headers(decision)
        if decision.allowed:
            return None, headers
        wait = decision.retry_after_header
        return (
            _error(
                429,
                "throttled",
                "Request was throttled.",
                f"Request was throttled. Expected available in {wait} "
                f"second{'s' if wait != '1' else ''}.",
                headers | {"Retry-After": wait},
            ),
            headers,
        )

    def _match(self, profile_id: str | None, attrs: dict[str, Any]) -> Profile | None:
        if profile_id:
            return self.profiles.get(profile_id)
        for key in ("email", "phone_number", "external_id"):
            value = attrs.get(key)
            if isinstance(value, str) and value:
                for p in sorted(self.profiles.values(), key=lambda p: p.id):
                    current = p.attributes.get(key)
                    if isinstance(current, str) and current.lower() == value.lower():
                        return p
        return None

    def _merge(self, profile: Profile, attrs: dict[str, Any]) -> None:
        now = self.clock.now()
        for key in ATTRIBUTES:
            if key in attrs:
                profile.attributes[key] = attrs[key]
        props = attrs.get("properties")
        if isinstance(props, dict):
            for key, value in props.items():
                if value is None:
                    profile.properties.pop(key, None)
                else:
                    profile.properties[key] = value
                profile.history.append((now, key, value))
        profile.updated = now

    @staticmethod
    def _data(body: Any) -> dict[str, Any] | None:
        if not isinstance(body, dict) or not isinstance(body.get("data"), dict):
            return None
        data: dict[str, Any] = body["data"]
        if data.get("type") != "profile" or not isinstance(data.get("attributes", {}), dict):
            return None
        return data

    async def profile_import(self, request: Request) -> Response:
        refused, headers = self._gate(request)
        if refused:
            return refused
        data = self._data(await read_json(request))
        if data is None:
            return _error(
                400, "invalid", "Invalid input.", "A profile resource object is required.", headers
            )
        attrs = data.get("attributes") or {}
        if not any(attrs.get(k) for k in ("email", "phone_number", "external_id")) and not data.get(
            "id"
        ):
            return _error(
                400,
                "invalid",
                "Invalid input.",
                "One of email, phone_number or external_id is required.",
                headers,
            )
        with self.lock:
            profile = self._match(data.get("id"), attrs)
            status = 200
            if profile is None:
                self._seq += 1
                now = self.clock.now()
                profile = Profile(f"01SIMPROFILE{self._seq:014d}", {}, {}, now, now)
                self.profiles[profile.id] = profile
                status = 201
            self._merge(profile, attrs)
        return json_response({"data": profile.json()}, status, headers)

    async def get_profile(self, request: Request) -> Response:
        refused, headers = self._gate(request)
        if refused:
            return refused
        profile = self.profiles.get(request.path_params["profile_id"])
        if profile is None:
            return _error(
                404, "not_found", "Not found.", "A profile with this id does not exist.", headers
            )
        return json_response({"data": profile.json()}, 200, headers)

    async def patch_profile(self, request: Request) -> Response:
        refused, headers = self._gate(request)
        if refused:
            return refused
        data = self._data(await read_json(request))
        if data is None or data.get("id") != request.path_params["profile_id"]:
            return _error(400, "invalid", "Invalid input.", "data.id must match the URL.", headers)
        with self.lock:
            profile = self.profiles.get(data["id"])
            if profile is None:
                return _error(
                    404,
                    "not_found",
                    "Not found.",
                    "A profile with this id does not exist.",
                    headers,
                )
            self._merge(profile, data.get("attributes") or {})
        return json_response({"data": profile.json()}, 200, headers)

    def export_rows(self) -> list[dict[str, Any]]:
        with self.lock:
            return [
                {
                    "id": p.id,
                    "email": p.attributes.get("email"),
                    "phone": p.attributes.get("phone_number"),
                    "is_vip": p.properties.get("is_vip") is True,
                    "tier": p.properties.get("tier"),
                }
                for p in sorted(self.profiles.values(), key=lambda p: p.id)
            ]
