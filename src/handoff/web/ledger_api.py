"""`/api/ledger/…`: a customer's expected balance, entries and tier history; the liability report.

Read-only, so the viewer role reads all of it (finance reads the liability with a viewer token).
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query

from handoff.hub import Hub
from handoff.store import ledger as store
from handoff.store.tokens import TokenRow
from handoff.web.auth import get_hub, require
from handoff.web.parts import Background

router = APIRouter(prefix="/api/ledger", tags=["ledger"])

Viewer = Annotated[TokenRow, Depends(require("viewer"))]
HubDep = Annotated[Hub, Depends(get_hub)]
AsOf = Annotated[
    datetime | None,
    Query(description="As of this instant (ISO 8601 with offset; default: now)."),
]


def register(app: FastAPI, hub: Hub, *, run_worker: bool) -> list[Background]:
    """Add this part's routes to `app`; the ledger needs no background task (the stage wakes
    customers whose state time alone changes)."""
    app.include_router(router)
    return []


def _moment(hub: Hub, as_of: datetime | None) -> datetime:
    if as_of is None:
        return hub.clock.now()
    if as_of.tzinfo is None:
        raise HTTPException(422, "as_of needs a time zone offset or Z")
    return as_of


def _view(hub: Hub, customer_id: int, as_of: datetime | None) -> dict[str, Any]:
    moment = _moment(hub, as_of)
    program = hub.settings.config.program
    with hub.db.read() as conn:
        view = store.customer_view(conn, program, customer_id, moment)
    if view is None:
        raise HTTPException(404, f"customer {customer_id} has nothing in the ledger")
    return store.view_json(view, program)


@router.get("/customers/{customer_id}", summary="A customer's expected balance, tier and VIP")
def customer_balance(
    customer_id: int, hub: HubDep, _: Viewer, as_of: AsOf = None
) -> dict[str, Any]:
    data = _view(hub, customer_id, as_of)
    data.pop("entries")
    data.pop("history")
    return data


@router.get("/customers/{customer_id}/entries", summary="Ledger lines with the rule behind each")
def customer_entries(
    customer_id: int, hub: HubDep, _: Viewer, as_of: AsOf = None
) -> dict[str, Any]:
    data = _view(hub, customer_id, as_of)
    return {k: data[k] for k in ("customer_id", "as_of", "currency", "balance", "entries")}


@router.get("/customers/{customer_id}/tiers", summary="Tier and VIP history")
def customer_tiers(customer_id: int, hub: HubDep, _: Viewer) -> list[dict[str, Any]]:
    with hub.db.read() as conn:
        return [store.history_json(h) for h in store.history_of(conn, customer_id)]


@router.get("/liability", summary="Outstanding points, value, breakage, balances by age")
def liability(hub: HubDep, _: Viewer, as_of: AsOf = None) -> dict[str, Any]:
    moment = _moment(hub, as_of)
    with hub.db.read() as conn:
        report = store.liability(conn, hub.settings.config.program, moment)
    data = asdict(report)
    data["as_of"] = moment.isoformat()
    return data
