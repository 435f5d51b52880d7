"""The FastAPI application: webhook gateway, health, REST API, metrics — one ASGI app.

The webhook route is a plain Starlette route: it is the hot path and needs none of FastAPI's
request parsing. Everything under /api is FastAPI with OpenAPI docs at /docs.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

import handoff
from handoff import logs
from handoff.config import load_settings
from handoff.gateway.app import Gateway
from handoff.gateway.committer import GroupCommitter
from handoff.hub import Hub
from handoff.monitor import metrics
from handoff.pipeline.processor import ProcessorLoop
from handoff.pipeline.stages import build_processor
from handoff.store import alerts as alert_store
from handoff.store import migrate
from handoff.store import receipts as receipt_store
from handoff.web import api, parts

log = logs.get(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

DESCRIPTION = """
handoff takes every vendor's signed webhooks into a durable, idempotent receive log and maps
them to canonical customer, order and loyalty events.

**Webhooks** are posted to `POST /hooks/{source}` (not listed below: they authenticate by the
vendor's signature, see docs/gateway.md). **`/api/*`** needs a bearer token from
`handoff tokens create`.
"""


def hooks_first(app: FastAPI, gateway: Gateway) -> ASGIApp:
    """`POST /hooks/{source}` straight to the gateway, ahead of FastAPI's middleware stack.

    The webhook route is the hot path: the stack of error, telemetry and exit-stack middleware
    costs 15-20% of its throughput (bench/RESULTS.md) and gives it nothing it needs. Every other
    request, and every non-POST to /hooks, goes to the FastAPI app unchanged."""

    async def asgi(scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if scope["type"] == "http" and scope["method"] == "POST" and path.startswith("/hooks/"):
            source = path[len("/hooks/") :]
            if source and "/" not in source:
                scope["path_params"] = {"source": source}
                response = await gateway.receive(Request(scope, receive, send))
                await response(scope, receive, send)
                return
        await app(scope, receive, send)

    return asgi


def create_app(hub: Hub, *, run_worker: bool = True) -> FastAPI:
    committer = GroupCommitter(hub.db, hub.clock, batch_max=hub.settings.config.gateway.batch_max)
    gateway = Gateway(hub, committer)
    proc_cfg = hub.settings.config.processor
    loop = ProcessorLoop(build_processor(hub), proc_cfg.idle_poll_seconds)
    background: list[parts.Background] = []

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        committer.start()
        if run_worker:
            loop.start()
        for task in background:
            task.start()
        log.info(
            "handoff ready", sources=sorted(hub.sources), worker=run_worker, database=hub.db.dialect
        )
        try:
            yield
        finally:
            for task in reversed(background):
                task.stop()
            committer.stop()
            if run_worker:
                loop.stop()

    app = FastAPI(
        title="handoff",
        version=handoff.__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.hub = hub
    app.state.processor_loop = loop
    app.state.gateway = gateway
    app.router.routes.append(Route("/hooks/{source}", gateway.receive, methods=["POST"]))
    app.include_router(api.router)
    background += parts.register_all(app, hub, run_worker=run_worker)

    @app.get("/healthz", tags=["health"], summary="The process is up")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], summary="Database reachable and schema current")
    def readyz(request: Request) -> JSONResponse:
        try:
            hub.db.ping()
            current = migrate.is_current(hub.db)
        except Exception as exc:
            return JSONResponse({"status": "unavailable", "database": type(exc).__name__}, 503)
        if not current:
            return JSONResponse({"status": "unavailable", "database": "migrations pending"}, 503)
        return JSONResponse({"status": "ready"})

    @app.get("/metrics", tags=["health"], summary="Prometheus metrics", include_in_schema=True)
    def prometheus() -> Response:
        try:
            with hub.db.read() as conn:
                metrics.PENDING.set(receipt_store.count_pending(conn))
                waiting = receipt_store.oldest_pending_at(conn)
                review = alert_store.review_facts(conn)
            now = hub.clock.now()
            metrics.RECEIPTS_OLDEST_PENDING_SECONDS.set(
                max(0.0, (now - waiting).total_seconds()) if waiting is not None else 0.0
            )
            metrics.REVIEW_OPEN.set(review.open_items)
            oldest = review.oldest_open_at
            age = (now - oldest).total_seconds() if oldest is not None else 0.0
            metrics.REVIEW_OLDEST_SECONDS.set(max(0.0, age))
        except Exception:  # metrics must answer even with the database away
            log.warning("pending gauge not refreshed")
        return Response(_exposition(), media_type=CONTENT_TYPE_LATEST)

    return app


def _exposition() -> bytes:
    """This process's metrics, or with `serve --workers N` every process's, summed.

    Behind one port a scrape reaches whichever HTTP worker accepts it, so in multi-process mode
    each process writes its samples to $PROMETHEUS_MULTIPROC_DIR and any of them can answer for
    all (prometheus_client's multiprocess mode)."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest()


def create_asgi(hub: Hub, *, run_worker: bool = True) -> ASGIApp:
    """What servers run: the FastAPI app with the webhook route dispatched ahead of it."""
    app = create_app(hub, run_worker=run_worker)
    return hooks_first(app, app.state.gateway)


SERVE_POOL_ENV = "HANDOFF_SERVE_POOL_SIZE"


def asgi_from_environment() -> ASGIApp:
    """The uvicorn factory behind `handoff serve --workers N`.

    Each HTTP worker process builds its own hub (database pool, group committer) from the same
    settings the parent resolved ($HANDOFF_CONFIG, $HANDOFF_DATABASE_URL) and serves the gateway
    and the API only; the processor and the parts' background work run once, in the separate
    worker process the parent starts, so N HTTP processes never compete for the same queue.
    """
    settings = load_settings(os.environ.get("HANDOFF_CONFIG"))
    hub = Hub.build(settings, pool_size=int(os.environ.get(SERVE_POOL_ENV, "10")))
    return create_asgi(hub, run_worker=False)
