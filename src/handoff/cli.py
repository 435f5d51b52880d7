"""The `handoff` command. Thin: parse options, call the store or a service, render.

Every listing prints a table on a terminal and JSON with --json, for scripts.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from handoff import commands, logs
from handoff.commands.common import ConfigOpt, JsonOpt, console, err
from handoff.commands.common import dump as _dump
from handoff.commands.common import ensure_schema as _ensure_schema
from handoff.commands.common import fail as _fail
from handoff.commands.common import hub as _hub
from handoff.commands.common import settings as _settings
from handoff.commands.common import table as _table
from handoff.commands.common import when as _when
from handoff.store import events as event_store
from handoff.store import migrate
from handoff.store import receipts as receipt_store
from handoff.store import tokens as token_store

app = typer.Typer(
    name="handoff",
    help="Integration foundation for omnichannel retail customer data.",
    no_args_is_help=True,
    add_completion=False,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
receipts_app = typer.Typer(help="The receive log.", no_args_is_help=True)
events_app = typer.Typer(help="Canonical events.", no_args_is_help=True)
quarantine_app = typer.Typer(help="Signed webhooks that could not be used.", no_args_is_help=True)
tokens_app = typer.Typer(help="API bearer tokens.", no_args_is_help=True)
config_app = typer.Typer(help="Configuration file.", no_args_is_help=True)
for sub, name in [
    (db_app, "db"),
    (receipts_app, "receipts"),
    (events_app, "events"),
    (quarantine_app, "quarantine"),
    (tokens_app, "tokens"),
    (config_app, "config"),
]:
    app.add_typer(sub, name=name)
commands.register_all(app)

# --- processes -------------------------------------------------------------------------------


@app.command()
def serve(
    config: ConfigOpt = None,
    host: Annotated[str | None, typer.Option(help="Bind address (default from config).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default from config, 8080).")] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=64,
            help="HTTP processes (default from config, 1). Above 1, the processor and background "
            "work run in one more process of their own.",
        ),
    ] = None,
    no_worker: Annotated[
        bool, typer.Option("--no-worker", help="Gateway and API only: no processor, no delivery.")
    ] = False,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING, ERROR.")] = "INFO",
) -> None:
    """Run the gateway, the API and (unless --no-worker) the processor and background work."""
    import uvicorn

    from handoff.web.app import create_asgi

    logs.configure(log_level.upper())
    hub = _hub(config, pool_size=10)
    _ensure_schema(hub)
    log = logs.get("handoff.serve")
    for source, env_name in hub.settings.missing_secrets():
        log.warning("source has no secret; its webhooks will get 503", source=source, env=env_name)
    server_cfg = hub.settings.config.server
    bind = {"host": host or server_cfg.host, "port": port or server_cfg.port}
    quiet = {"log_level": "warning", "access_log": False, "lifespan": "on"}
    processes = workers or server_cfg.workers
    if processes == 1:
        uvicorn.run(create_asgi(hub, run_worker=not no_worker), **bind, **quiet)  # type: ignore[arg-type]
        return
    if hub.db.is_sqlite:
        log.warning(
            "several HTTP processes on SQLite take turns at its single writer lock and answer "
            "slower than one (bench/RESULTS.md); use PostgreSQL for --workers above 1"
        )
    # One Python process is one core: beyond it, uvicorn forks HTTP workers that each build
    # their own hub from the same settings, and the processor gets a process of its own.
    settings = hub.settings
    hub.close()
    if settings.config_path is not None:
        os.environ["HANDOFF_CONFIG"] = str(settings.config_path.resolve())
    os.environ["HANDOFF_DATABASE_URL"] = settings.database_url
    metrics_dir = tempfile.mkdtemp(prefix="handoff-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir  # every process's samples, one scrape
    child = None
    if not no_worker:
        child = subprocess.Popen(
            [sys.executable, "-m", "handoff.cli", "worker", "--log-level", log_level]
        )
        log.info("worker process started", pid=child.pid)
    try:
        uvicorn.run(
            "handoff.web.app:asgi_from_environment",
            factory=True,
            workers=processes,
            **bind,  # type: ignore[arg-type]
            **quiet,  # type: ignore[arg-type]
        )
    finally:
        if child is not None:
            child.terminate()
            try:
                child.wait(15)
            except subprocess.TimeoutExpired:
                child.kill()
        shutil.rmtree(metrics_dir, ignore_errors=True)


@app.command()
def worker(
    config: ConfigOpt = None,
    once: Annotated[bool, typer.Option("--once", help="Drain what is pending, then exit.")] = False,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING, ERROR.")] = "INFO",
) -> None:
    """Run the processor and the parts' background work (delivery, alerts), without HTTP.

    Several may run against PostgreSQL at once."""
    import signal

    from handoff.pipeline.processor import ProcessorLoop
    from handoff.pipeline.stages import build_processor
    from handoff.web.parts import background_tasks

    logs.configure(log_level.upper())
    hub = _hub(config)
    _ensure_schema(hub)
    cfg = hub.settings.config.processor
    processor = build_processor(hub)
    if once:
        result = processor.drain()
        console.print(
            f"processed {result.processed}, skipped {result.skipped}, "
            f"quarantined {result.quarantined}, events {result.events}"
        )
        return
    loop = ProcessorLoop(processor, cfg.idle_poll_seconds)
    tasks = background_tasks(hub)
    signal.signal(signal.SIGTERM, lambda *_: loop.stop(0))
    for task in tasks:
        task.start()
    try:
        with contextlib.suppress(KeyboardInterrupt):
            loop.run()
    finally:
        for task in reversed(tasks):
            task.stop()
        hub.close()


# --- db --------------------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade(config: ConfigOpt = None) -> None:
    """Apply every pending migration."""
    hub = _hub(config)
    before = migrate.current_revision(hub.db)
    migrate.upgrade(hub.db)
    after = migrate.current_revision(hub.db)
    console.print(
        f"schema {before or 'empty'} → {after}" if before != after else f"schema {after} is current"
    )


@db_app.command("current")
def db_current(config: ConfigOpt = None) -> None:
    """Show the schema revision and whether it is the newest."""
    hub = _hub(config)
    current, head = migrate.current_revision(hub.db), migrate.head_revision(hub.db)
    console.print(
        f"current {current or 'empty'}, newest {head}"
        + ("" if current == head else " — run `handoff db upgrade`")
    )
    if current != head:
        raise typer.Exit(1)


# --- receipts, events --------------------------------------------------------------------------


def _parse_time(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise _fail(
            f"{option} {value!r} is not an ISO 8601 time (e.g. 2026-11-24T10:00:00Z)"
        ) from None
    if parsed.tzinfo is None:
        raise _fail(f"{option} {value!r} needs a time zone offset or Z")
    return parsed


@receipts_app.command("list")
def receipts_list(
    config: ConfigOpt = None,
    source: Annotated[str | None, typer.Option(help="Only this source.")] = None,
    status: Annotated[
        str | None, typer.Option(help="pending, processed, skipped, quarantined.")
    ] = None,
    since: Annotated[str | None, typer.Option(help="Received at or after (ISO 8601).")] = None,
    until: Annotated[str | None, typer.Option(help="Received before (ISO 8601).")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 50,
    as_json: JsonOpt = False,
) -> None:
    """The newest receipts first."""
    if status and status not in receipt_store.STATUSES:
        raise _fail(f"--status {status!r} is not one of {', '.join(receipt_store.STATUSES)}")
    hub = _hub(config)
    flt = receipt_store.ReceiptFilter(
        source, status, _parse_time(since, "--since"), _parse_time(until, "--until")
    )
    with hub.db.read() as conn:
        rows = receipt_store.list_receipts(conn, flt, limit)
    if as_json:
        _dump(
            [
                {k: v for k, v in asdict(r).items() if k not in ("body", "headers")}
                | {"size_bytes": len(r.body)}
                for r in rows
            ]
        )
        return
    console.print(
        _table(
            f"receipts ({len(rows)} shown)",
            ["id", "source", "received", "status", "events", "delivery id", "reason"],
            [
                [
                    r.id,
                    r.source,
                    _when(r.received_at),
                    r.status,
                    r.event_count,
                    r.delivery_id[:40],
                    r.status_reason or "",
                ]
                for r in rows
            ],
        )
    )


@receipts_app.command("show")
def receipts_show(receipt_id: int, config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """One receipt with its headers, raw body and the events it produced."""
    hub = _hub(config)
    with hub.db.read() as conn:
        row = receipt_store.get(conn, receipt_id)
        evts = (
            event_store.list_events(conn, event_store.EventFilter(receipt_id=receipt_id), 1000)
            if row
            else []
        )
    if row is None:
        raise _fail(f"no receipt {receipt_id}", 1)
    data = asdict(row) | {"events": [asdict(e) for e in evts]}
    if as_json:
        _dump(data)
        return
    console.print(
        _table(
            f"receipt {row.id}",
            ["field", "value"],
            [
                ["source", f"{row.source} ({row.vendor})"],
                ["delivery id", row.delivery_id],
                ["received", _when(row.received_at)],
                ["status", row.status],
                ["reason", row.status_reason or ""],
                ["processed", _when(row.processed_at)],
                ["attempts", row.attempts],
                ["size", f"{len(row.body)} bytes"],
                *[[f"header {k}", v] for k, v in sorted(row.headers.items())],
            ],
        )
    )
    console.print(
        row.body.decode("utf-8", "replace"), markup=False, highlight=False, soft_wrap=True
    )
    if evts:
        console.print(
            _table(
                "events",
                ["event id", "type", "occurred", "customer", "order"],
                [
                    [e.event_id, e.type, _when(e.occurred_at), e.customer_external_id, e.order_id]
                    for e in evts
                ],
            )
        )


@events_app.command("list")
def events_list(
    config: ConfigOpt = None,
    source: Annotated[str | None, typer.Option(help="Only this source.")] = None,
    type: Annotated[str | None, typer.Option("--type", help="e.g. order.paid")] = None,
    order: Annotated[str | None, typer.Option(help="Only this order id.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 50,
    as_json: JsonOpt = False,
) -> None:
    """Canonical events, newest first."""
    hub = _hub(config)
    with hub.db.read() as conn:
        rows = event_store.list_events(
            conn, event_store.EventFilter(source=source, type=type, order_id=order), limit
        )
    if as_json:
        _dump([asdict(r) for r in rows])
        return
    console.print(
        _table(
            f"events ({len(rows)} shown)",
            ["id", "type", "source", "occurred", "customer", "order"],
            [
                [r.id, r.type, r.source, _when(r.occurred_at), r.customer_external_id, r.order_id]
                for r in rows
            ],
        )
    )


# --- quarantine --------------------------------------------------------------------------------


@quarantine_app.command("list")
def quarantine_list(
    config: ConfigOpt = None,
    source: Annotated[str | None, typer.Option(help="Only this source.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Include resolved entries.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Open quarantine entries: what arrived signed but could not be used, and why."""
    hub = _hub(config)
    with hub.db.read() as conn:
        rows = receipt_store.list_quarantine(conn, source=source, include_resolved=all_, limit=1000)
    if as_json:
        _dump([asdict(r) for r in rows])
        return
    console.print(
        _table(
            f"quarantine ({len(rows)})",
            ["receipt", "source", "stage", "since", "reason", "resolved"],
            [
                [
                    r.receipt_id,
                    r.source,
                    r.stage,
                    _when(r.quarantined_at),
                    r.reason,
                    r.resolution or "",
                ]
                for r in rows
            ],
        )
    )


@quarantine_app.command("show")
def quarantine_show(receipt_id: int, config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """A quarantined receipt in full (same as `receipts show`)."""
    receipts_show(receipt_id, config, as_json)


@quarantine_app.command("retry")
def quarantine_retry(
    receipt_ids: Annotated[
        list[int] | None, typer.Argument(help="Receipt ids; none = all.")
    ] = None,
    config: ConfigOpt = None,
    source: Annotated[str | None, typer.Option(help="Only this source.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Send quarantined receipts back to the processor (after fixing a mapping or config)."""
    hub = _hub(config)
    with hub.db.write() as conn:
        ids = receipt_store.requeue_quarantined(
            conn, now=hub.clock.now(), receipt_ids=receipt_ids or None, source=source
        )
    if as_json:
        _dump({"requeued": ids})
        return
    console.print(
        f"requeued {len(ids)} receipt(s)" + (f": {', '.join(map(str, ids))}" if ids else "")
    )


# --- tokens --------------------------------------------------------------------------------------


@tokens_app.command("create")
def tokens_create(
    name: Annotated[str, typer.Option(help="Who or what uses it.")] = "default",
    role: Annotated[str, typer.Option(help="viewer, operator or admin.")] = "viewer",
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a bearer token for /api/*. It is printed once and stored only as a hash."""
    if role not in token_store.ROLES:
        raise _fail(f"--role {role!r} is not one of {', '.join(token_store.ROLES)}")
    hub = _hub(config)
    _ensure_schema(hub)
    with hub.db.write() as conn:
        row, token = token_store.create_token(conn, name=name, role=role, now=hub.clock.now())
    if as_json:
        _dump({"id": row.id, "name": row.name, "role": row.role, "token": token})
        return
    console.print(f"token {row.id} ({row.role}) for {row.name}:")
    console.print(token, markup=False, highlight=False)
    err.print("Store it now: it cannot be shown again.")


@tokens_app.command("list")
def tokens_list(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Tokens (prefixes only)."""
    hub = _hub(config)
    with hub.db.read() as conn:
        rows = token_store.list_tokens(conn)
    if as_json:
        _dump([asdict(r) for r in rows])
        return
    console.print(
        _table(
            "tokens",
            ["id", "name", "role", "prefix", "created", "last used", "revoked"],
            [
                [
                    r.id,
                    r.name,
                    r.role,
                    r.prefix + "…",
                    _when(r.created_at),
                    _when(r.last_used_at),
                    _when(r.revoked_at),
                ]
                for r in rows
            ],
        )
    )


@tokens_app.command("revoke")
def tokens_revoke(token_id: int, config: ConfigOpt = None) -> None:
    """Revoke a token at once."""
    hub = _hub(config)
    with hub.db.write() as conn:
        done = token_store.revoke(conn, token_id, hub.clock.now())
    if not done:
        raise _fail(f"no active token {token_id}", 1)
    console.print(f"token {token_id} revoked")


# --- config ------------------------------------------------------------------------------


@config_app.command("check")
def config_check(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Validate the file and report sources whose secret and destinations whose token is not set
    in the environment (names only, never values)."""
    from handoff.connectors.registry import build_connector
    from handoff.delivery.destinations import token_status
    from handoff.hub import source_options

    settings = _settings(config)
    missing = settings.missing_secrets()
    sources = settings.config.sources
    for name, cfg in sources.items():  # vendor options are checked by the connector itself
        try:
            build_connector(cfg.vendor, source_options(name, cfg))
        except ValueError as exc:
            raise _fail(f"{settings.config_path}: sources.{name}.options: {exc}") from None
    tokens = token_status(settings)
    destinations = settings.config.destinations
    # a destination without its token is disabled at run time (its deliveries wait)
    missing_tokens = [(d, env) for d, kind, env, ok in tokens if kind == "token" and not ok]
    if as_json:
        _dump(
            {
                "file": str(settings.config_path) if settings.config_path else None,
                "valid": True,
                "sources": {
                    n: {"vendor": s.vendor, "role": s.role, "secret_env": s.secret_env}
                    for n, s in sources.items()
                },
                "missing_secrets": [{"source": s, "env": e} for s, e in missing],
                "destinations": {
                    n: {
                        "vendor": d.vendor,
                        "role": d.role,
                        "tokens": [
                            {"env": env, "kind": kind, "present": ok}
                            for name, kind, env, ok in tokens
                            if name == n
                        ],
                    }
                    for n, d in destinations.items()
                },
                "missing_tokens": [{"destination": d, "env": e} for d, e in missing_tokens],
            }
        )
    else:
        where = settings.config_path or "built-in defaults (no file)"
        console.print(
            f"[green]valid[/]: {where}, {len(sources)} source(s), "
            f"{len(destinations)} destination(s)"
        )
        if sources:
            gone = {s for s, _ in missing}
            console.print(
                _table(
                    "sources",
                    ["name", "vendor", "role", "webhook path", "secret"],
                    [
                        [
                            n,
                            s.vendor,
                            s.role,
                            f"/hooks/{n}",
                            f"${s.secret_env} " + ("[red]missing[/]" if n in gone else "set"),
                        ]
                        for n, s in sources.items()
                    ],
                )
            )
        if destinations:
            console.print(
                _table(
                    "destinations",
                    ["name", "vendor", "role", "token", "state"],
                    [
                        [
                            name,
                            destinations[name].vendor,
                            destinations[name].role,
                            (f"${env}" if env else "(token_env not set)")
                            + (" (previous)" if kind == "previous" else ""),
                            "set" if ok else "[red]missing[/]",
                        ]
                        for name, kind, env, ok in tokens
                    ],
                )
            )
        for d, env in missing_tokens:
            console.print(
                f"[red]destination {d} will be disabled[/]: "
                + (f"${env} is not set" if env else "no token_env configured")
                + " (its deliveries wait until it is)"
            )
    if missing or missing_tokens:
        raise typer.Exit(1)


@app.command()
def demo(
    customers: Annotated[
        int, typer.Option(min=1, max=20_000, help="Customers in the story.")
    ] = 200,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same story).")] = 7,
    scenario: Annotated[
        Path | None, typer.Option(help="Scenario TOML (docs/simulator.md); --customers wins.")
    ] = None,
    concurrency: Annotated[int, typer.Option(min=1, max=64, help="Parallel senders.")] = 8,
    batch_window: Annotated[
        float, typer.Option(help="Send webhooks due within this many simulated seconds at once.")
    ] = 0.0,
    out: Annotated[Path | None, typer.Option(help="Keep ground truth and exports here.")] = None,
    keep: Annotated[bool, typer.Option("--keep", help="Leave everything running.")] = False,
) -> None:
    """handoff and a simulated retail stack on one clock: months of webhooks in about a minute."""
    from handoff.sim.demo import run_demo

    result = run_demo(
        customers=customers,
        seed=seed,
        scenario=scenario,
        concurrency=concurrency,
        batch_window=batch_window,
        keep=keep,
        out=out,
        console=console,
    )
    if not result.ok():
        raise typer.Exit(1)


@app.command()
def sim(
    customers: Annotated[int, typer.Option(min=1, max=100_000, help="Customers.")] = 300,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same bytes).")] = 7,
    scenario: Annotated[
        Path | None, typer.Option(help="Scenario TOML (docs/simulator.md).")
    ] = None,
    out: Annotated[Path, typer.Option(help="Where to write ground truth and exports.")] = Path(
        "sim-out"
    ),
    serve: Annotated[
        bool, typer.Option("--serve", help="Also run the vendor look-alike APIs until Ctrl-C.")
    ] = False,
) -> None:
    """The simulated retail stack alone: ground truth and every system's export, and the APIs."""
    import time

    from handoff.sim.clock import SimClock
    from handoff.sim.demo import scenario_config
    from handoff.sim.stack import SimStack, Simulation

    simulation = Simulation.build(scenario_config(customers, seed, scenario))
    written = simulation.write(out)
    console.print(f"wrote {len(written)} files to {out} (truth/ and exports/)")
    if not serve:
        return
    with SimStack(SimClock(simulation.scenario.end)) as stack:
        stack.load(simulation)
        console.print(_table("simulated systems", ["system", "url"], sorted(stack.urls.items())))
        console.print("Ctrl-C stops them.")
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
