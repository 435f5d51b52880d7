"""A loopback Standard Webhooks receiver that keeps score (delivery tests and the bench).

It verifies each request's signature (any of the space-separated `v1,` signatures, ±5 minutes
against the shared clock), then applies it the way a careful receiver would: points adjustments
once per `webhook-id`, attribute states as they arrive. It records what a judge needs: every
request, duplicates (a `webhook-id` seen before), attribute versions that arrived older than one
already applied (`regressions`), and when each change first arrived. `fail` lets a test answer
with any status and headers instead (outages, 429 storms, Retry-After forms).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from handoff.clock import Clock, system_clock

Scope = dict[str, Any]
Fault = Callable[[dict[str, Any]], tuple[int, dict[str, str]] | None]


def _keys(secrets: Sequence[str]) -> list[bytes]:
    return [
        base64.b64decode(s.removeprefix("whsec_")) if s.startswith("whsec_") else s.encode()
        for s in secrets
    ]


@dataclass
class Tally:
    requests: int = 0
    rejected: int = 0  # bad signature or stale timestamp
    duplicates: int = 0  # a webhook-id seen before (answered 200, not applied again)
    applied: int = 0
    regressions: list[tuple[int, str, int, int]] = field(default_factory=list)
    attributes: dict[tuple[int, str], tuple[int, Any]] = field(default_factory=dict)
    points: dict[str, tuple[int, int]] = field(default_factory=dict)  # key -> (customer, delta)
    profiles: dict[int, tuple[int, Any]] = field(default_factory=dict)
    first_seen: dict[str, datetime] = field(default_factory=dict)
    order: list[tuple[int, str]] = field(default_factory=list)  # (customer, webhook-id) applied


class WebhookReceiver:
    def __init__(
        self,
        secrets: Sequence[str],
        clock: Clock = system_clock,
        *,
        tolerance: float = 300.0,
        fail: Fault | None = None,
    ) -> None:
        self.keys = _keys(secrets)
        self.clock = clock
        self.tolerance = tolerance
        self.fail = fail
        self.tally = Tally()
        self.lock = threading.Lock()

    def verify(self, headers: dict[str, str], body: bytes) -> bool:
        msg_id = headers.get("webhook-id", "")
        stamp = headers.get("webhook-timestamp", "")
        if not msg_id or not stamp.isdigit():
            return False
        if abs(self.clock.now().timestamp() - int(stamp)) > self.tolerance:
            return False
        signed = f"{msg_id}.{stamp}.".encode() + body
        wanted = [
            base64.b64encode(hmac.new(k, signed, hashlib.sha256).digest()).decode()
            for k in self.keys
        ]
        given = [s.partition(",")[2] for s in headers.get("webhook-signature", "").split()]
        return any(hmac.compare_digest(g, w) for g in given for w in wanted)

    def handle(self, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str]]:
        with self.lock:
            self.tally.requests += 1
        if not self.verify(headers, body):
            with self.lock:
                self.tally.rejected += 1
            return 401, {}
        message = json.loads(body)
        if self.fail is not None:
            answer = self.fail(message)
            if answer is not None:
                return answer
        msg_id = headers["webhook-id"]
        data = message.get("data") or {}
        with self.lock:
            t = self.tally
            if msg_id in t.first_seen:
                t.duplicates += 1
                return 200, {}
            t.first_seen[msg_id] = self.clock.now()
            t.applied += 1
            customer = int(data.get("customer_id", 0))
            t.order.append((customer, msg_id))
            kind = message.get("type")
            if kind == "customer.attribute.changed":
                key = (customer, str(data.get("attribute")))
                current = t.attributes.get(key)
                version = int(data.get("version", 0))
                if current is not None and version < current[0]:
                    t.regressions.append((customer, key[1], current[0], version))
                t.attributes[key] = (version, data.get("value"))
            elif kind == "customer.points.adjusted":
                t.points[str(data.get("key"))] = (customer, int(data.get("delta", 0)))
            elif kind == "customer.profile.relayed":
                t.profiles[customer] = (int(data.get("version", 0)), data.get("fields"))
        return 200, {}

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        chunks = []
        more = True
        while more:
            event = await receive()
            if event["type"] == "http.disconnect":  # the sender died mid-request: nothing came
                return
            chunks.append(event.get("body", b""))
            more = event.get("more_body", False)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        status, extra = self.handle(headers, b"".join(chunks))
        raw = [(b"content-type", b"application/json")] + [
            (k.lower().encode(), v.encode()) for k, v in extra.items()
        ]
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": b"{}"})
