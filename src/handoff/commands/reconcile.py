"""`handoff reconcile …` (offline, from exports), `reconcile apply DIR`, `trace order|customer`."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from handoff.commands.common import ConfigOpt, console, err, fail, settings

reconcile_app = typer.Typer(
    help="Cross-reference every system's export, classify each mismatch, plan the corrections.",
    invoke_without_command=True,
)
trace_app = typer.Typer(
    help="One order or customer in every system, side by side.", no_args_is_help=True
)

FileOpt = Annotated[Path | None, typer.Option(exists=False, dir_okay=False)]


def register(app: typer.Typer) -> None:
    app.add_typer(reconcile_app, name="reconcile")
    app.add_typer(trace_app, name="trace")


def _as_of(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise fail(
            f"--as-of {value!r} is not an ISO 8601 time (e.g. 2026-11-24T10:00:00Z)"
        ) from None
    if parsed.tzinfo is None:
        raise fail(f"--as-of {value!r} needs a time zone offset or Z")
    return parsed


def _files(**given: Path | None) -> dict[str, Path]:
    files = {name: path for name, path in given.items() if path is not None}
    if "orders" not in files:
        raise fail("--orders is required: the ERP's orders are what everything is judged against")
    return files


def _run(
    files: dict[str, Path],
    config: Path | None,
    as_of: str | None,
    memory_limit: str | None,
    threads: int | None,
    identity: str,
    allow_email_domain: list[str] | None,
    phone_region: str | None,
) -> Any:
    from handoff.recon.engine import Options, reconcile
    from handoff.recon.inputs import InputError
    from handoff.recon.linking import LinkOptions

    program = settings(config).config.program
    options = Options(
        as_of=_as_of(as_of),
        memory_limit=memory_limit,
        threads=threads,
        link=LinkOptions(
            mode=identity,
            phone_region=phone_region,
            allow_email_domains=tuple(allow_email_domain or ()),
        ),
    )
    try:
        return reconcile(files, program, options)
    except InputError as exc:
        for problem in exc.problems:
            err.print(f"[bold red]error:[/] {problem}", highlight=False, markup=True)
        raise typer.Exit(2) from None


def _common_options() -> None:  # documentation anchor for the shared options below
    return None


@reconcile_app.callback()
def reconcile_cmd(
    ctx: typer.Context,
    orders: Annotated[
        Path | None, typer.Option(help="ERP orders (CSV, Parquet or JSON Lines).")
    ] = None,
    refunds: Annotated[Path | None, typer.Option(help="ERP refunds and completed returns.")] = None,
    loyalty_events: Annotated[
        Path | None, typer.Option(help="The loyalty platform's activity log.")
    ] = None,
    loyalty_members: Annotated[
        Path | None, typer.Option(help="The loyalty platform's members.")
    ] = None,
    crm_contacts: Annotated[Path | None, typer.Option(help="The CRM's contacts.")] = None,
    pos_customers: Annotated[
        Path | None, typer.Option(help="POS customers (VIP flag or tags).")
    ] = None,
    helpdesk_users: Annotated[Path | None, typer.Option(help="Helpdesk users (VIP flag).")] = None,
    comms_profiles: Annotated[
        Path | None, typer.Option(help="Email/SMS profiles (VIP flag).")
    ] = None,
    config: ConfigOpt = None,
    as_of: Annotated[
        str | None,
        typer.Option(help="Judge as of this instant (default: the newest time in the files)."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Write findings, corrections, summary and report.html here.")
    ] = None,
    fmt: Annotated[
        str | None, typer.Option("--format", help="table (default on a terminal) or json.")
    ] = None,
    memory_limit: Annotated[
        str | None, typer.Option(help="DuckDB memory limit, e.g. 1GB (spills to disk beyond it).")
    ] = None,
    threads: Annotated[
        int | None, typer.Option(min=1, help="DuckDB threads (default: all cores).")
    ] = None,
    identity: Annotated[
        str, typer.Option(help="auto, engine (the identity engine) or exact (keys in SQL).")
    ] = "auto",
    allow_email_domain: Annotated[
        list[str] | None,
        typer.Option(help="A domain the placeholder guard should treat as real (repeatable)."),
    ] = None,
    phone_region: Annotated[
        str | None,
        typer.Option(help="Region of national phone numbers (default from the currency)."),
    ] = None,
    limit: Annotated[int, typer.Option(help="Worst findings shown in the table.")] = 15,
) -> None:
    """Reconcile exports (contracts/reconcile.md). Any subset of systems; absent ones are not judged."""
    if ctx.invoked_subcommand is not None:
        return
    if identity not in ("auto", "engine", "exact"):
        raise fail(f"--identity {identity!r}: allowed auto, engine, exact")
    files = _files(
        orders=orders,
        refunds=refunds,
        loyalty_events=loyalty_events,
        loyalty_members=loyalty_members,
        crm_contacts=crm_contacts,
        pos_customers=pos_customers,
        helpdesk_users=helpdesk_users,
        comms_profiles=comms_profiles,
    )
    result = _run(
        files, config, as_of, memory_limit, threads, identity, allow_email_domain, phone_region
    )
    if out is not None:
        from handoff.recon.output import write_run

        write_run(result, out)
    shown = fmt or ("table" if console.is_terminal else "json")
    if shown == "json":
        sys.stdout.write(json.dumps(result.summary, indent=2, sort_keys=True) + "\n")
    else:
        print_summary(result, limit)
        if out is not None:
            console.print(
                f"wrote {out}/findings.csv, findings.jsonl, corrections.csv, summary.json, report.html"
            )


def print_summary(result: Any, limit: int = 15) -> None:
    s = result.summary
    console.print(
        f"[bold]handoff reconcile[/] as of {s['as_of']} — {s['findings']} findings "
        f"({', '.join(s['systems_judged'])}); {s['timings']['total']:.2f} s"
    )
    t = Table(title="Findings by class and handoff", title_justify="left", header_style="bold")
    for col in ("class", "count", "handoffs", "loyalty lower", "loyalty higher"):
        t.add_column(col)
    dirs = {
        (c, d): n
        for c, d, n in result.con.execute(
            "SELECT class, direction, count(*) FROM findings GROUP BY 1, 2"
        ).fetchall()
    }
    for cls, n in s["by_class"].items():
        hs = s["by_class_and_handoff"].get(cls, {})
        t.add_row(
            cls,
            str(n),
            ", ".join(f"{h} {c}" for h, c in sorted(hs.items(), key=lambda kv: -kv[1])),
            str(dirs.get((cls, "loyalty_lower"), "")),
            str(dirs.get((cls, "loyalty_higher"), "")),
        )
    console.print(t)
    if s["flag_sync"]:
        f = Table(title="VIP flag sync", title_justify="left", header_style="bold")
        for col in ("destination", "judged", "matching", "match rate"):
            f.add_column(col)
        for name, v in s["flag_sync"].items():
            rate = f"{100 * v['match_rate']:.1f}%" if v["match_rate"] is not None else "—"
            f.add_row(name, str(v["records"]), str(v["matching"]), rate)
        console.print(f)
    li = s["liability"]
    console.print(
        f"liability: {li['expected_points']} points owed ({li['expected_value']} {li['currency']}); "
        f"the loyalty platform shows {li['reported_points']} ({li['reported_value']}); "
        f"in flight: {s['in_flight'] or 'nothing'}"
    )
    rows = result.con.execute(
        "SELECT finding_id, handoff, direction, expected, actual, detail FROM findings "
        f"ORDER BY abs(coalesce(d, 0)) DESC, class, finding_id LIMIT {int(limit)}"
    ).fetchall()
    if rows:
        w = Table(title="Worst findings", title_justify="left", header_style="bold")
        for col in ("finding", "handoff", "direction", "expected", "actual", "detail"):
            w.add_column(col, overflow="fold")
        for r in rows:
            w.add_row(*[("" if v is None else str(v)) for v in r])
        console.print(w)


@reconcile_app.command("apply")
def apply_cmd(
    run: Annotated[Path, typer.Argument(help="A directory written by `handoff reconcile --out`.")],
    yes: Annotated[bool, typer.Option("--yes", help="Send (default: dry run).")] = False,
    config: ConfigOpt = None,
) -> None:
    """Send the repair plan through the delivery outbox: dry run unless --yes; idempotent."""
    from handoff.commands.common import ensure_schema, hub
    from handoff.recon.apply import ApplyError, apply_plan

    h = hub(config)
    ensure_schema(h)
    now = h.clock.now()
    try:
        if yes:
            with h.db.write() as conn:
                result = apply_plan(conn, run, now, send=True)
        else:
            with h.db.read() as conn:
                result = apply_plan(conn, run, now, send=False)
    except ApplyError as exc:
        raise fail(str(exc)) from None
    t = Table(
        title=f"repair plan {run}" + (" (dry run)" if not yes else ""),
        title_justify="left",
        header_style="bold",
    )
    for col in ("target", "id", "action", "value", "golden customer", "status"):
        t.add_column(col, overflow="fold")
    for p in result.planned:
        r = p.row
        ident = r.get("member_id") or r.get("contact_id") or r.get("id") or ""
        value = r.get("points") if r["action"] == "adjust_points" else r.get("fields")
        status = p.skipped or (
            "no golden customer found"
            if p.customer_id is None
            else ("sent" if yes else "would send")
        )
        t.add_row(r["target"], ident, r["action"], value or "", str(p.customer_id or "—"), status)
    console.print(t)
    if yes:
        console.print(
            f"sent {result.sent} correction(s): {result.outbox_rows} outbox row(s); "
            f"recorded in {run}/applied.jsonl"
        )
    else:
        console.print("dry run: nothing sent; --yes sends")
    if result.unresolved:
        err.print(
            f"{len(result.unresolved)} correction(s) name no customer the hub knows; "
            "they were not sent"
        )


def _trace_result(
    orders: Path | None,
    refunds: Path | None,
    loyalty_events: Path | None,
    loyalty_members: Path | None,
    crm_contacts: Path | None,
    pos_customers: Path | None,
    helpdesk_users: Path | None,
    comms_profiles: Path | None,
    config: Path | None,
    as_of: str | None,
    allow_email_domain: list[str] | None,
) -> Any:
    files = _files(
        orders=orders,
        refunds=refunds,
        loyalty_events=loyalty_events,
        loyalty_members=loyalty_members,
        crm_contacts=crm_contacts,
        pos_customers=pos_customers,
        helpdesk_users=helpdesk_users,
        comms_profiles=comms_profiles,
    )
    return _run(files, config, as_of, None, None, "auto", allow_email_domain, None)


def _print_order(t: Any) -> None:
    tab = Table(
        title=f"order {t.order_id} · customer {t.customer_id} · member {t.member_id or '—'}",
        title_justify="left",
        header_style="bold",
    )
    for col in ("time", "erp / rules", "loyalty", ""):
        tab.add_column(col, overflow="fold")
    for i, row in enumerate(t.rows):
        when = row.at.strftime("%Y-%m-%d %H:%M:%S") if row.at else "—"
        left = row.what if row.system in ("erp", "rules") else ""
        right = row.what if row.system == "loyalty" else ""
        mark = (
            f"[bold red]◀ first divergence: {row.divergence}[/]" if i == t.first_divergence else ""
        )
        tab.add_row(when, left, right, mark)
    console.print(tab)
    for f in t.findings:
        console.print(
            f"  {f['finding_id']} [{f['handoff']}] expected {f['expected']}, actual {f['actual']}: {f['detail']}"
        )


@trace_app.command("order")
def trace_order_cmd(
    order_id: str,
    orders: Annotated[Path | None, typer.Option()] = None,
    refunds: Annotated[Path | None, typer.Option()] = None,
    loyalty_events: Annotated[Path | None, typer.Option()] = None,
    loyalty_members: Annotated[Path | None, typer.Option()] = None,
    crm_contacts: Annotated[Path | None, typer.Option()] = None,
    pos_customers: Annotated[Path | None, typer.Option()] = None,
    helpdesk_users: Annotated[Path | None, typer.Option()] = None,
    comms_profiles: Annotated[Path | None, typer.Option()] = None,
    config: ConfigOpt = None,
    as_of: Annotated[str | None, typer.Option()] = None,
    allow_email_domain: Annotated[list[str] | None, typer.Option()] = None,
) -> None:
    """An order in the ERP and on the loyalty platform, with the rules' expectation between."""
    from handoff.recon.trace import trace_order

    result = _trace_result(
        orders,
        refunds,
        loyalty_events,
        loyalty_members,
        crm_contacts,
        pos_customers,
        helpdesk_users,
        comms_profiles,
        config,
        as_of,
        allow_email_domain,
    )
    t = trace_order(result, order_id)
    if t is None:
        raise fail(f"no order {order_id} in {orders}", 1)
    _print_order(t)


@trace_app.command("customer")
def trace_customer_cmd(
    query: Annotated[str, typer.Argument(help="An email or any system's id.")],
    orders: Annotated[Path | None, typer.Option()] = None,
    refunds: Annotated[Path | None, typer.Option()] = None,
    loyalty_events: Annotated[Path | None, typer.Option()] = None,
    loyalty_members: Annotated[Path | None, typer.Option()] = None,
    crm_contacts: Annotated[Path | None, typer.Option()] = None,
    pos_customers: Annotated[Path | None, typer.Option()] = None,
    helpdesk_users: Annotated[Path | None, typer.Option()] = None,
    comms_profiles: Annotated[Path | None, typer.Option()] = None,
    config: ConfigOpt = None,
    as_of: Annotated[str | None, typer.Option()] = None,
    allow_email_domain: Annotated[list[str] | None, typer.Option()] = None,
) -> None:
    """A customer in every system (ERP orders, loyalty, CRM, POS tags), first divergence marked."""
    from handoff.recon.trace import trace_customer

    result = _trace_result(
        orders,
        refunds,
        loyalty_events,
        loyalty_members,
        crm_contacts,
        pos_customers,
        helpdesk_users,
        comms_profiles,
        config,
        as_of,
        allow_email_domain,
    )
    t = trace_customer(result, query)
    if t is None:
        raise fail(f"no customer matches {query!r}", 1)
    for system, recs in t.records.items():
        if not recs:
            continue
        tab = Table(title=system, title_justify="left", header_style="bold")
        for col in recs[0]:
            tab.add_column(col, overflow="fold")
        for r in recs:
            tab.add_row(*[("" if v is None else str(v)) for v in r.values()])
        console.print(tab)
    first = next((o for o in t.orders if o.first_divergence is not None), None)
    for o in t.orders:
        if o is first:
            console.print("[bold red]▼ first divergence in this order[/]")
        _print_order(o)
    for f in t.other_findings:
        console.print(
            f"  {f['finding_id']} [{f['handoff']}] expected {f['expected']}, actual {f['actual']}: {f['detail']}"
        )
