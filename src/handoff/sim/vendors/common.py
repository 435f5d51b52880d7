"""What every look-alike API shares: bearer-style auth, fault windows, a request log, JSON.

Each look-alike is a Starlette app over an inspectable Python state object. Before a handler
runs, `VendorApi.admit` applies, in order: authentication (401 in the vendor's shape), the
fault windows aimed at this vendor (outage → every request fails with the window's status;
errors → a seeded share of requests get 500/502/503; throttle → a 429 storm with
Retry-After), then the vendor's own rate limiter. Every request is logged with its simulated
time and status, so tests can assert what handoff sent without a proxy.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from handoff.sim.clock import SimClock
from handoff.sim.scenario import rng_for
from handoff.sim.scenario_config import FaultWindow

Handler = Callable[[Request], Awaitable[Response]]


def json_response(
    payload: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    return Response(body, status, dict(headers or {}), media_type="application/json")


@dataclass(frozen=True, slots=True)
class LoggedRequest:
    at: datetime
    method: str
    path: str
    status: int
    body: bytes


async def read_json(request: Request) -> Any:
    """The JSON body, or None if it is not JSON (the handler answers 400)."""
    raw = await request.body()
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


class VendorApi:
    """Base of the look-alike APIs: auth, faults, log. Subclasses add routes and limits."""

    name = "vendor"

    def __init__(
        self,
        clock: SimClock,
        *,
        token: str,
        seed: int = 0,
        windows: Sequence[FaultWindow] = (),
        origin: datetime | None = None,
    ) -> None:
        self.clock = clock
        self.token = token
        self.seed = seed
        self.windows = tuple(w for w in windows if w.target == self.name)
        self.origin = origin or clock.start
        self.log: list[LoggedRequest] = []
        self.lock = threading.RLock()
        self._count = 0

    # --- hooks for subclasses -----------------------------------------------------------------

    def authorised(self, request: Request) -> bool:
        return request.headers.get("authorization", "") == f"Bearer {self.token}"

    def unauthorised(self) -> Response:
        return json_response({"message": "Unauthorized"}, 401)

    def fault_response(self, status: int, retry_after: int | None) -> Response:
        headers = {"Retry-After": str(retry_after)} if retry_after else {}
        return json_response({"message": f"simulated {status}"}, status, headers)

    # --- the gate every handler passes ------------------------------------------------------------

    def window_fault(self) -> Response | None:
        hours = (self.clock.now() - self.origin).total_seconds() / 3600
        for window in self.windows:
            if not window.start_hours <= hours < window.start_hours + window.duration_hours:
                continue
            with self.lock:
                self._count += 1
                n = self._count
            roll = rng_for(self.seed, f"api:{self.name}:{n}").random()
            if window.kind == "outage":
                return self.fault_response(window.status, None)
            if roll < window.rate:
                if window.kind == "throttle":
                    return self.fault_response(429, window.retry_after)
                return self.fault_response((500, 502, 503)[n % 3], None)
        return None

    async def record(self, request: Request, response: Response) -> Response:
        body = await request.body()
        with self.lock:
            self.log.append(
                LoggedRequest(
                    self.clock.now(), request.method, request.url.path, response.status_code, body
                )
            )
        return response

    def route(self, handler: Handler, *, auth: bool = True) -> Handler:
        """Wrap a handler with auth, fault windows and the request log."""

        async def wrapped(request: Request) -> Response:
            if auth and not self.authorised(request):
                return await self.record(request, self.unauthorised())
            fault = self.window_fault()
            if fault is not None:
                return await self.record(request, fault)
            return await self.record(request, await handler(request))

        return wrapped

    def statuses(self) -> list[int]:
        with self.lock:
            return [r.status for r in self.log]
