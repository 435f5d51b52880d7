"""`/api/identity/…`: golden customers, their decision history, the review queue, and unmerge.

Viewers read (with emails and phones masked, as on the dashboard); operators decide review items
and undo merges. Each action is the same function the CLI and the dashboard call.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query
from pydantic import BaseModel, Field

from handoff.hub import Hub
from handoff.identity_review import ReviewError, decide_review, unmerge
from handoff.store import identity as store
from handoff.store.tokens import TokenRow
from handoff.web.auth import RANK, get_hub, require
from handoff.web.parts import Background
from handoff.web.session import mask_email, mask_phone

router = APIRouter(prefix="/api/identity", tags=["identity"])

Viewer = Annotated[TokenRow, Depends(require("viewer"))]
Operator = Annotated[TokenRow, Depends(require("operator"))]
HubDep = Annotated[Hub, Depends(get_hub)]


def register(app: FastAPI, hub: Hub, *, run_worker: bool) -> list[Background]:
    app.include_router(router)
    return []


def _masked(token: TokenRow) -> bool:
    return RANK[token.role] < RANK["operator"]


def _contact(contact: store.Contact, token: TokenRow) -> dict[str, Any]:
    data = dataclasses.asdict(contact)
    if _masked(token):
        data["email"], data["phone"] = mask_email(contact.email), mask_phone(contact.phone)
    return data


def _review(row: store.ReviewRow) -> dict[str, Any]:
    return dataclasses.asdict(row)


@router.get("/customers", summary="Golden customers by id, a system's id, email, phone or name")
def find(
    hub: HubDep,
    token: Viewer,
    q: Annotated[str, Query(min_length=1, description="What to look for.")],
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
) -> list[dict[str, Any]]:
    with hub.db.read() as conn:
        return [_contact(c, token) for c in store.find_customers(conn, q, limit)]


@router.get("/customers/{customer_id}", summary="A golden customer, every system's id, decisions")
def customer(customer_id: int, hub: HubDep, token: Viewer) -> dict[str, Any]:
    with hub.db.read() as conn:
        found = store.contact(conn, customer_id)
        if found is None:
            raise HTTPException(404, f"no customer {customer_id}")
        members = store.cluster_members(conn, found.customer_id)
        records = [p.record_id for p in store.cluster_profiles(conn, found.customer_id)]
        decisions = store.cluster_decisions(conn, members, records)
    return _contact(found, token) | {
        "merged_customer_ids": [m for m in members if m != found.customer_id],
        "profiles": len(records),
        "decisions": decisions,
    }


@router.get("/review", summary="Review items, oldest first")
def review_list(
    hub: HubDep,
    _: Viewer,
    status: Literal["open", "merged", "split"] = "open",
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[dict[str, Any]]:
    with hub.db.read() as conn:
        return [_review(r) for r in store.list_review(conn, status, limit)]


@router.get("/review/{review_id}", summary="One review item with its per-field evidence")
def review_show(review_id: int, hub: HubDep, _: Viewer) -> dict[str, Any]:
    with hub.db.read() as conn:
        row = store.get_review(conn, review_id)
    if row is None:
        raise HTTPException(404, f"no review item {review_id}")
    return _review(row)


class Verdict(BaseModel):
    action: Literal["merge", "split"] = Field(description="merge: one person; split: two.")


@router.post("/review/{review_id}", summary="Decide a review item: merge or keep apart")
def review_decide(review_id: int, verdict: Verdict, hub: HubDep, token: Operator) -> dict[str, Any]:
    try:
        outcome = decide_review(hub, review_id, verdict.action, token.name)
    except ReviewError as exc:
        raise HTTPException(409 if "already" in str(exc) else 404, str(exc)) from None
    return dataclasses.asdict(outcome)


@router.post(
    "/decisions/{decision_id}/unmerge",
    summary="Undo a merge: split its cluster by replaying the decisions without it",
)
def unmerge_decision(
    decision_id: int,
    hub: HubDep,
    token: Operator,
    dry_run: Annotated[bool, Query(description="Show the split without writing it.")] = False,
) -> dict[str, Any]:
    try:
        result = unmerge(hub, decision_id, actor=token.name, dry_run=dry_run)
    except ReviewError as exc:
        text = str(exc)
        raise HTTPException(404 if text.startswith("no decision") else 409, text) from None
    return dataclasses.asdict(result)
