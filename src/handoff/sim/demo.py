"""`handoff demo`: a live `handoff serve` on a fresh SQLite file, fed signed webhooks over HTTP.

Everything is real: a separate server process on a loopback port, the vendors' signature
schemes, the durable receive log and the processor. The demo then shows what it sent next to
what handoff recorded, so a newcomer can see every webhook accounted for.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from handoff.sim.samples import DEMO_SECRETS, DEMO_SOURCES, Sample, build_samples
from handoff.store import events as event_store
from handoff.store import receipts as receipt_store
from handoff.store.db import Database


@dataclass
class Outcome:
    sample: Sample
    status: int
    answer: str  # stored | duplicate | quarantined | rejected | error
    detail: str = ""


@dataclass
class DemoResult:
    outcomes: list[Outcome] = field(default_factory=list)
    seconds: float = 0.0
    database_url: str = ""
    base_url: str = ""
    workdir: Path | None = None

    def mismatches(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.answer != o.sample.expect]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _write_config(path: Path, port: int) -> None:
    lines = [
        "[server]",
        'host = "127.0.0.1"',
        f"port = {port}",
        "",
        "[processor]",
        "idle_poll_seconds = 0.05",
        "",
    ]
    for name, cfg in DEMO_SOURCES.items():
        lines.append(f"[sources.{name}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in cfg.items()]
        lines.append("")
    path.write_text("\n".join(lines))


class DemoServer:
    def __init__(self, workdir: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = workdir / "handoff.toml"
        self.database_url = f"sqlite:///{workdir / 'handoff.db'}"
        self.log = workdir / "server.log"
        _write_config(self.config, self.port)
        self.env = os.environ | DEMO_SECRETS | {"HANDOFF_DATABASE_URL": self.database_url}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "handoff.cli", "serve", "--config", str(self.config)],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"handoff serve exited; see {self.log}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"handoff serve did not become ready; see {self.log}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()


async def _post_all(url: str, samples: list[Sample], progress: Progress) -> list[Outcome]:
    task = progress.add_task("posting signed webhooks", total=len(samples))
    outcomes: list[Outcome | None] = [None] * len(samples)
    semaphore = asyncio.Semaphore(16)

    async def post(i: int, sample: Sample, client: httpx.AsyncClient) -> None:
        async with semaphore:
            response = await client.post(
                f"{url}/hooks/{sample.source}", content=sample.body, headers=sample.headers
            )
        data = response.json()
        if response.status_code == 200:
            answer = data["status"]
        elif response.status_code == 401:
            answer = "rejected"
        else:
            answer = "error"
        outcomes[i] = Outcome(sample, response.status_code, answer, data.get("detail", ""))
        progress.advance(task)

    async with httpx.AsyncClient(timeout=30) as client:
        # the vendor retry must come after its original: post in two waves
        first = [(i, s) for i, s in enumerate(samples) if s.expect != "duplicate"]
        await asyncio.gather(*(post(i, s, client) for i, s in first))
        await asyncio.gather(
            *(post(i, s, client) for i, s in enumerate(samples) if s.expect == "duplicate")
        )
    return [o for o in outcomes if o is not None]


def _wait_processed(db: Database, progress: Progress, total: int) -> None:
    task = progress.add_task("processing into canonical events", total=total)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with db.read() as conn:
            pending = receipt_store.count_pending(conn)
        progress.update(task, completed=total - pending)
        if pending == 0:
            return
        time.sleep(0.1)
    raise RuntimeError("the processor did not catch up within 2 minutes")


def run_demo(
    *, customers: int = 40, seed: int = 7, keep: bool = False, console: Console | None = None
) -> DemoResult:
    console = console or Console()
    workdir = Path(tempfile.mkdtemp(prefix="handoff-demo-"))
    server = DemoServer(workdir)
    result = DemoResult(database_url=server.database_url, base_url=server.url, workdir=workdir)
    started = time.monotonic()
    console.print(
        f"[bold]handoff demo[/] — a live server on {server.url}, SQLite at {workdir / 'handoff.db'}"
    )
    server.start()
    try:
        samples = build_samples(server.url, customers=customers, seed=seed)
        columns = (
            TextColumn("{task.description:<34}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        db = Database(server.database_url, pool_size=1)
        try:
            with Progress(*columns, console=console, transient=False) as progress:
                result.outcomes = asyncio.run(_post_all(server.url, samples, progress))
                with db.read() as conn:
                    stored = sum(n for _, _, n in receipt_store.counts_by_source_status(conn))
                _wait_processed(db, progress, stored)
            result.seconds = time.monotonic() - started
            render(result, db, console)
        finally:
            db.dispose()
        if keep:
            pid = server.proc.pid if server.proc else "?"
            console.print(
                f"\n[bold]Still running[/] (pid {pid})"
                f": API docs {server.url}/docs · metrics {server.url}/metrics · "
                f"config {server.config}\nCreate a token with: HANDOFF_DATABASE_URL="
                f"{server.database_url} handoff tokens create --role admin"
            )
            server.proc = None  # leave it running
    finally:
        server.stop()
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return result


def render(result: DemoResult, db: Database, console: Console) -> None:
    sent = Counter(o.sample.source for o in result.outcomes)
    answers: dict[str, Counter[str]] = {}
    for o in result.outcomes:
        answers.setdefault(o.sample.source, Counter())[o.answer] += 1
    with db.read() as conn:
        by_status: dict[str, Counter[str]] = {}
        for source, status, n in receipt_store.counts_by_source_status(conn):
            by_status.setdefault(source, Counter())[status] += n
        by_type = event_store.counts_by_type(conn)
        quarantined = receipt_store.list_quarantine(conn, limit=20)

    table = Table(
        title="Sent by the simulated stack → recorded by handoff",
        title_justify="left",
        header_style="bold",
    )
    for col in (
        "source",
        "vendor",
        "sent",
        "2xx",
        "401",
        "dup",
        "in log",
        "processed",
        "skipped",
        "quarantined",
    ):
        table.add_column(col, justify="left" if col in ("source", "vendor") else "right")
    for source in DEMO_SOURCES:
        a, s = answers.get(source, Counter()), by_status.get(source, Counter())
        table.add_row(
            source,
            DEMO_SOURCES[source]["vendor"],
            str(sent[source]),
            str(a["stored"] + a["duplicate"] + a["quarantined"]),
            str(a["rejected"]),
            str(a["duplicate"]),
            str(sum(s.values())),
            str(s["processed"]),
            str(s["skipped"]),
            str(s["quarantined"]),
        )
    console.print(table)

    events = Table(title="Canonical events", title_justify="left", header_style="bold")
    for col in ("source", "type", "events"):
        events.add_column(col, justify="right" if col == "events" else "left")
    for source, type_, n in by_type:
        events.add_row(source, type_, str(n))
    console.print(events)

    faults = Table(
        title="Faults injected → what handoff did", title_justify="left", header_style="bold"
    )
    for col in ("fault", "source", "expected", "handoff answered", "detail"):
        faults.add_column(col)
    for o in result.outcomes:
        if o.sample.expect != "stored" or o.answer != "stored":
            ok = "[green]✓[/]" if o.answer == o.sample.expect else "[red]✗[/]"
            faults.add_row(
                o.sample.label,
                o.sample.source,
                o.sample.expect,
                f"{ok} {o.status} {o.answer}",
                o.detail[:70],
            )
    console.print(faults)
    if quarantined:
        console.print(
            f"{len(quarantined)} receipt(s) in quarantine — "
            "`handoff quarantine list` shows them; `handoff quarantine retry` replays."
        )
    total_sent = len(result.outcomes)
    in_log = sum(sum(c.values()) for c in by_status.values())
    console.print(
        f"\n{total_sent} webhooks sent, {in_log} stored once each "
        f"({sum(1 for o in result.outcomes if o.answer == 'duplicate')} duplicate, "
        f"{sum(1 for o in result.outcomes if o.answer == 'rejected')} rejected), "
        f"{sum(n for _, _, n in by_type)} canonical events, "
        f"{len(result.mismatches())} surprises, in {result.seconds:.1f} s."
    )
