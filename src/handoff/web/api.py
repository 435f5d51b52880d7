"""The REST API: read the receive log, the canonical events and the quarantine."""

from __future__ import annotations

import base64
from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel, Field

from handoff.hub import Hub
from handoff.store import events as event_store
from handoff.store import receipts as receipt_store
from handoff.store.tokens import TokenRow
from handoff.web.auth import get_hub, require

router = APIRouter(prefix="/api")
T = TypeVar("T")
Viewer = Annotated[TokenRow, Depends(require("viewer"))]
Operator = Annotated[TokenRow, Depends(require("operator"))]
HubDep = Annotated[Hub, Depends(get_hub)]
Limit = Annotated[int, Query(ge=1, le=500)]


class ReceiptOut(BaseModel):
    id: int
    source: str
    vendor: str
    delivery_id: str
    received_at: datetime
    status: str
    status_reason: str | None
    processed_at: datetime | None
    attempts: int
    event_count: int
    size_bytes: int


class ReceiptDetail(ReceiptOut):
    headers: dict[str, str]
    body: str
    body_encoding: Literal["utf-8", "base64"]


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_before_id: int | None = Field(
        description="Pass as before_id to get the next (older) page; null on the last page."
    )


class EventOut(BaseModel):
    id: int
    event_id: str
    receipt_id: int
    source: str
    source_event_id: str
    type: str
    occurred_at: datetime
    received_at: datetime
    processed_at: datetime
    order_id: str | None
    customer: dict[str, Any] | None
    body: dict[str, Any]


class QuarantineOut(BaseModel):
    id: int
    receipt_id: int
    source: str
    stage: str
    reason: str
    quarantined_at: datetime
    resolved_at: datetime | None
    resolution: str | None


class RetryRequest(BaseModel):
    receipt_ids: list[int] | None = Field(
        default=None, description="Receipts to retry; omit to retry every open quarantine entry."
    )
    source: str | None = None


class RetryResult(BaseModel):
    requeued: list[int]


def _receipt_out(r: receipt_store.ReceiptRow) -> ReceiptOut:
    return ReceiptOut(
        id=r.id,
        source=r.source,
        vendor=r.vendor,
        delivery_id=r.delivery_id,
        received_at=r.received_at,
        status=r.status,
        status_reason=r.status_reason,
        processed_at=r.processed_at,
        attempts=r.attempts,
        event_count=r.event_count,
        size_bytes=len(r.body),
    )


def _next(items: list[Any], limit: int) -> int | None:
    return items[-1].id if len(items) == limit else None


@router.get("/receipts", response_model=Page[ReceiptOut], summary="List the receive log")
def list_receipts(
    hub: HubDep,
    _: Viewer,
    source: str | None = None,
    status: Literal["pending", "processed", "skipped", "quarantined"] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before_id: int | None = None,
    limit: Limit = 50,
) -> Page[ReceiptOut]:
    flt = receipt_store.ReceiptFilter(source, status, since, until, before_id)
    with hub.db.read() as conn:
        rows = receipt_store.list_receipts(conn, flt, limit)
    return Page[ReceiptOut](
        items=[_receipt_out(r) for r in rows], next_before_id=_next(rows, limit)
    )


@router.get("/receipts/{receipt_id}", response_model=ReceiptDetail, summary="One receipt, raw")
def get_receipt(receipt_id: int, hub: HubDep, _: Viewer) -> ReceiptDetail:
    with hub.db.read() as conn:
        row = receipt_store.get(conn, receipt_id)
    if row is None:
        raise HTTPException(404, f"no receipt {receipt_id}")
    try:
        body, encoding = row.body.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        body, encoding = base64.b64encode(row.body).decode(), "base64"
    return ReceiptDetail(
        **_receipt_out(row).model_dump(),
        headers=row.headers,
        body=body,
        body_encoding=encoding,
    )


@router.get("/events", response_model=Page[EventOut], summary="List canonical events")
def list_events(
    hub: HubDep,
    _: Viewer,
    source: str | None = None,
    type: str | None = None,
    order_id: str | None = None,
    customer_id: Annotated[str | None, Query(description="the source system's customer id")] = None,
    receipt_id: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before_id: int | None = None,
    limit: Limit = 50,
) -> Page[EventOut]:
    flt = event_store.EventFilter(
        source, type, order_id, customer_id, receipt_id, since, until, before_id
    )
    with hub.db.read() as conn:
        rows = event_store.list_events(conn, flt, limit)
    items = [
        EventOut(
            id=r.id,
            event_id=r.event_id,
            receipt_id=r.receipt_id,
            source=r.source,
            source_event_id=r.source_event_id,
            type=r.type,
            occurred_at=r.occurred_at,
            received_at=r.received_at,
            processed_at=r.processed_at,
            order_id=r.order_id,
            customer=r.customer,
            body=r.body,
        )
        for r in rows
    ]
    return Page[EventOut](items=items, next_before_id=_next(rows, limit))


@router.get("/quarantine", response_model=list[QuarantineOut], summary="Open quarantine entries")
def list_quarantine(
    hub: HubDep,
    _: Viewer,
    source: str | None = None,
    include_resolved: bool = False,
    limit: Limit = 100,
) -> list[QuarantineOut]:
    with hub.db.read() as conn:
        rows = receipt_store.list_quarantine(
            conn, source=source, include_resolved=include_resolved, limit=limit
        )
    return [QuarantineOut(**asdict(r)) for r in rows]


@router.post("/quarantine/retry", response_model=RetryResult, summary="Reprocess quarantined")
def retry_quarantine(body: RetryRequest, hub: HubDep, _: Operator) -> RetryResult:
    with hub.db.write() as conn:
        ids = receipt_store.requeue_quarantined(
            conn, now=hub.clock.now(), receipt_ids=body.receipt_ids, source=body.source
        )
    return RetryResult(requeued=ids)
