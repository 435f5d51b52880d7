"""Delivery over HTTP: list and inspect deliveries, replay them, per-destination state; and the
background worker `serve` runs (so a single `handoff serve` also delivers)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query
from pydantic import BaseModel, Field

from handoff.delivery import breaker
from handoff.delivery.outbox import use_destinations
from handoff.delivery.worker import DeliveryLoop, Worker
from handoff.hub import Hub
from handoff.store import outbox as store
from handoff.store.tokens import TokenRow
from handoff.web.auth import get_hub, require
from handoff.web.parts import Background

router = APIRouter(prefix="/api/deliveries", tags=["deliveries"])
Viewer = Annotated[TokenRow, Depends(require("viewer"))]
Operator = Annotated[TokenRow, Depends(require("operator"))]
HubDep = Annotated[Hub, Depends(get_hub)]


class DeliveryOut(BaseModel):
    id: int
    destination: str
    kind: str
    customer_id: int
    field: str
    version: int
    idem_key: str
    status: str
    attempts: int
    throttled: int
    next_attempt_at: datetime
    created_at: datetime
    delivered_at: datetime | None
    last_status: int | None
    last_error: str | None
    cause: str


class AttemptOut(BaseModel):
    attempt: int
    at: datetime
    outcome: str
    status_code: int | None
    latency_ms: float | None
    response: str | None
    error: str | None


class DeliveryDetail(DeliveryOut):
    payload: dict[str, Any]
    attempts_made: list[AttemptOut]


class DeliveryPage(BaseModel):
    items: list[DeliveryOut]
    next_before_id: int | None


class ReplayRequest(BaseModel):
    destination: str | None = None
    customer_id: int | None = None
    statuses: list[str] = Field(default_factory=lambda: ["dead"])
    since: datetime | None = None
    until: datetime | None = None
    dry_run: bool = False


class ReplayResult(BaseModel):
    matched: int
    replayed: int


class DestinationOut(BaseModel):
    destination: str
    by_status: dict[str, int]
    oldest_pending: datetime | None
    breaker: str  # closed | half_open | open | disabled
    disabled: str | None = None  # why a worker cannot run it (a missing token)


def _out(r: store.OutboxRow) -> DeliveryOut:
    data = asdict(r)
    return DeliveryOut(**{k: data[k] for k in DeliveryOut.model_fields})


@router.get("", summary="Deliveries, newest first, filtered")
def list_deliveries(
    hub: HubDep,
    _: Viewer,
    destination: str | None = None,
    customer_id: int | None = None,
    status: Annotated[list[str] | None, Query()] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    before_id: int | None = None,
) -> DeliveryPage:
    flt = store.DeliveryFilter(destination, customer_id, tuple(status or ()), since, until)
    with hub.db.read() as conn:
        rows = store.list_rows(conn, flt, limit, before_id)
    return DeliveryPage(
        items=[_out(r) for r in rows], next_before_id=rows[-1].id if len(rows) == limit else None
    )


@router.get("/destinations", summary="Queue, DLQ and breaker state per destination")
def destinations(hub: HubDep, _: Viewer) -> list[DestinationOut]:
    with hub.db.read() as conn:
        rows = store.overview(conn)
    return [
        DestinationOut(
            destination=s.destination,
            by_status=s.by_status,
            oldest_pending=s.oldest_pending,
            breaker=breaker.shown(state),
            disabled=breaker.disabled_reason(state),
        )
        for s, state in rows
    ]


@router.get("/{delivery_id}", summary="One delivery with every attempt")
def show(delivery_id: int, hub: HubDep, _: Viewer) -> DeliveryDetail:
    with hub.db.read() as conn:
        row = store.get(conn, delivery_id)
        attempts = store.attempts_of(conn, delivery_id) if row else []
    if row is None:
        raise HTTPException(404, f"no delivery {delivery_id}")
    return DeliveryDetail(
        **_out(row).model_dump(),
        payload=row.payload,
        attempts_made=[AttemptOut(**{k: a[k] for k in AttemptOut.model_fields}) for a in attempts],
    )


@router.post("/replay", summary="Send matching finished deliveries again (same idempotency key)")
def replay(body: ReplayRequest, hub: HubDep, _: Operator) -> ReplayResult:
    bad = sorted(set(body.statuses) - set(store.REPLAYABLE))
    if bad:
        raise HTTPException(422, f"cannot replay statuses {bad}; use {list(store.REPLAYABLE)}")
    flt = store.DeliveryFilter(
        body.destination, body.customer_id, tuple(body.statuses), body.since, body.until
    )
    if body.dry_run:
        with hub.db.read() as conn:
            return ReplayResult(matched=store.replay_count(conn, flt), replayed=0)
    with hub.db.write() as conn:
        done = store.replay(conn, flt, hub.clock.now())
    return ReplayResult(matched=done, replayed=done)


def register(app: FastAPI, hub: Hub, *, run_worker: bool) -> list[Background]:
    """Add this part's routes to `app`; return the background tasks it needs."""
    app.include_router(router)
    use_destinations(hub.db.url, hub.settings.config.destinations)
    if not run_worker or not hub.settings.config.destinations:
        return []
    cfg = hub.settings.config.delivery
    return [DeliveryLoop(Worker(hub), cfg.idle_poll_seconds)]
