"""The operator dashboard: server-rendered pages (Jinja2 + HTMX), signed in with a session.

Pages read through the store's read models only; every action (retry, replay) is a POST that
needs the operator role and the session's CSRF token, checked here on the server whatever the
page showed. Viewers see emails and phones masked.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from fastapi import FastAPI, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from handoff.hub import Hub
from handoff.monitor.alerting import AlertLoop, Evaluator
from handoff.store import alerts as alert_store
from handoff.store import events as event_store
from handoff.store import health
from handoff.store import outbox as outbox_store
from handoff.store import receipts as receipt_store
from handoff.store import users as user_store
from handoff.store.users import Session
from handoff.web import customers_page, recon_page, review_page
from handoff.web import session as auth
from handoff.web.base_page import HERE, PAGE, Kit, NeedLogin, make_templates
from handoff.web.parts import Background

WINDOW = timedelta(hours=24)
FAILURE_ALERT = 0.02  # the field's rule: a handoff failing more than 2% in 24 h is unhealthy

# where each role sits in the chain diagram (left column: systems that send to handoff)
ROLE_LABEL = {
    "pos": "POS",
    "storefront": "Storefront",
    "erp": "ERP",
    "loyalty": "Loyalty",
    "crm": "CRM",
    "helpdesk": "Helpdesk",
    "comms": "Email/SMS",
}


@dataclass(frozen=True)
class Edge:
    """One handoff drawn on the overview: a source into handoff, or handoff into a destination."""

    name: str
    label: str
    health: str  # ok | warn | bad | idle
    detail: str


def _edge_for_source(h: health.SourceHealth, role: str, now: datetime) -> Edge:
    label = f"{ROLE_LABEL.get(role, role)} · {h.source}"
    if h.received == 0:
        since = (
            f"last webhook {h.last_received_at:%Y-%m-%d %H:%M}" if h.last_received_at else "never"
        )
        return Edge(h.source, label, "idle", f"nothing in 24 h ({since})")
    ok = 1.0 - h.failure_rate
    state = "bad" if h.failure_rate > FAILURE_ALERT else ("warn" if h.pending else "ok")
    detail = f"{h.received:,} in 24 h · {ok:.1%} ok · {h.quarantined:,} quarantined"
    if h.pending:
        detail += f" · {h.pending:,} waiting"
    return Edge(h.source, label, state, detail)


def _edge_for_destination(stats: outbox_store.DestinationStats, role: str) -> Edge:
    by = stats.by_status
    done = by.get("delivered", 0)
    dead = by.get("dead", 0)
    waiting = sum(n for s, n in by.items() if s not in ("delivered", "dead", "superseded"))
    finished = done + dead
    rate = dead / finished if finished else 0.0
    state = "bad" if rate > FAILURE_ALERT else ("warn" if waiting else "ok")
    if not finished and not waiting:
        state = "idle"
    detail = f"{done:,} delivered · {dead:,} dead-lettered · {waiting:,} waiting"
    return Edge(
        stats.destination, f"{ROLE_LABEL.get(role, role)} · {stats.destination}", state, detail
    )


def register(app: FastAPI, hub: Hub, *, run_worker: bool) -> list[Background]:
    kit = Kit(hub, make_templates())
    throttle = auth.LoginThrottle()
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    @app.exception_handler(NeedLogin)
    async def to_login(request: Request, exc: NeedLogin) -> Response:
        return RedirectResponse(f"/login?next={request.url.path}", status_code=303)

    page = kit.page
    render = kit.render

    def action(request: Request, csrf_token: str | None) -> Session:
        return kit.action(request, csrf_token)

    @app.get("/login", include_in_schema=False)
    def login_form(request: Request, next: str = "/") -> HTMLResponse:
        return render(request, "login.html", None, next=next, error=None)

    @app.post("/login", include_in_schema=False)
    def login_submit(
        request: Request,
        username: str = Form(...),
        password: str = Form(...),
        next: str = Form("/"),
    ) -> Response:
        client = request.client.host if request.client else "unknown"
        result = auth.login(hub, throttle, username, password, client)
        if result.token is None:
            refused = render(request, "login.html", None, next=next, error=result.error)
            refused.status_code = 401
            return refused
        target = next if next.startswith("/") and not next.startswith("//") else "/"
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            auth.COOKIE,
            result.token,
            max_age=int(auth.LIFETIME.total_seconds()),
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    @app.post("/logout", include_in_schema=False)
    def logout(request: Request, csrf_token: str | None = Form(None)) -> Response:
        session = auth.current(request, hub)
        token = request.cookies.get(auth.COOKIE)
        if session is not None and token and auth.csrf_ok(session, csrf_token):
            with hub.db.write() as conn:
                user_store.close_session(conn, token)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(auth.COOKIE)
        return response

    @app.get("/", include_in_schema=False)
    def overview(request: Request) -> HTMLResponse:
        session = page(request)
        now = hub.clock.now()
        sources = sorted(hub.sources)
        roles = {name: src.config.role for name, src in hub.sources.items()}
        with hub.db.read() as conn:
            inbound = health.source_health(conn, sources, now - WINDOW)
            outbound = outbox_store.stats(conn)
            hourly = health.hourly_received(conn, now - WINDOW, now)
        destinations = hub.settings.config.destinations
        into = [_edge_for_source(h, roles[h.source], now) for h in inbound]
        out = [
            _edge_for_destination(
                s, destinations[s.destination].role if s.destination in destinations else ""
            )
            for s in outbound
        ]
        known = {s.destination for s in outbound}
        out += [
            Edge(name, f"{ROLE_LABEL.get(cfg.role, cfg.role)} · {name}", "idle", "nothing sent yet")
            for name, cfg in sorted(destinations.items())
            if name not in known
        ]
        chart = {
            "x": [int(moment.timestamp()) for moment, _ in hourly],
            "y": [n for _, n in hourly],
        }
        return render(request, "overview.html", session, into=into, out=out, chart=chart)

    @app.get("/events", include_in_schema=False)
    def events_page(
        request: Request,
        source: str | None = None,
        type: str | None = None,
        order_id: str | None = None,
        customer: str | None = None,
        before: int | None = None,
    ) -> HTMLResponse:
        session = page(request)
        flt = event_store.EventFilter(
            source=source or None,
            type=type or None,
            order_id=order_id or None,
            customer_external_id=customer or None,
            before_id=before,
        )
        with hub.db.read() as conn:
            rows = event_store.list_events(conn, flt, PAGE + 1)
        more = len(rows) > PAGE
        rows = rows[:PAGE]
        query = {"source": source, "type": type, "order_id": order_id, "customer": customer}
        return render(
            request,
            "events.html",
            session,
            rows=rows,
            more=more,
            query={k: v for k, v in query.items() if v},
            sources=sorted(hub.sources),
            next_before=rows[-1].id if rows and more else None,
        )

    @app.get("/quarantine", include_in_schema=False)
    def quarantine_page(request: Request) -> HTMLResponse:
        session = page(request)
        with hub.db.read() as conn:
            rows = receipt_store.list_quarantine(conn, limit=PAGE)
        return render(request, "quarantine.html", session, rows=rows)

    @app.post("/quarantine/{receipt_id}/retry", include_in_schema=False)
    def quarantine_retry(
        request: Request, receipt_id: int, csrf_token: str | None = Form(None)
    ) -> Response:
        action(request, csrf_token)
        with hub.db.write() as conn:
            receipt_store.requeue_quarantined(conn, now=hub.clock.now(), receipt_ids=[receipt_id])
        return RedirectResponse("/quarantine", status_code=303)

    @app.get("/deliveries", include_in_schema=False)
    def deliveries_page(
        request: Request, destination: str | None = None, status: str | None = None
    ) -> HTMLResponse:
        session = page(request)
        flt = outbox_store.DeliveryFilter(
            destination=destination or None, statuses=(status,) if status else ()
        )
        with hub.db.read() as conn:
            stats = outbox_store.stats(conn)
            rows = outbox_store.list_rows(conn, flt, PAGE)
        return render(
            request,
            "deliveries.html",
            session,
            stats=stats,
            rows=rows,
            destination=destination or "",
            status=status or "",
        )

    @app.post("/deliveries/{outbox_id}/replay", include_in_schema=False)
    def delivery_replay(
        request: Request, outbox_id: int, csrf_token: str | None = Form(None)
    ) -> Response:
        action(request, csrf_token)
        with hub.db.write() as conn:
            if outbox_store.get(conn, outbox_id) is None:
                raise HTTPException(404, f"no delivery {outbox_id}")
            outbox_store.replay_one(conn, outbox_id, hub.clock.now())
        return RedirectResponse("/deliveries", status_code=303)

    @app.get("/alerts", include_in_schema=False)
    def alerts_page(request: Request) -> HTMLResponse:
        session = page(request)
        with hub.db.read() as conn:
            rows = alert_store.list_alerts(conn, include_resolved=True, limit=PAGE)
        return render(request, "alerts.html", session, rows=rows)

    @app.post("/alerts/{alert_id}/ack", include_in_schema=False)
    def alert_ack(request: Request, alert_id: int, csrf_token: str | None = Form(None)) -> Response:
        who = action(request, csrf_token)
        with hub.db.write() as conn:
            alert_store.ack(conn, alert_id, who.user.username, hub.clock.now())
        return RedirectResponse("/alerts", status_code=303)

    customers_page.register(app, kit)
    review_page.register(app, kit)
    recon_page.register(app, kit)

    if not run_worker:
        return []
    every = hub.settings.config.alerts.evaluate_every_seconds
    return [AlertLoop(Evaluator(hub), every)]
