"""Identity review queue: the pairs the engine would not decide alone, oldest first.

Each item shows the two customers side by side, the two profiles that met, and the per-field
evidence (level, match weight, both values) behind the score. Merge and Keep apart call
`handoff.identity_review.decide_review`, the same service the CLI uses; only operators may.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from handoff.identity_review import ReviewError, decide_review
from handoff.store import customer_view as view_store
from handoff.store import identity as identity_store
from handoff.web.base_page import PAGE, Kit

PERSONAL = ("email", "phone")  # fields masked for viewers


def evidence_rows(evidence: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The per-field lines of a stored match, strongest pull first (either way)."""
    if not evidence:
        return []
    rows = [dict(e) for e in evidence.get("evidence") or [] if isinstance(e, dict)]
    for row in rows:
        row["personal"] = any(p in str(row.get("field", "")) for p in PERSONAL)
    return sorted(rows, key=lambda r: -abs(float(r.get("weight") or 0.0)))


def register(app: FastAPI, kit: Kit) -> None:
    hub = kit.hub

    @app.get("/review", include_in_schema=False)
    def review_queue(
        request: Request, status: str = "open", after: int | None = None
    ) -> HTMLResponse:
        session = kit.page(request)
        if status not in ("open", "merged", "split"):
            raise HTTPException(422, "status is open, merged or split")
        with hub.db.read() as conn:
            rows = view_store.reviews_after(conn, status, after, PAGE + 1)
            total = view_store.count_reviews(conn, status)
        more = len(rows) > PAGE
        rows = rows[:PAGE]
        return kit.render(
            request,
            "review.html",
            session,
            rows=rows,
            total=total,
            status=status,
            next_after=rows[-1].id if rows and more else None,
        )

    @app.get("/review/{review_id}", include_in_schema=False)
    def review_item(request: Request, review_id: int) -> HTMLResponse:
        session = kit.page(request)
        with hub.db.read() as conn:
            item = identity_store.get_review(conn, review_id)
            if item is None:
                raise HTTPException(404, f"no review item {review_id}")
            sides = [
                {
                    "label": "new profile",
                    "customer_id": item.customer_id,
                    "contact": identity_store.contact(conn, item.customer_id),
                    "record": view_store.profile_of_record(conn, item.record_id),
                },
                {
                    "label": "candidate",
                    "customer_id": item.candidate_customer_id,
                    "contact": identity_store.contact(conn, item.candidate_customer_id),
                    "record": view_store.profile_of_record(conn, item.candidate_record_id),
                },
            ]
        return kit.render(
            request,
            "review_item.html",
            session,
            item=item,
            sides=sides,
            evidence=evidence_rows(item.evidence),
            probability=(item.evidence or {}).get("probability"),
        )

    @app.post("/review/{review_id}/{decision}", include_in_schema=False)
    def review_decide(
        request: Request, review_id: int, decision: str, csrf_token: str | None = Form(None)
    ) -> Response:
        who = kit.action(request, csrf_token)
        if decision not in ("merge", "split"):
            raise HTTPException(404, "decide with merge or split")
        try:
            outcome = decide_review(hub, review_id, decision, who.user.username)
        except ReviewError as exc:
            status = 404 if "no review item" in str(exc) else 409
            raise HTTPException(status, str(exc)) from None
        if outcome.action == "merged" and outcome.survivor is not None:
            return RedirectResponse(f"/customers/{outcome.survivor}", status_code=303)
        return RedirectResponse("/review", status_code=303)
