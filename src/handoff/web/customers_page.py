"""Customer 360: one person as every system and handoff sees them, on one page.

The golden record with the system each value came from, every system's id, the timeline of
canonical events across systems (paginated by id), the ledger's expected balance beside the
loyalty platform's own recorded figures (a mismatch is highlighted), the VIP flag and other
attributes as last delivered to each destination, and the merge history with Undo.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from handoff.identity_review import ReviewError, unmerge
from handoff.store import customer_view as view_store
from handoff.store import events as event_store
from handoff.store import identity as identity_store
from handoff.store import ledger as ledger_store
from handoff.web.base_page import PAGE, Kit

GOLDEN_LABELS = (
    ("first_name", "first name"),
    ("last_name", "last name"),
    ("email", "email"),
    ("phone", "phone"),
    ("zip", "zip"),
    ("birth_date", "birth date"),
)


@dataclass(frozen=True)
class Balance:
    """Expected (the ledger) against what the loyalty platform says it holds."""

    expected: int
    pending: int
    tier: str | None
    tier_reason: str
    is_vip: bool
    vip_reason: str
    manual_vip: bool | None
    platform_balance: int | None  # its last reported balance, else the sum of its deltas
    platform_points: int  # the sum of the deltas it recorded
    platform_events: int

    @property
    def gap(self) -> int | None:
        """expected minus platform; None when the platform has said nothing for this customer."""
        return None if self.platform_balance is None else self.expected - self.platform_balance


def balance_of(kit: Kit, conn: Any, customer_id: int) -> tuple[Balance | None, list[Any]]:
    program = kit.hub.settings.config.program
    view = ledger_store.customer_view(conn, program, customer_id, kit.hub.clock.now())
    if view is None:
        return None, []
    recorded = ledger_store.recorded_of(conn, customer_id)
    p = view.projection
    platform = p.recorded_balance
    if platform is None and recorded:
        platform = p.recorded_points
    return (
        Balance(
            expected=p.balance,
            pending=p.pending,
            tier=p.tier,
            tier_reason=p.tier_reason,
            is_vip=p.vip,
            vip_reason=p.vip_reason,
            manual_vip=p.manual_vip,
            platform_balance=platform,
            platform_points=p.recorded_points,
            platform_events=len(recorded),
        ),
        recorded[-20:],
    )


def register(app: FastAPI, kit: Kit) -> None:
    hub = kit.hub

    @app.get("/customers", include_in_schema=False)
    def customers_search(request: Request, q: str = "") -> HTMLResponse:
        session = kit.page(request)
        with hub.db.read() as conn:
            found = view_store.search(conn, q) if q.strip() else []
        return kit.render(request, "customers.html", session, q=q, found=found)

    def timeline(conn: Any, customer_id: int, before: int | None) -> tuple[list[Any], int | None]:
        flt = event_store.EventFilter(customer_id=customer_id, before_id=before)
        rows = event_store.list_events(conn, flt, PAGE + 1)
        more = len(rows) > PAGE
        rows = rows[:PAGE]
        return rows, (rows[-1].id if rows and more else None)

    @app.get("/customers/{customer_id}", include_in_schema=False)
    def customer_page(request: Request, customer_id: int) -> Response:
        session = kit.page(request)
        with hub.db.read() as conn:
            if not view_store.exists(conn, customer_id):
                raise HTTPException(404, f"no customer {customer_id}")
            if view_store.merged_into(conn, customer_id) is not None:
                survivor = identity_store.survivor_of(conn, customer_id)
                return RedirectResponse(
                    f"/customers/{survivor}?from={customer_id}", status_code=303
                )
            record = identity_store.golden(conn, [customer_id])[customer_id]
            ids = view_store.system_ids(conn, customer_id)
            balance, recorded = balance_of(kit, conn, customer_id)
            destinations = view_store.destination_values(
                conn, customer_id, list(hub.settings.config.destinations)
            )
            decisions = merge_history(conn, customer_id)
            events, next_before = timeline(conn, customer_id, None)
        merged_from = request.query_params.get("from")
        return kit.render(
            request,
            "customer.html",
            session,
            customer_id=customer_id,
            merged_from=merged_from,
            record=record,
            labels=GOLDEN_LABELS,
            ids=ids,
            balance=balance,
            recorded=recorded,
            destinations=destinations,
            decisions=decisions,
            undoable=undoable(decisions),
            events=events,
            next_before=next_before,
        )

    @app.get("/customers/{customer_id}/timeline", include_in_schema=False)
    def customer_timeline(request: Request, customer_id: int, before: int) -> HTMLResponse:
        """The next page of the timeline, swapped in by HTMX below the rows already shown."""
        session = kit.page(request)
        with hub.db.read() as conn:
            events, next_before = timeline(conn, customer_id, before)
        return kit.render(
            request,
            "customer_timeline.html",
            session,
            customer_id=customer_id,
            events=events,
            next_before=next_before,
        )

    @app.get("/customers/{customer_id}/unmerge/{decision_id}", include_in_schema=False)
    def customer_unmerge_preview(
        request: Request, customer_id: int, decision_id: int
    ) -> HTMLResponse:
        """What undoing the merge would give (a dry run), with the button that does it."""
        session = kit.page(request, "operator")
        try:
            plan = unmerge(hub, decision_id, actor=session.user.username, dry_run=True)
        except ReviewError as exc:
            raise HTTPException(409, str(exc)) from None
        return kit.render(
            request,
            "customer_unmerge.html",
            session,
            customer_id=customer_id,
            decision_id=decision_id,
            plan=plan,
        )

    @app.post("/customers/{customer_id}/unmerge/{decision_id}", include_in_schema=False)
    def customer_unmerge(
        request: Request, customer_id: int, decision_id: int, csrf_token: str | None = Form(None)
    ) -> Response:
        who = kit.action(request, csrf_token)
        try:
            result = unmerge(hub, decision_id, actor=who.user.username)
        except ReviewError as exc:
            raise HTTPException(409, str(exc)) from None
        return RedirectResponse(f"/customers/{result.cluster}", status_code=303)


def merge_history(conn: Any, customer_id: int) -> list[dict[str, Any]]:
    """Every decision about this customer's cluster: its members' and its records' (a merge
    the pipeline made names the records it joined), oldest first."""
    members = identity_store.cluster_members(conn, customer_id)
    records = [p.record_id for p in identity_store.cluster_profiles(conn, customer_id)]
    return identity_store.cluster_decisions(conn, members, records)


def undoable(decisions: list[dict[str, Any]]) -> set[int]:
    """Merge decisions not undone since: an unmerge names the merge it undid (`undoes`)."""
    undone = {
        int(d["evidence"]["undoes"])
        for d in decisions
        if d["kind"] == "unmerge"
        and isinstance(d.get("evidence"), dict)
        and "undoes" in d["evidence"]
    }
    return {int(d["id"]) for d in decisions if d["kind"] == "merge" and int(d["id"]) not in undone}
