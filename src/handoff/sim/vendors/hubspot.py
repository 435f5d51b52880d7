"""HubSpot look-alike (CRM): contacts API with HubSpot's rate limit, and v3-signed webhooks.

Webhooks (vendors.md §1): JSON *arrays* of events — `contact.creation` when a contact is synced
in, `contact.propertyChange` for `vip_status` when a CRM user ticks VIP by hand (changeSource
`CRM_UI`) and for `loyalty_tier` when an enrichment tool overwrites it (`INTEGRATION`). Events
that happen at the same millisecond share one request. `attemptNumber` counts retries in the
body; the v3 signature (handoff.connectors.hubspot.sign_v3) is recomputed per attempt over
method + URL + body + a fresh millisecond timestamp. Retries: `delivery.HUBSPOT`.

API (`Authorization: Bearer <token>`), the CRM v3 contacts subset handoff writes through:
- `POST /crm/v3/objects/contacts` (409 CONFLICT on an existing email);
- `GET|PATCH /crm/v3/objects/contacts/{id}` (`?idProperty=email` accepted, `?properties=`);
- `POST /crm/v3/objects/contacts/batch/read|update|upsert` (≤ 100 inputs; upsert by
  `idProperty: "email"`).
Rate limit: 100 requests per 10 s (`ratelimit.FixedWindow`); every answer carries
`X-HubSpot-RateLimit-Max`, `-Remaining`, `-Interval-Milliseconds`, `-Daily`, `-Daily-Remaining`;
over the limit → 429 with `policyName: TEN_SECONDLY_ROLLING`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from handoff.connectors import hubspot as hubspot_connector
from handoff.sim.clock import SimClock
from handoff.sim.delivery import Message, stable_uuid
from handoff.sim.faults import World
from handoff.sim.ratelimit import Decision, FixedWindow
from handoff.sim.scenario import iso, money
from handoff.sim.scenario_config import FaultWindow
from handoff.sim.vendors.common import VendorApi, json_response, read_json

PORTAL_ID = 424242
APP_ID = 987654
SUBSCRIPTIONS = {"contact.creation": 101, "vip_status": 102, "loyalty_tier": 103}
BATCH_LIMIT = 100
DAILY_LIMIT = 250_000


def epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def webhook_messages(world: World) -> list[Message]:
    """Contact webhooks, batched per millisecond, with stable eventIds."""
    raw: list[tuple[datetime, int, str, dict[str, Any]]] = []
    for contact in world.scenario.contacts:
        raw.append(
            (
                contact.created_at,
                contact.contact_id,
                "contact.creation",
                {"changeFlag": "CREATED", "changeSource": "INTEGRATION", "sourceId": "shopify"},
            )
        )
    for vip in world.scenario.manual_vips:
        raw.append(
            (
                vip.at,
                vip.contact_id,
                "vip_status",
                {
                    "propertyName": "vip_status",
                    "propertyValue": "true",
                    "changeSource": "CRM_UI",
                    "sourceId": "userId:45678",
                },
            )
        )
    for state in world.crm:
        if state.enriched_at is not None:
            raw.append(
                (
                    state.enriched_at,
                    state.contact.contact_id,
                    "loyalty_tier",
                    {
                        "propertyName": "loyalty_tier",
                        "propertyValue": state.tier or "",
                        "changeSource": "INTEGRATION",
                        "sourceId": "enrichment-tool",
                    },
                )
            )
    raw.sort(key=lambda r: (r[0], r[1], r[2]))
    batches: dict[int, list[dict[str, Any]]] = {}
    for n, (at, contact_id, kind, extra) in enumerate(raw, start=1):
        event = {
            "eventId": 700_000_000 + n,
            "subscriptionId": SUBSCRIPTIONS[kind],
            "portalId": PORTAL_ID,
            "appId": APP_ID,
            "occurredAt": epoch_ms(at),
            "subscriptionType": "contact.creation"
            if kind == "contact.creation"
            else "contact.propertyChange",
            "attemptNumber": 0,
            "objectId": contact_id,
        } | extra
        batches.setdefault(epoch_ms(at), []).append(event)
    out = []
    for ms, events in sorted(batches.items()):
        ids = sorted(str(e["eventId"]) for e in events)
        first = events[0]
        out.append(
            Message(
                message_id=f"hubspot:{ids[0]}",
                system="hubspot",
                topic=str(first["subscriptionType"]),
                fired_at=datetime.fromtimestamp(ms / 1000, tz=world.scenario.start.tzinfo),
                ref=";".join(
                    f"contact:{e['objectId']}:{e.get('propertyName', 'created')}" for e in events
                ),
                payload=events,
                delivery_id="events:" + ",".join(ids),
            )
        )
    return out


@dataclass(frozen=True)
class HubSpotSigner:
    """v3 signatures with a fresh timestamp per attempt; attemptNumber bumped in the body."""

    secret: str

    def __call__(
        self, message: Message, attempt: int, now: datetime, url: str
    ) -> tuple[bytes, dict[str, str]]:
        events = [dict(e) | {"attemptNumber": attempt - 1} for e in message.payload]
        body = json.dumps(events, separators=(",", ":")).encode()
        headers = hubspot_connector.sign_v3(self.secret.encode(), "POST", url, body, epoch_ms(now))
        headers["Content-Type"] = "application/json"
        return body, headers


# --- the contacts API ---------------------------------------------------------------------------

DEFAULT_PROPERTIES = (
    "createdate",
    "email",
    "firstname",
    "hs_object_id",
    "lastmodifieddate",
    "lastname",
)


@dataclass
class Contact:
    id: int
    properties: dict[str, str | None]
    created_at: datetime
    updated_at: datetime
    history: list[tuple[datetime, str, str | None]] = field(default_factory=list)

    def json(
        self, wanted: Sequence[str] | None = None, *, new: bool | None = None
    ) -> dict[str, Any]:
        names = tuple(wanted) if wanted else DEFAULT_PROPERTIES
        props: dict[str, str | None] = {}
        for name in names:
            if name == "hs_object_id":
                props[name] = str(self.id)
            elif name == "createdate":
                props[name] = iso(self.created_at)
            elif name == "lastmodifieddate":
                props[name] = iso(self.updated_at)
            else:
                props[name] = self.properties.get(name)
        out: dict[str, Any] = {
            "id": str(self.id),
            "properties": props,
            "createdAt": iso(self.created_at),
            "updatedAt": iso(self.updated_at),
            "archived": False,
        }
        if new is not None:
            out["new"] = new
        return out


class HubSpotApi(VendorApi):
    name = "hubspot"

    def __init__(
        self,
        clock: SimClock,
        *,
        token: str,
        seed: int = 0,
        windows: Sequence[FaultWindow] = (),
        origin: datetime | None = None,
        limit: int = 100,
        window_seconds: float = 10.0,
    ) -> None:
        super().__init__(clock, token=token, seed=seed, windows=windows, origin=origin)
        self.contacts: dict[int, Contact] = {}
        self.limiter = FixedWindow(
            clock, limit=limit, window=window_seconds, name="TEN_SECONDLY_ROLLING"
        )
        self.daily_used = 0
        self._next_id = 60_000_001
        base = "/crm/v3/objects/contacts"
        self.app = Starlette(
            routes=[
                Route(base, self.route(self.create), methods=["POST"]),
                Route(f"{base}/batch/read", self.route(self.batch_read), methods=["POST"]),
                Route(f"{base}/batch/update", self.route(self.batch_update), methods=["POST"]),
                Route(f"{base}/batch/upsert", self.route(self.batch_upsert), methods=["POST"]),
                Route(f"{base}/{{contact_id}}", self.route(self.read), methods=["GET"]),
                Route(f"{base}/{{contact_id}}", self.route(self.update), methods=["PATCH"]),
            ]
        )

    def load(self, world: World) -> None:
        for state in world.crm:
            c = state.contact
            props: dict[str, str | None] = {
                "email": c.email,
                "phone": c.phone,
                "firstname": c.first_name,
                "lastname": c.last_name,
                "zip": c.zip,
                "vip_status": "true" if state.is_vip else "false",
                "loyalty_tier": state.tier,
                "loyalty_points": None
                if state.points_balance is None
                else str(state.points_balance),
                "lifetime_spend": None
                if state.lifetime_spend is None
                else money(state.lifetime_spend),
            }
            self.contacts[c.contact_id] = Contact(
                c.contact_id, props, c.created_at, state.updated_at
            )

    # --- gate ------------------------------------------------------------------------------------

    def unauthorised(self) -> Response:
        return json_response(
            {
                "status": "error",
                "message": "Authentication credentials not found.",
                "category": "INVALID_AUTHENTICATION",
                "correlationId": stable_uuid("hubspot-401", len(self.log)),
            },
            401,
        )

    def _headers(self, decision: Decision) -> dict[str, str]:
        return {
            "X-HubSpot-RateLimit-Interval-Milliseconds": str(int(self.limiter.window * 1000)),
            "X-HubSpot-RateLimit-Max": str(self.limiter.limit),
            "X-HubSpot-RateLimit-Remaining": str(int(decision.remaining)),
            "X-HubSpot-RateLimit-Daily": str(DAILY_LIMIT),
            "X-HubSpot-RateLimit-Daily-Remaining": str(max(0, DAILY_LIMIT - self.daily_used)),
        }

    def gate(self) -> tuple[Response | None, dict[str, str]]:
        decision = self.limiter.acquire()
        headers = self._headers(decision)
        if not decision.allowed:
            return (
                json_response(
                    {
                        "status": "error",
                        "message": "You have reached your ten_secondly_rolling limit.",
                        "errorType": "RATE_LIMIT",
                        "correlationId": stable_uuid("hubspot-429", len(self.log)),
                        "policyName": "TEN_SECONDLY_ROLLING",
                    },
                    429,
                    headers,
                ),
                headers,
            )
        self.daily_used += 1
        return None, headers

    # --- helpers ----------------------------------------------------------------------------------

    def by_email(self, email: str) -> Contact | None:
        wanted = email.strip().lower()
        for contact in sorted(self.contacts.values(), key=lambda c: c.id):
            if (contact.properties.get("email") or "").lower() == wanted:
                return contact
        return None

    def lookup(self, key: str, id_property: str | None) -> Contact | None:
        if id_property == "email":
            return self.by_email(key)
        return self.contacts.get(int(key)) if key.isdigit() else None

    def _apply(self, contact: Contact, properties: dict[str, Any]) -> None:
        now = self.clock.now()
        for name, value in properties.items():
            text = None if value is None or value == "" else str(value)
            if contact.properties.get(name) != text:
                contact.history.append((now, name, text))
            contact.properties[name] = text
        contact.updated_at = now

    def _new(self, properties: dict[str, Any]) -> Contact:
        now = self.clock.now()
        contact = Contact(self._next_id, {}, now, now)
        self._next_id += 1
        self._apply(contact, properties)
        self.contacts[contact.id] = contact
        return contact

    @staticmethod
    def _error(status: int, message: str, category: str, headers: dict[str, str]) -> Response:
        return json_response(
            {"status": "error", "message": message, "category": category}, status, headers
        )

    @staticmethod
    def _properties(data: Any) -> dict[str, Any] | None:
        if not isinstance(data, dict) or not isinstance(data.get("properties"), dict):
            return None
        props: dict[str, Any] = data["properties"]
        return props

    # --- handlers ---------------------------------------------------------------------------------

    async def create(self, request: Request) -> Response:
        refused, headers = self.gate()
        if refused:
            return refused
        props = self._properties(await read_json(request))
        if props is None:
            return self._error(
                400, "Invalid input JSON: properties required", "VALIDATION_ERROR", headers
            )
        with self.lock:
            email = props.get("email")
            if isinstance(email, str) and (existing := self.by_email(email)) is not None:
                return self._error(
                    409, f"Contact already exists. Existing ID: {existing.id}", "CONFLICT", headers
                )
            contact = self._new(props)
        return json_response(contact.json(list(props) or None), 201, headers)

    async def read(self, request: Request) -> Response:
        refused, headers = self.gate()
        if refused:
            return refused
        contact = self.lookup(
            request.path_params["contact_id"], request.query_params.get("idProperty")
        )
        if contact is None:
            return self._error(
                404, "Object not found.  objectId are usually numeric.", "OBJECT_NOT_FOUND", headers
            )
        wanted = [p for p in request.query_params.get("properties", "").split(",") if p]
        return json_response(contact.json(wanted or None), 200, headers)

    async def update(self, request: Request) -> Response:
        refused, headers = self.gate()
        if refused:
            return refused
        props = self._properties(await read_json(request))
        if props is None:
            return self._error(
                400, "Invalid input JSON: properties required", "VALIDATION_ERROR", headers
            )
        with self.lock:
            contact = self.lookup(
                request.path_params["contact_id"], request.query_params.get("idProperty")
            )
            if contact is None:
                return self._error(404, "resource not found", "OBJECT_NOT_FOUND", headers)
            self._apply(contact, props)
        return json_response(contact.json(list(props)), 200, headers)

    async def _inputs(
        self, request: Request, headers: dict[str, str]
    ) -> tuple[dict[str, Any], list[Any]] | Response:
        data = await read_json(request)
        if not isinstance(data, dict) or not isinstance(data.get("inputs"), list):
            return self._error(
                400, "Invalid input JSON: inputs required", "VALIDATION_ERROR", headers
            )
        inputs: list[Any] = data["inputs"]
        if len(inputs) > BATCH_LIMIT:
            return self._error(
                400,
                f"Batch input limit exceeded: {len(inputs)} > {BATCH_LIMIT}",
                "VALIDATION_ERROR",
                headers,
            )
        return data, inputs

    def _batch(
        self, results: list[dict[str, Any]], errors: list[dict[str, Any]], headers: dict[str, str]
    ) -> Response:
        now = iso(self.clock.now())
        body: dict[str, Any] = {
            "status": "COMPLETE",
            "results": results,
            "startedAt": now,
            "completedAt": now,
        }
        if errors:
            body["errors"] = errors
            body["numErrors"] = len(errors)
        return json_response(body, 207 if errors else 200, headers)

    async def batch_read(self, request: Request) -> Response:
        refused, headers = self.gate()
        if refused:
            return refused
        parsed = await self._inputs(request, headers)
        if isinstance(parsed, Response):
            return parsed
        data, inputs = parsed
        wanted = [p for p in data.get("properties") or [] if isinstance(p, str)]
        results, missing = [], []
        for item in inputs:
            key = str(item.get("id", "")) if isinstance(item, dict) else ""
            contact = self.lookup(key, data.get("idProperty"))
            if contact is None:
                missing.append(key)
            else:
                results.append(contact.json(wanted or None))
        errors = (
            [
                {
                    "status": "error",
                    "category": "OBJECT_NOT_FOUND",
                    "message": "Could not get some CONTACT objects, "
                    "they may be deleted or not exist.",
                    "context": {"ids": missing},
                }
            ]
            if missing
            else []
        )
        return self._batch(results, errors, headers)

    async def batch_update(self, request: Request) -> Response:
        refused, headers = self.gate()
        if refused:
            return refused
        parsed = await self._inputs(request, headers)
        if isinstance(parsed, Response):
            return parsed
        _data, inputs = parsed
        with self.lock:
            targets = []
            for item in inputs:
                props = self._properties(item)
                key = str(item.get("id", "")) if isinstance(item, dict) else ""
                contact = self.lookup(
                    key, item.get("idProperty") if isinstance(item, dict) else None
                )
                if contact is None or props is None:
                    return self._error(
                        404 if props is not None else 400,
                        f"Could not update contact {key}",
                        "OBJECT_NOT_FOUND" if props is not None else "VALIDATION_ERROR",
                        headers,
                    )
                targets.append((contact, props))
            for contact, props in targets:
                self._apply(contact, props)
        return self._batch([c.json(list(p)) for c, p in targets], [], headers)

    async def batch_upsert(self, request: Request) -> Response:
        refused, headers = self.gate()
        if refused:
            return refused
        parsed = await self._inputs(request, headers)
        if isinstance(parsed, Response):
            return parsed
        _data, inputs = parsed
        results = []
        with self.lock:
            for item in inputs:
                props = self._properties(item)
                if props is None or not isinstance(item.get("id"), str):
                    return self._error(
                        400,
                        "each input needs id, idProperty and properties",
                        "VALIDATION_ERROR",
                        headers,
                    )
                id_property = item.get("idProperty")
                contact = self.lookup(item["id"], id_property)
                if contact is None:
                    seed = {id_property: item["id"]} if id_property == "email" else {}
                    contact = self._new(seed | props)
                    results.append(contact.json(list(props), new=True))
                else:
                    self._apply(contact, props)
                    results.append(contact.json(list(props), new=False))
        return self._batch(results, [], headers)

    # --- export -----------------------------------------------------------------------------------

    def export_rows(self) -> list[dict[str, Any]]:
        rows = []
        with self.lock:
            for c in sorted(self.contacts.values(), key=lambda c: c.id):
                p = c.properties
                rows.append(
                    {
                        "contact_id": str(c.id),
                        "email": p.get("email"),
                        "phone": p.get("phone"),
                        "first_name": p.get("firstname"),
                        "last_name": p.get("lastname"),
                        "zip": p.get("zip"),
                        "is_vip": (p.get("vip_status") or "false") == "true",
                        "tier": p.get("loyalty_tier"),
                        "lifetime_spend": p.get("lifetime_spend"),
                        "points_balance": p.get("loyalty_points"),
                        "updated_at": c.updated_at,
                    }
                )
        return rows
