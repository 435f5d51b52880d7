"""The vendors' webhook senders: retry schedules, timeouts, subscription deletion, faults.

One engine, driven by the SimClock's `Scheduler`, plays every vendor's delivery policy
(vendors.md §1) against a receiver:

- Shopify: 5 s timeout; 8 retries, exponential, 4 h in all (1, 2, 4, … 64 min, then 113 min);
  after the 8th failed retry the subscription (the topic) is deleted.
- HubSpot: 5 s timeout [?]; at most 10 retries, randomised exponential, all within 24 h; no retry
  on 400/401/403/404/405; 429 honours Retry-After.
- LoyaltyLion: 5 s timeout; exponential from 1 min, capped at 12 h ("until success"; we stop
  after 20 retries).
- Standard Webhooks (ERP): 15 s timeout [ours]; retries after 5 s, 5 m, 30 m, 2 h, 5 h, 10 h,
  14 h, 20 h, 24 h; 410 disables the endpoint; 429/502/504 honour Retry-After.

Webhook-level faults come from `faults.MessageFaults`: a dropped message is never sent; a
duplicated one is sent again, same delivery id, after it was acknowledged; a slow ack is a
request that reaches the receiver but whose acknowledgement arrives after the vendor's
timeout, so the vendor records a failure and redelivers (the receiver sees a duplicate); an
out-of-order message is held back until after a later one. `FaultWindow`s targeting
`webhooks:<system>` make that system's link to the receiver fail (outage, error bursts, 429
storms) without the request reaching it.

Receivers are `Transport`s: `HttpTransport` posts to a real handoff gateway over loopback;
`ModelTransport` is a perfect receiver in pure Python. Running the same messages through the
model gives the *planned* outcome of every message (deterministic: it goes into the ground
truth); a live run must then match it wherever the real receiver acknowledged in time.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

import httpx

from handoff.sim.clock import Scheduler, SimClock
from handoff.sim.faults import FaultLabel, MessageFaults
from handoff.sim.scenario import iso, rng_for
from handoff.sim.scenario_config import FaultWindow

# --- messages and policies ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Message:
    """One webhook a vendor fires: what, when, and the id the receiver dedupes on."""

    message_id: str  # unique in a run, stable across runs
    system: str  # shopify | erp | hubspot | loyaltylion
    topic: str
    fired_at: datetime
    ref: str  # the fact it carries, e.g. order:SO-100001:paid
    payload: Any  # JSON-able; the signer serialises it
    delivery_id: str  # what handoff's connector will name this delivery
    subscription: str = ""  # the vendor's subscription it belongs to (Shopify: the topic)
    order_id: str | None = None
    never_fired: str | None = None  # why the vendor never fires it (a fault), if so


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    name: str
    timeout: float  # seconds the vendor waits for an acknowledgement
    delays: tuple[float, ...] = ()  # fixed seconds before retry 1, 2, …
    base: float = 60.0  # exponential: base * 2**(n-1), capped at `cap`
    cap: float = 12 * 3600.0
    max_retries: int = 8
    jitter: float = 0.0  # ± fraction, seeded per message and attempt
    window: float | None = None  # no retry later than this after the first attempt
    no_retry: frozenset[int] = frozenset()
    disable_on: frozenset[int] = frozenset()
    honour_retry_after: frozenset[int] = frozenset()
    delete_subscription: bool = False

    def delay(self, retry: int, message_id: str, seed: int) -> float | None:
        """Seconds before retry number `retry` (1-based); None once the vendor gives up."""
        if retry > self.max_retries:
            return None
        if self.delays:
            if retry > len(self.delays):
                return None
            value = self.delays[retry - 1]
        else:
            value = min(self.cap, self.base * 2 ** (retry - 1))
        if self.jitter:
            rng = rng_for(seed, f"jitter:{self.name}:{message_id}:{retry}")
            value *= 1 + rng.uniform(-self.jitter, self.jitter)
        return value


SHOPIFY = RetryPolicy(
    name="shopify",
    timeout=5.0,
    delays=(60, 120, 240, 480, 960, 1920, 3840, 6780),  # 8 retries, 14,400 s = 4 h
    max_retries=8,
    delete_subscription=True,
)
HUBSPOT = RetryPolicy(
    name="hubspot",
    timeout=5.0,
    base=60.0,
    cap=6 * 3600.0,
    max_retries=10,
    jitter=0.5,
    window=24 * 3600.0,
    no_retry=frozenset({400, 401, 403, 404, 405}),
    honour_retry_after=frozenset({429}),
)
LOYALTYLION = RetryPolicy(
    name="loyaltylion", timeout=5.0, base=60.0, cap=12 * 3600.0, max_retries=20
)
STANDARD = RetryPolicy(
    name="standard",
    timeout=15.0,
    delays=(5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400),
    max_retries=9,
    disable_on=frozenset({410}),
    honour_retry_after=frozenset({429, 502, 504}),
)
POLICIES: dict[str, RetryPolicy] = {
    "shopify": SHOPIFY,
    "hubspot": HUBSPOT,
    "loyaltylion": LOYALTYLION,
    "erp": STANDARD,
}

DUPLICATE_AFTER = 45.0  # seconds after the ack that a duplicated delivery is sent again


class Signer(Protocol):
    """Serialise and sign one attempt of a message, as the vendor would."""

    def __call__(
        self, message: Message, attempt: int, now: datetime, url: str
    ) -> tuple[bytes, dict[str, str]]: ...


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where one system's webhooks go, and how that vendor signs and retries."""

    system: str
    url: str
    signer: Signer
    policy: RetryPolicy


# --- transports -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reply:
    status: int | None  # None: no HTTP answer (timeout, refused)
    reached: bool  # the request got to the receiver
    error: str = ""
    retry_after: float | None = None
    body: bytes = b""


class Transport(Protocol):
    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> Reply: ...


class ModelTransport:
    """A perfect receiver: every request arrives and is acknowledged with 200."""

    def __init__(self) -> None:
        self.received: list[tuple[str, bytes, dict[str, str]]] = []

    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> Reply:
        self.received.append((url, body, dict(headers)))
        return Reply(200, True)


class HttpTransport:
    """Real HTTP to a receiver (handoff's gateway) with the vendor's timeout in real seconds."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> Reply:
        try:
            response = await self.client.post(
                url, content=body, headers=dict(headers), timeout=timeout
            )
        except httpx.ConnectError as exc:
            return Reply(None, False, f"connect: {exc}")
        except httpx.TimeoutException:
            return Reply(None, True, "timeout")
        except httpx.HTTPError as exc:
            return Reply(None, True, f"http: {exc}")
        retry_after = _retry_after(response.headers.get("retry-after"))
        return Reply(response.status_code, True, "", retry_after, response.content)


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value.strip()))
    except ValueError:
        return None


# --- records --------------------------------------------------------------------------------------


@dataclass(slots=True)
class AttemptRecord:
    number: int  # 1 = first delivery; duplicates continue the count
    at: datetime
    status: int | None
    outcome: str  # acked | failed | timeout | slow_ack | link_down | duplicate_sent
    reached: bool


@dataclass(slots=True)
class DeliveryRecord:
    message: Message
    faults: MessageFaults
    attempts: list[AttemptRecord] = field(default_factory=list)
    outcome: str = "pending"
    acked_at: datetime | None = None

    @property
    def reached_receiver(self) -> int:
        return sum(1 for a in self.attempts if a.reached)

    def row(self) -> dict[str, Any]:
        m = self.message
        return {
            "message_id": m.message_id,
            "system": m.system,
            "topic": m.topic,
            "ref": m.ref,
            "delivery_id": m.delivery_id,
            "fired_at": m.fired_at,
            "outcome": self.outcome,
            "faults": self.faults.names(),
            "attempts": len(self.attempts),
            "requests_reaching_hub": self.reached_receiver,
            "first_attempt_at": self.attempts[0].at if self.attempts else None,
            "acked_at": self.acked_at,
            "statuses": tuple(
                str(a.status) if a.status is not None else a.outcome for a in self.attempts
            ),
        }

    def signature(self, *, times: bool = True) -> tuple[Any, ...]:
        """What a live run must reproduce of the planned run: the outcome and each attempt's
        result (and its simulated time, unless batching moved attempts within a window)."""
        return (
            self.outcome,
            tuple(
                (a.number, iso(a.at) if times else "", a.outcome, a.reached) for a in self.attempts
            ),
        )


@dataclass
class DeliveryReport:
    records: list[DeliveryRecord]
    deleted_subscriptions: dict[str, datetime]
    disabled_endpoints: dict[str, datetime]

    def by_outcome(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.records:
            out[r.outcome] = out.get(r.outcome, 0) + 1
        return dict(sorted(out.items()))

    def expected_receipts(self) -> dict[tuple[str, str], int]:
        """(system, delivery id) → requests that reached the receiver (≥ 1 means stored)."""
        out: dict[tuple[str, str], int] = {}
        for r in self.records:
            if r.reached_receiver:
                key = (r.message.system, r.message.delivery_id)
                out[key] = out.get(key, 0) + r.reached_receiver
        return out

    def labels(self) -> list[FaultLabel]:
        """Ground-truth labels for what happened to webhooks on their way to the hub."""
        out: list[FaultLabel] = []
        for r in self.records:
            m = r.message
            handoff = f"{'pos' if m.system == 'shopify' else _role(m.system)}->hub"
            common: dict[str, Any] = {"system": m.system, "ref": m.ref, "order_id": m.order_id}
            detail_id = f"{m.topic} {m.delivery_id}"
            if r.outcome == "never_fired":
                out.append(
                    FaultLabel(
                        fault=m.never_fired or "never_fired",
                        cls="delivery",
                        handoff=handoff,
                        detail=f"never fired: {detail_id}",
                        **common,
                    )
                )
            if r.faults.drop:
                out.append(
                    FaultLabel(
                        fault="webhook_dropped",
                        cls="delivery",
                        handoff=handoff,
                        detail=f"lost: {detail_id}",
                        **common,
                    )
                )
            if r.outcome in ("subscription_deleted", "exhausted", "endpoint_disabled", "rejected"):
                out.append(
                    FaultLabel(
                        fault=f"webhook_{r.outcome}",
                        cls="delivery",
                        handoff=handoff,
                        detail=f"lost after {len(r.attempts)} attempts: {detail_id}",
                        **common,
                    )
                )
            if r.faults.duplicate and r.outcome == "delivered":
                out.append(
                    FaultLabel(
                        fault="webhook_duplicated",
                        cls="delivery",
                        handoff=handoff,
                        detail=f"sent again after its ack: {detail_id}",
                        **common,
                    )
                )
            if r.faults.slow_ack and r.attempts:
                out.append(
                    FaultLabel(
                        fault="slow_ack_redelivery",
                        cls="delivery",
                        handoff=handoff,
                        detail=f"ack later than the {m.system} timeout: {detail_id}",
                        **common,
                    )
                )
        return out


def _role(system: str) -> str:
    return {"erp": "erp", "hubspot": "crm", "loyaltylion": "loyalty"}.get(system, system)


# --- the engine -----------------------------------------------------------------------------------


class WebhookSender:
    """Plays messages to endpoints under a SimClock with each vendor's delivery policy."""

    def __init__(
        self,
        clock: SimClock,
        transport: Transport,
        endpoints: Mapping[str, Endpoint],
        *,
        seed: int,
        windows: Sequence[FaultWindow] = (),
        start: datetime | None = None,
        fault_for: Callable[[Message], MessageFaults] | None = None,
        concurrency: int = 1,
        batch_window: float = 0.0,
        timeout_scale: float = 1.0,
    ) -> None:
        self.clock = clock
        self.transport = transport
        self.endpoints = dict(endpoints)
        self.seed = seed
        self.windows = tuple(windows)
        self.origin = start or clock.start
        self.fault_for = fault_for or (lambda _m: MessageFaults())
        self.scheduler = Scheduler(clock, concurrency=concurrency, batch_window=batch_window)
        self.timeout_scale = timeout_scale
        self.records: list[DeliveryRecord] = []
        self.deleted: dict[str, datetime] = {}  # "system:subscription" → when
        self.disabled: dict[str, datetime] = {}  # system → when
        self._inflight: dict[str, list[DeliveryRecord]] = {}

    def add(self, messages: Sequence[Message]) -> None:
        for message in sorted(messages, key=lambda m: (m.fired_at, m.message_id)):
            faults = self.fault_for(message)
            record = DeliveryRecord(message, faults)
            self.records.append(record)
            first = message.fired_at
            if faults.hold_until is not None and faults.hold_until > first:
                first = faults.hold_until + timedelta(minutes=10)
            self.scheduler.at(first, self._first(record), message.message_id)

    async def run(self, until: datetime | None = None) -> DeliveryReport:
        await self.scheduler.run(until)
        for record in self.records:
            if record.outcome == "pending" and until is None:
                record.outcome = "unfinished"
        return DeliveryReport(self.records, dict(self.deleted), dict(self.disabled))

    # --- steps ------------------------------------------------------------------------------

    def _first(self, record: DeliveryRecord) -> Callable[[], Any]:
        async def go() -> None:
            if record.message.never_fired:
                record.outcome = "never_fired"
                return
            if record.faults.drop:
                record.outcome = "dropped"
                return
            await self._attempt(record, 1)

        return go

    def _subscription_key(self, message: Message) -> str:
        return f"{message.system}:{message.subscription or message.topic}"

    async def _attempt(self, record: DeliveryRecord, number: int) -> None:
        message = record.message
        endpoint = self.endpoints.get(message.system)
        if endpoint is None:
            record.outcome = "no_endpoint"
            return
        if self._subscription_key(message) in self.deleted:
            record.outcome = "subscription_deleted"
            return
        if message.system in self.disabled:
            record.outcome = "endpoint_disabled"
            return
        now = self.clock.now()
        policy = endpoint.policy
        body, headers = endpoint.signer(message, number, now, endpoint.url)
        reply = self._link_fault(message, number, now)
        if reply is None:
            timeout = self.clock.real_seconds(policy.timeout) * self.timeout_scale
            reply = await self.transport.post(endpoint.url, body, headers, timeout)
        ok = reply.status is not None and 200 <= reply.status < 300
        slow = ok and record.faults.slow_ack and number == 1
        outcome = (
            "slow_ack"
            if slow
            else "acked"
            if ok
            else "timeout"
            if reply.reached and reply.status is None
            else "link_down"
            if not reply.reached
            else "failed"
        )
        record.attempts.append(AttemptRecord(number, now, reply.status, outcome, reply.reached))
        if ok and not slow:
            record.outcome = "delivered"
            record.acked_at = now
            if record.faults.duplicate:
                self.scheduler.at(
                    now + timedelta(seconds=DUPLICATE_AFTER), self._resend(record, endpoint)
                )
            return
        if reply.status is not None and reply.status in policy.disable_on:
            record.outcome = "endpoint_disabled"
            self.disabled.setdefault(message.system, now)
            return
        if reply.status is not None and reply.status in policy.no_retry:
            record.outcome = "rejected"
            return
        delay = policy.delay(number, message.message_id, self.seed)
        first_at = record.attempts[0].at
        waited = policy.timeout if outcome in ("timeout", "slow_ack") else 0.0
        if delay is not None and reply.status in policy.honour_retry_after and reply.retry_after:
            delay = max(delay, reply.retry_after)
        due = None if delay is None else now + timedelta(seconds=waited + delay)
        if (
            due is not None
            and policy.window is not None
            and (due - first_at).total_seconds() > policy.window
        ):
            due = None
        if due is None:
            record.outcome = "exhausted"
            if policy.delete_subscription:
                self.deleted.setdefault(self._subscription_key(message), now)
            return
        record.outcome = "retrying"
        self.scheduler.at(due, self._retry(record, number + 1), message.message_id)

    def _retry(self, record: DeliveryRecord, number: int) -> Callable[[], Any]:
        async def go() -> None:
            await self._attempt(record, number)

        return go

    def _resend(self, record: DeliveryRecord, endpoint: Endpoint) -> Callable[[], Any]:
        """The vendor sends an acknowledged delivery again (same delivery id)."""

        async def go() -> None:
            now = self.clock.now()
            number = len(record.attempts) + 1
            body, headers = endpoint.signer(record.message, number, now, endpoint.url)
            reply = self._link_fault(record.message, number, now)
            if reply is None:
                timeout = self.clock.real_seconds(endpoint.policy.timeout) * self.timeout_scale
                reply = await self.transport.post(endpoint.url, body, headers, timeout)
            record.attempts.append(
                AttemptRecord(number, now, reply.status, "duplicate_sent", reply.reached)
            )

        return go

    def _link_fault(self, message: Message, number: int, now: datetime) -> Reply | None:
        """A synthetic failure if a fault window covers this system's link right now."""
        hours = (now - self.origin).total_seconds() / 3600
        for window in self.windows:
            if window.target != f"webhooks:{message.system}":
                continue
            if not window.start_hours <= hours < window.start_hours + window.duration_hours:
                continue
            roll = rng_for(self.seed, f"link:{message.message_id}:{number}").random()
            if window.kind == "outage" or roll < window.rate:
                if window.kind == "throttle":
                    return Reply(429, False, "429 storm", float(window.retry_after))
                status = window.status if window.kind == "outage" else (500, 502, 503)[number % 3]
                return Reply(status, False, f"{window.kind} window")
        return None


def stable_id(*parts: object, length: int = 32) -> str:
    """A hex id derived from its parts (the same run gives the same ids)."""
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()[:length]


def stable_uuid(*parts: object) -> str:
    h = stable_id(*parts)
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:32]}"


async def plan(
    messages: Sequence[Message],
    endpoints: Mapping[str, Endpoint],
    *,
    start: datetime,
    seed: int,
    windows: Sequence[FaultWindow] = (),
    fault_for: Callable[[Message], MessageFaults] | None = None,
) -> DeliveryReport:
    """The planned outcome of every message against a perfect receiver (pure, no I/O)."""
    clock = SimClock(start)
    sender = WebhookSender(
        clock,
        ModelTransport(),
        endpoints,
        seed=seed,
        windows=windows,
        start=start,
        fault_for=fault_for,
    )
    sender.add(messages)
    return await sender.run()


def plan_sync(
    messages: Sequence[Message],
    endpoints: Mapping[str, Endpoint],
    *,
    start: datetime,
    seed: int,
    windows: Sequence[FaultWindow] = (),
    fault_for: Callable[[Message], MessageFaults] | None = None,
) -> DeliveryReport:
    return asyncio.run(
        plan(messages, endpoints, start=start, seed=seed, windows=windows, fault_for=fault_for)
    )
