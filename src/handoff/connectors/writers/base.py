"""What every outbound writer shares: the delivery it is given, the result it returns, and how
an HTTP answer becomes an outcome (handoff.delivery.policy holds the rules)."""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol

import httpx

from handoff.delivery.policy import Outcome, classify_status, retry_after_from

RESPONSE_LIMIT = 2000  # characters of a response kept with each attempt


@dataclass(frozen=True)
class Recipient:
    """The golden customer as the destination needs to find them (from identity)."""

    customer_id: int
    email: str | None = None
    phone: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    zip: str | None = None
    external_ids: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Delivery:
    id: int
    kind: str  # attribute | points | profile
    customer_id: int
    field: str
    version: int
    payload: Mapping[str, Any]
    idem_key: str
    attempt: int  # this try's number, from 1
    recipient: Recipient | None = None
    external_id: str | None = None  # the destination's own id for the customer, if known
    sent_before: bool = False  # an earlier attempt of this adjustment may have reached it

    @property
    def email(self) -> str | None:
        if self.recipient is not None and self.recipient.email:
            return self.recipient.email
        fields = self.payload.get("fields")
        value = fields.get("email") if isinstance(fields, dict) else None
        return value if isinstance(value, str) and value else None


@dataclass(frozen=True)
class WriteResult:
    outcome: Outcome
    status: int | None = None
    latency_ms: float | None = None
    response: str | None = None
    error: str | None = None
    retry_after: float | None = None
    external_id: str | None = None  # an id learned on the way, to remember
    available: float | None = None  # what the vendor says is left of its budget
    destination_fault: bool = True  # False: the destination is healthy, the request was not

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.DELIVERED


Fields = Mapping[str, str | Mapping[str, str]]


class Writer(Protocol):
    batch_size: int  # deliveries per request (HubSpot batches; most send one at a time)

    def write(
        self, client: httpx.Client, deliveries: Sequence[Delivery], now: datetime
    ) -> list[WriteResult]: ...


def truncate(text: str | None) -> str | None:
    if text is None:
        return None
    return text if len(text) <= RESPONSE_LIMIT else text[:RESPONSE_LIMIT] + "…"


@dataclass
class Call:
    """One HTTP exchange with its timing, or the exception that replaced it (any client)."""

    status: int | None
    text: str
    headers: Mapping[str, str]
    latency_ms: float
    error: Exception | None = None
    timed_out: bool = False

    def json(self) -> Any:
        try:
            return json.loads(self.text) if self.text else None
        except ValueError:
            return None


def send(client: httpx.Client, method: str, url: str, **kwargs: Any) -> Call:
    start = time.perf_counter()
    try:
        r = client.request(method, url, **kwargs)
    except httpx.HTTPError as exc:
        timed_out = isinstance(exc, httpx.TimeoutException)
        return Call(None, "", {}, (time.perf_counter() - start) * 1000, exc, timed_out)
    return Call(r.status_code, r.text, r.headers, (time.perf_counter() - start) * 1000)


def result_of(call: Call, now: datetime) -> WriteResult:
    """The outcome an HTTP answer implies on its own (2xx, 3xx, 4xx, 429, 5xx, timeout)."""
    if call.status is None:
        return WriteResult(
            Outcome.TIMEOUT if call.timed_out else Outcome.RETRY,
            latency_ms=call.latency_ms,
            error=f"{type(call.error).__name__}: {call.error}",
        )
    outcome = classify_status(call.status)
    return WriteResult(
        outcome,
        status=call.status,
        latency_ms=call.latency_ms,
        response=truncate(call.text),
        error=None if outcome is Outcome.DELIVERED else f"HTTP {call.status}",
        retry_after=retry_after_from(call.headers, now),
        destination_fault=outcome is Outcome.RETRY,
    )


def refused(result: WriteResult, error: str, outcome: Outcome = Outcome.RETRY) -> WriteResult:
    """A 2xx that did not confirm the write (GraphQL userErrors, a partial batch)."""
    return replace(result, outcome=outcome, error=error, destination_fault=False)


def not_found(error: str, latency_ms: float | None = None) -> WriteResult:
    """The customer does not exist there (yet): try again later, the destination is fine."""
    return WriteResult(Outcome.RETRY, latency_ms=latency_ms, error=error, destination_fault=False)


def each(
    deliveries: Sequence[Delivery], one: Callable[[Delivery], WriteResult]
) -> list[WriteResult]:
    return [one(d) for d in deliveries]


def field_target(fields: Mapping[str, str | Mapping[str, str]], attribute: str, key: str) -> str:
    """The destination's name for an attribute: `attr = "name"` or `attr = { key = "name" }`."""
    spec = fields.get(attribute)
    if isinstance(spec, str):
        return spec
    if spec is not None and key in spec:
        return spec[key]
    return attribute


def permanent(error: str) -> WriteResult:
    """A delivery that can never succeed as it is (the wrong kind for this vendor, say)."""
    return WriteResult(Outcome.PERMANENT, error=error, destination_fault=False)


class VendorWriter(ABC):
    """A writer that sends one delivery at a time (every vendor but HubSpot's batches)."""

    batch_size = 1

    def __init__(
        self, base_url: str, token: str, fields: Fields | None = None, *, verify: bool = False
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.fields: Fields = fields or {}
        self.verify = verify

    def write(
        self, client: httpx.Client, deliveries: Sequence[Delivery], now: datetime
    ) -> list[WriteResult]:
        return [self._one(client, d, now) for d in deliveries]

    @abstractmethod
    def _one(self, client: httpx.Client, d: Delivery, now: datetime) -> WriteResult:
        """Send one delivery the vendor's way (each vendor's writer says how)."""

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def locate(
        self,
        client: httpx.Client,
        d: Delivery,
        now: datetime,
        search: tuple[str, dict[str, str]],
        found: tuple[str, str],
        what: str,
    ) -> tuple[WriteResult | None, str, str | None]:
        """(failure, the customer's id there, the id if it was learned now by email).

        `search` is the URL and query that list customers by email, `found` the answer's list
        key and the id field of its items."""
        if d.external_id:
            return None, d.external_id, None
        if not d.email:
            return not_found(f"no {what} id and no email to find it by"), "", None
        url, params = search
        call = send(client, "GET", url, params=params, headers=self.headers)
        result = result_of(call, now)
        if not result.ok:
            return result, "", None
        items = (call.json() or {}).get(found[0]) or []
        if not items:
            return not_found(f"no {what} with this email", result.latency_ms), "", None
        learned = str(items[0][found[1]])
        return None, learned, learned
