"""`handoff demo`: handoff and a simulated retail stack on one clock; months in a minute.

handoff runs on a fresh SQLite file, served over real HTTP on a loopback port; the simulated POS
(Shopify), ERP (Standard Webhooks), CRM (HubSpot) and loyalty platform (LoyaltyLion) run beside it
on their own ports and fire a seeded scenario's webhooks at it — with the field's faults injected:
dropped webhooks, outages that exhaust a vendor's retries, slow acknowledgements that cause
redeliveries, duplicates, refunds before their orders. Both sides read the same simulated clock,
so hours of vendor retry schedules pass in milliseconds while every signature stays valid.

Afterwards the demo shows what the stack sent next to what handoff recorded, and writes the
ground truth and every system's export for the later stages (identity, ledger, reconciliation).
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from handoff import logs
from handoff.config import HandoffConfig, Settings, parse_config
from handoff.hub import Hub
from handoff.sim.clock import SimClock
from handoff.sim.scenario_config import BusinessConfig, ScenarioConfig, load_scenario_config
from handoff.sim.stack import SIM_SECRETS, SIM_SOURCES, RunReport, SimStack, Simulation
from handoff.store import events as event_store
from handoff.store import migrate
from handoff.store import receipts as receipt_store
from handoff.store.db import Database
from handoff.web.server import ServerThread


@dataclass
class DemoResult:
    simulation: Simulation
    report: RunReport
    stored: Counter[tuple[str, str]] = field(default_factory=Counter)
    statuses: Counter[tuple[str, str]] = field(default_factory=Counter)
    events: list[tuple[str, str, int]] = field(default_factory=list)
    seconds: float = 0.0
    workdir: Path | None = None

    @property
    def expected(self) -> dict[tuple[str, str], int]:
        return self.report.expected_receipts()

    def missing(self) -> set[tuple[str, str]]:
        """Webhooks that reached handoff but are not in its receive log (must be empty)."""
        return set(self.expected) - set(self.stored)

    def doubled(self) -> set[tuple[str, str]]:
        """Webhooks stored more than once (must be empty)."""
        return {key for key, n in self.stored.items() if n > 1}

    def unexplained(self) -> set[tuple[str, str]]:
        """Receipts the simulator never sent (must be empty)."""
        return set(self.stored) - set(self.expected)

    def ok(self) -> bool:
        return not (
            self.missing() or self.doubled() or self.unexplained() or self.report.mismatches()
        )


def scenario_config(customers: int, seed: int, path: Path | None) -> ScenarioConfig:
    config = load_scenario_config(path) if path else ScenarioConfig()
    business = config.scenario.model_copy(update={"customers": customers, "seed": seed})
    return config.model_copy(
        update={"scenario": BusinessConfig.model_validate(business.model_dump())}
    )


def _settings(database_url: str) -> Settings:
    config: HandoffConfig = parse_config({"sources": SIM_SOURCES})
    return Settings(config=config, database_url=database_url, config_path=None)


def run_demo(
    *,
    customers: int = 200,
    seed: int = 7,
    scenario: Path | None = None,
    concurrency: int = 8,
    batch_window: float = 0.0,
    keep: bool = False,
    out: Path | None = None,
    console: Console | None = None,
) -> DemoResult:
    console = console or Console()
    logs.configure("WARNING")
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="handoff-demo-"))
    database_url = f"sqlite:///{workdir / 'handoff.db'}"
    simulation = Simulation.build(scenario_config(customers, seed, scenario))
    clock = SimClock(simulation.scenario.start)
    db = Database(database_url, pool_size=1)
    migrate.upgrade(db)
    hub = Hub.build(_settings(database_url), env=SIM_SECRETS, clock=clock)
    server = ServerThread(hub).start()
    stack = SimStack(clock).start()
    sc = simulation.scenario
    console.print(
        f"[bold]handoff demo[/] — {customers} customers, {sc.start:%Y-%m-%d} → {sc.end:%Y-%m-%d}, "
        f"seed {seed}\nhandoff on {server.url} (SQLite {workdir / 'handoff.db'}); simulated "
        f"stack: " + ", ".join(f"{name} {url}" for name, url in sorted(stack.urls.items()))
    )
    try:
        report = _play(stack, simulation, server.url, db, concurrency, batch_window, console)
        result = DemoResult(simulation, report, workdir=workdir)
        with db.read() as conn:
            rows = receipt_store.list_receipts(conn, receipt_store.ReceiptFilter(), 10_000_000)
            result.events = event_store.counts_by_type(conn)
        result.stored = Counter((r.source, r.delivery_id) for r in rows)
        result.statuses = Counter((r.source, r.status) for r in rows)
        target = out or workdir / "sim"
        simulation.write(target)
        result.seconds = time.monotonic() - started
        render(result, console)
        if keep or out is not None:
            console.print(f"Ground truth and every system's export: {target}")
        if keep:
            console.print(
                f"\n[bold]Still running.[/] API docs {server.url}/docs · metrics "
                f"{server.url}/metrics · database {database_url}\n"
                f"A token: HANDOFF_DATABASE_URL={database_url} handoff tokens create --role admin"
                "\nCtrl-C stops everything."
            )
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
        return result
    finally:
        stack.stop()
        server.stop()
        hub.close()
        db.dispose()
        if not keep and out is None:
            shutil.rmtree(workdir, ignore_errors=True)


def _play(
    stack: SimStack,
    simulation: Simulation,
    url: str,
    db: Database,
    concurrency: int,
    batch_window: float,
    console: Console,
) -> RunReport:
    """Run the scenario in a thread while the main thread draws progress from the database.

    Webhooks due within `batch_window` simulated seconds of each other are sent concurrently
    (as busy vendors do); the rest go in simulated-time order."""
    planned = len(simulation.planned.expected_receipts())
    box: dict[str, RunReport | BaseException] = {}

    def play() -> None:
        try:
            box["report"] = stack.run(
                simulation, url, concurrency=concurrency, batch_window=batch_window
            )
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    runner = threading.Thread(target=play, name="simulator", daemon=True)
    columns = (
        TextColumn("{task.description:<36}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as progress:
        received = progress.add_task("webhooks received by handoff", total=planned)
        processed = progress.add_task("processed into canonical events", total=planned)
        runner.start()
        while True:
            with db.read() as conn:
                counts = receipt_store.counts_by_source_status(conn)
            total = sum(n for _, _, n in counts)
            pending = sum(n for _, status, n in counts if status == "pending")
            progress.update(received, completed=total)
            progress.update(processed, completed=total - pending)
            if not runner.is_alive() and pending == 0:
                break
            time.sleep(0.1)
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    report = box["report"]
    assert isinstance(report, RunReport)
    return report


def render(result: DemoResult, console: Console) -> None:
    live = result.report.live
    by_system: dict[str, Counter[str]] = {}
    sends: Counter[str] = Counter()
    for record in live.records:
        by_system.setdefault(record.message.system, Counter())[record.outcome] += 1
        sends[record.message.system] += max(0, record.reached_receiver - 1)
    table = Table(
        title="What the simulated stack sent → what handoff recorded",
        title_justify="left",
        header_style="bold",
    )
    for col in (
        "source",
        "sent",
        "arrived",
        "lost",
        "resent",
        "in log",
        "once",
        "processed",
        "skipped",
        "quarant.",
    ):
        table.add_column(col, justify="left" if col == "source" else "right")
    for system in sorted(by_system):
        outcomes = by_system[system]
        expected = {k for k in result.expected if k[0] == system}
        stored = {k: n for k, n in result.stored.items() if k[0] == system}
        once = expected == set(stored) and all(n == 1 for n in stored.values())
        lost = sum(n for outcome, n in outcomes.items() if outcome != "delivered")
        table.add_row(
            system,
            str(sum(outcomes.values())),
            str(outcomes["delivered"]),
            str(lost),
            str(sends[system]),
            str(len(stored)),
            "[green]✓[/]" if once else "[red]✗[/]",
            str(result.statuses[(system, "processed")]),
            str(result.statuses[(system, "skipped")]),
            str(result.statuses[(system, "quarantined")]),
        )
    console.print(table)

    lost_table = Table(
        title="Lost before reaching handoff (the simulator's ground truth)",
        title_justify="left",
        header_style="bold",
    )
    for col in ("source", "why", "webhooks"):
        lost_table.add_column(col, justify="right" if col == "webhooks" else "left")
    for system in sorted(by_system):
        for outcome, n in sorted(by_system[system].items()):
            if outcome != "delivered":
                lost_table.add_row(system, outcome.replace("_", " "), str(n))
    console.print(lost_table)

    events = Table(title="Canonical events", title_justify="left", header_style="bold")
    for col in ("source", "type", "events"):
        events.add_column(col, justify="right" if col == "events" else "left")
    for source, type_, n in result.events:
        events.add_row(source, type_, str(n))
    console.print(events)

    labels = Counter((label.handoff, label.cls) for label in result.simulation.labels())
    faults = Table(
        title="Faults injected, by handoff (what reconciliation must find)",
        title_justify="left",
        header_style="bold",
    )
    for col in ("handoff", "class", "instances"):
        faults.add_column(col, justify="right" if col == "instances" else "left")
    for (handoff, cls), n in sorted(labels.items()):
        faults.add_row(handoff, cls, str(n))
    console.print(faults)

    verdict = "[green]every webhook that reached handoff is in its log exactly once[/]"
    if not result.ok():
        verdict = (
            f"[red]{len(result.missing())} missing, {len(result.doubled())} doubled, "
            f"{len(result.unexplained())} unexplained, "
            f"{len(result.report.mismatches())} off-plan[/]"
        )
    console.print(
        f"{sum(sum(c.values()) for c in by_system.values())} webhooks, "
        f"{sum(result.stored.values())} receipts, "
        f"{sum(n for _, _, n in result.events)} canonical events: {verdict}. "
        f"{result.seconds:.1f} s."
    )
