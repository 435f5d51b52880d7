"""`handoff ledger …`: rebuild and time travel, a customer's statement, the liability report."""

from __future__ import annotations

import csv
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

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
from handoff.delivery.outbox import enqueue
from handoff.domain.ledger import LiabilityReport, Program
from handoff.domain.money import from_minor
from handoff.hub import Hub
from handoff.pipeline.ledger_stage import changes_from_history, recompute
from handoff.store import ledger as store
from handoff.store import ledger_rebuild as rb

ledger_app = typer.Typer(help="The expected loyalty ledger.", no_args_is_help=True)

AsOfOpt = Annotated[
    str | None,
    typer.Option("--as-of", help="As of this instant (ISO 8601 with offset; default: now)."),
]
CsvOpt = Annotated[Path | None, typer.Option("--csv", help="Also write the rows to this CSV.")]


def register(app: typer.Typer) -> None:
    """Add this part's commands to `app`."""
    app.add_typer(ledger_app, name="ledger")


def _as_of(value: str | None, the_hub: Hub) -> datetime:
    if value is None:
        return the_hub.clock.now()
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise fail(
            f"--as-of {value!r} is not an ISO 8601 time (e.g. 2026-11-24T10:00:00Z)"
        ) from None
    if parsed.tzinfo is None:
        raise fail(f"--as-of {value!r} needs a time zone offset or Z")
    return parsed


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )


def _open(config: Path | None) -> tuple[Hub, Program]:
    the_hub = hub(config)
    ensure_schema(the_hub)
    return the_hub, the_hub.settings.config.program


def _money(minor: int, program: Program) -> str:
    return from_minor(minor, program.currency)


@ledger_app.command("rebuild")
def rebuild_cmd(
    config: ConfigOpt = None,
    as_of: AsOfOpt = None,
    from_events: Annotated[
        bool,
        typer.Option(
            "--from-events",
            help="First re-derive every customer's entries from its canonical events "
            "(slower: the engine runs per customer).",
        ),
    ] = False,
    out: CsvOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Recompute every projection from the entries (set-based, in the database).

    Without --as-of the stored projections are rewritten as of now; tier or VIP values that
    change are recorded in the tier history and queued for delivery. With --as-of nothing is
    written: the projections are computed as of that instant and summarised (or written to
    --csv)."""
    the_hub, program = _open(config)
    now = the_hub.clock.now()
    moment = _as_of(as_of, the_hub)
    try:
        python_fold = program.tier_downgrade != "immediate"
        if as_of is None and (from_events or python_fold):
            _rederive(the_hub, program, now)
        if as_of is None:
            cause = f"ledger rebuild {now.isoformat()}"
            with console.status("rebuilding projections"), the_hub.db.write() as conn:
                if python_fold:
                    summary = rb.stored_summary(conn, now)
                else:
                    summary = rb.rebuild_projections(conn, program, now=now, cause=cause)
                    changes = changes_from_history(rb.history_by_cause(conn, cause))
                    enqueue(conn, changes, now, destinations=the_hub.settings.config.destinations)
            rows: list[dict[str, Any]] = []
            if out is not None:
                with the_hub.db.read() as conn:
                    rows = rb.projection_rows(conn, program, None)
        else:
            with the_hub.db.read() as conn:
                if python_fold:
                    raise fail(
                        f"--as-of with tier_downgrade = {program.tier_downgrade!r} is not "
                        "set-based; use `handoff ledger show CUSTOMER --as-of` per customer"
                    )
                subquery = rb.projections_as_of(conn, program, moment)
                summary = rb.summarise(conn, subquery, moment, 0)
                rows = rb.projection_rows(conn, program, moment) if out is not None else []
    finally:
        the_hub.close()
    if out is not None:
        _write_csv(out, rows)
    if as_json:
        dump(asdict(summary))
        return
    console.print(
        table(
            f"ledger as of {when(summary.as_of)}",
            ["customers", "entries", "balance", "pending", "VIP", "tier/VIP changes"],
            [
                [
                    summary.customers,
                    summary.entries,
                    summary.balance,
                    summary.pending,
                    summary.vip,
                    summary.changes,
                ]
            ],
        )
    )
    console.print(table("customers by tier", ["tier", "customers"], sorted(summary.tiers.items())))


def _rederive(the_hub: Hub, program: Program, now: datetime) -> None:
    """Every customer's entries again from its events, one write transaction per chunk."""
    with the_hub.db.read() as conn:
        ids = store.all_customer_ids(conn)
    with _progress() as progress:
        task = progress.add_task("re-deriving entries", total=len(ids))
        for start in range(0, len(ids), store.CHUNK):
            part = ids[start : start + store.CHUNK]
            with the_hub.db.write() as conn:
                changes = recompute(conn, program, part, now, "ledger rebuild --from-events")
                enqueue(conn, changes, now, destinations=the_hub.settings.config.destinations)
            progress.advance(task, len(part))


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else ["customer_id"])
        writer.writeheader()
        writer.writerows(rows)


@ledger_app.command("show")
def show_cmd(
    customer: Annotated[int, typer.Argument(help="The golden customer id.")],
    config: ConfigOpt = None,
    as_of: AsOfOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """A customer's entries, each with the rule that produced it, and the balance."""
    the_hub, program = _open(config)
    try:
        moment = _as_of(as_of, the_hub)
        with the_hub.db.read() as conn:
            view = store.customer_view(conn, program, customer, moment)
    finally:
        the_hub.close()
    if view is None:
        raise fail(f"customer {customer} has nothing in the ledger", code=1)
    if as_json:
        dump(store.view_json(view, program))
        return
    p = view.projection
    console.print(
        table(
            f"customer {customer} as of {when(moment)}",
            ["entry", "when", "kind", "points", "pending", "balance", "spend", "rule"],
            [
                [
                    line.entry.entry_id,
                    when(line.entry.effective_at),
                    line.entry.kind.value,
                    f"{line.entry.points}{'p' if line.entry.pending else ''}",
                    line.pending,
                    line.balance,
                    _money(line.lifetime_spend, program),
                    line.entry.rule,
                ]
                for line in view.lines
            ],
        )
    )
    console.print(
        table(
            "expected state",
            ["balance", "pending", "lifetime spend", "tier", "VIP", "platform recorded", "held"],
            [
                [
                    p.balance,
                    p.pending,
                    _money(p.lifetime_spend, program),
                    f"{p.tier or '—'} ({p.tier_reason})",
                    f"{p.vip} ({p.vip_reason})",
                    f"{p.recorded_points}"
                    + ("" if p.recorded_balance is None else f" (balance {p.recorded_balance})"),
                    p.held,
                ]
            ],
        )
    )
    for held in view.held:
        console.print(f"held: {held['type']} {held['order_id'] or ''} — {held['reason']}")


@ledger_app.command("liability")
def liability_cmd(
    config: ConfigOpt = None,
    as_of: AsOfOpt = None,
    out: CsvOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Outstanding points (vested and pending), their value, breakage and balances by age."""
    the_hub, program = _open(config)
    try:
        moment = _as_of(as_of, the_hub)
        with the_hub.db.read() as conn:
            total = store.customer_count(conn)
            with _progress() as progress:
                task = progress.add_task("customers", total=total)
                report = store.liability(
                    conn, program, moment, progress=lambda n: progress.advance(task, n)
                )
    finally:
        the_hub.close()
    rows = liability_rows(report, program)
    if out is not None:
        _write_csv(out, rows)
    if as_json:
        dump(asdict(report))
        return
    console.print(
        table(f"loyalty liability as of {when(moment)}", ["measure", "value"], _pairs(rows))
    )


def liability_rows(report: LiabilityReport, program: Program) -> list[dict[str, Any]]:
    """The report as (measure, points, value) rows: the CSV finance imports."""
    money = program.currency

    def row(measure: str, points: int | None, value: int | None) -> dict[str, Any]:
        return {
            "measure": measure,
            "points": "" if points is None else points,
            "value": "" if value is None else from_minor(value, money),
            "currency": money,
        }

    rows = [
        row("customers", report.customers, None),
        row("outstanding (vested)", report.outstanding_points, report.outstanding_value),
        row("pending (return window)", report.pending_points, report.pending_value),
        row("negative balances", report.negative_points, None),
        row(
            f"breakage ({report.breakage_rate_bp / 100:.2f}%, {report.breakage_source})",
            report.breakage_points,
            report.breakage_value,
        ),
        row("net liability", None, report.net_liability),
        row("redeemed (history)", report.redeemed_points, None),
        row("expired (history)", report.expired_points, None),
    ]
    rows += [row(f"age {bucket.label}", bucket.points, None) for bucket in report.by_age]
    return rows


def _pairs(rows: list[dict[str, Any]]) -> list[list[str]]:
    out = []
    for r in rows:
        parts = [str(r["points"])] if r["points"] != "" else []
        if r["value"]:
            parts.append(f"{r['value']} {r['currency']}")
        out.append([r["measure"], " / ".join(parts)])
    return out
