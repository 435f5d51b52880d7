"""`handoff deliveries …`: list, show, replay (with a dry-run count), worker, destinations."""

from __future__ import annotations

import signal
import threading
from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any

import typer

from handoff.commands.common import (
    ConfigOpt,
    JsonOpt,
    console,
    dump,
    ensure_schema,
    fail,
    hub,
    table,
    when,
)
from handoff.delivery import breaker
from handoff.delivery.worker import DeliveryLoop, Worker
from handoff.store import outbox as store

deliveries_app = typer.Typer(
    help="Outbound deliveries: the outbox and its DLQ.", no_args_is_help=True
)

DestOpt = Annotated[str | None, typer.Option("--destination", "-d", help="Only this destination.")]
CustomerOpt = Annotated[
    int | None, typer.Option("--customer", help="Only this golden customer id.")
]
StatusOpt = Annotated[
    list[str] | None,
    typer.Option("--status", "-s", help="pending, inflight, delivered, dead, superseded (repeat)."),
]
SinceOpt = Annotated[str | None, typer.Option("--since", help="Created at or after (ISO 8601).")]
UntilOpt = Annotated[str | None, typer.Option("--until", help="Created before (ISO 8601).")]


def register(app: typer.Typer) -> None:
    """Add this part's commands to `app`."""
    app.add_typer(deliveries_app, name="deliveries")


def _time(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise fail(f"{name} {value!r} is not ISO 8601 (e.g. 2026-11-24T10:00:00Z)") from None
    if parsed.tzinfo is None:
        raise fail(f"{name} {value!r} needs a time zone offset or Z")
    return parsed


def _filter(
    destination: str | None,
    customer: int | None,
    status: list[str] | None,
    since: str | None,
    until: str | None,
) -> store.DeliveryFilter:
    bad = sorted(set(status or ()) - set(store.STATUSES))
    if bad:
        raise fail(f"unknown status {bad}; use {list(store.STATUSES)}")
    return store.DeliveryFilter(
        destination, customer, tuple(status or ()), _time(since, "--since"), _time(until, "--until")
    )


@deliveries_app.command("list")
def list_cmd(
    config: ConfigOpt = None,
    destination: DestOpt = None,
    customer: CustomerOpt = None,
    status: StatusOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000)] = 50,
    as_json: JsonOpt = False,
) -> None:
    """Deliveries, newest first (the DLQ: --status dead)."""
    the_hub = hub(config)
    ensure_schema(the_hub)
    flt = _filter(destination, customer, status, since, until)
    with the_hub.db.read() as conn:
        rows = store.list_rows(conn, flt, limit)
        total = store.count(conn, flt)
    if as_json:
        dump({"total": total, "items": [asdict(r) for r in rows]})
        return
    console.print(
        table(
            f"{len(rows)} of {total} deliveries",
            [
                "id",
                "destination",
                "kind",
                "customer",
                "field",
                "v",
                "status",
                "tries",
                "next",
                "error",
            ],
            [
                (
                    r.id,
                    r.destination,
                    r.kind,
                    r.customer_id,
                    r.field,
                    r.version,
                    r.status,
                    r.attempts,
                    when(r.next_attempt_at) if r.status == "pending" else "—",
                    (r.last_error or "")[:60],
                )
                for r in rows
            ],
        )
    )


@deliveries_app.command("show")
def show_cmd(delivery_id: int, config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """One delivery and every attempt made."""
    the_hub = hub(config)
    ensure_schema(the_hub)
    with the_hub.db.read() as conn:
        row = store.get(conn, delivery_id)
        attempts = store.attempts_of(conn, delivery_id) if row else []
    if row is None:
        raise fail(f"no delivery {delivery_id}", 1)
    if as_json:
        dump(asdict(row) | {"attempts_made": attempts})
        return
    for key, value in asdict(row).items():
        console.print(f"[bold]{key}[/]: {value}", highlight=False)
    console.print(
        table(
            "attempts",
            ["#", "at", "outcome", "status", "ms", "error"],
            [
                (
                    a["attempt"],
                    when(a["at"]),
                    a["outcome"],
                    a["status_code"] or "—",
                    f"{a['latency_ms']:.1f}" if a["latency_ms"] is not None else "—",
                    (a["error"] or "")[:80],
                )
                for a in attempts
            ],
        )
    )


@deliveries_app.command("replay")
def replay_cmd(
    config: ConfigOpt = None,
    destination: DestOpt = None,
    customer: CustomerOpt = None,
    status: StatusOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only count what would be replayed.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Send finished deliveries again (default: the dead ones), keeping their idempotency keys.
    No limit on age or number."""
    the_hub = hub(config)
    ensure_schema(the_hub)
    flt = _filter(destination, customer, status, since, until)
    bad = sorted(set(flt.statuses) - set(store.REPLAYABLE))
    if bad:
        raise fail(f"cannot replay {bad}: only {list(store.REPLAYABLE)}")
    if dry_run:
        with the_hub.db.read() as conn:
            n = store.replay_count(conn, flt)
        result: dict[str, Any] = {"matched": n, "replayed": 0, "dry_run": True}
    else:
        with the_hub.db.write() as conn:
            n = store.replay(conn, flt, the_hub.clock.now())
        result = {"matched": n, "replayed": n, "dry_run": False}
    if as_json:
        dump(result)
    elif dry_run:
        console.print(f"{n} deliveries would be replayed")
    else:
        console.print(f"{n} deliveries queued again")


@deliveries_app.command("destinations")
def destinations_cmd(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Queue depth, DLQ depth and breaker state per destination."""
    the_hub = hub(config)
    ensure_schema(the_hub)
    with the_hub.db.read() as conn:
        rows = store.overview(conn)
    if as_json:
        dump(
            [
                asdict(s)
                | {"breaker": breaker.shown(state), "disabled": breaker.disabled_reason(state)}
                for s, state in rows
            ]
        )
        return
    console.print(
        table(
            "destinations",
            [
                "destination",
                "pending",
                "inflight",
                "delivered",
                "dead",
                "oldest pending",
                "breaker",
            ],
            [
                (
                    s.destination,
                    s.by_status.get("pending", 0),
                    s.by_status.get("inflight", 0),
                    s.by_status.get("delivered", 0),
                    s.by_status.get("dead", 0),
                    when(s.oldest_pending),
                    breaker.shown(state),
                )
                for s, state in rows
            ],
        )
    )
    for s, state in rows:
        reason = breaker.disabled_reason(state)
        if reason:
            console.print(f"[red]disabled[/] {s.destination}: {reason}")


@deliveries_app.command("worker")
def worker_cmd(
    config: ConfigOpt = None,
    once: Annotated[
        bool, typer.Option("--once", help="Deliver what is due now, then exit.")
    ] = False,
) -> None:
    """Run a delivery worker (start as many as you like on PostgreSQL)."""
    the_hub = hub(config, pool_size=4)
    ensure_schema(the_hub)
    worker = Worker(the_hub)  # a destination that cannot run is disabled, not fatal
    for name, reason in worker.disabled.items():
        console.print(f"[red]disabled[/] {name}: {reason}; its deliveries wait", markup=True)
    if once:
        r = worker.drain()
        worker.close()
        console.print(
            f"delivered {r.delivered}, retrying {r.failed}, dead {r.dead}, waiting {r.waited}"
        )
        return
    loop = DeliveryLoop(worker, the_hub.settings.config.delivery.idle_poll_seconds)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    loop.start()
    stop.wait()
    loop.stop()
    the_hub.close()
