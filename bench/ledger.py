"""Ledger benchmark: the set-based rebuild and live application through the processor.

    .venv/bin/python bench/ledger.py                       # 10M entries / 1M customers, both DBs
    .venv/bin/python bench/ledger.py --entries 1000000 --customers 100000 --skip-sqlite
    .venv/bin/python bench/ledger.py --skip-rebuild --live-events 20000

Rebuild: a scratch database (a new SQLite file; `handoff_bench_ledger` dropped and recreated on
--pg-url) is migrated and filled set-based with N entries spread over M customers (8 in 10 earns,
2 in 10 reversals, over two years) and one input row per entry, then ANALYZEd. Timed:
`store.ledger.rebuild_projections` (every projection recomputed from the entries in the database,
tier/VIP history written for changes) and the `--as-of` time-travel summary a year back.

Live: E signed-off ERP `order.paid`/`order.refunded` webhooks (the connector fixture, varied) for
E/10 customers are put in the receive log; the processor drains them with the configured batch
size through a stand-in identity stage (customer id from the ERP id) and LedgerStage. Timed, in
one run, for each batch size: the drain without the ledger stage, with the ledger stage
re-deriving every touched customer (`LedgerStage(append=False)`, the behaviour before the append
path) and with the append path (the default), so the ledger's own cost and the gain show side by
side. events/s = order events applied / seconds.

The machine is shared: the figures say what they were measured on, not what the code can do alone.
Every row carries the load averages (1, 5, 15 min) read just before and after it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import Connection, text
from sqlalchemy.engine import make_url

from handoff.config import Settings, parse_config
from handoff.domain.ledger import Program
from handoff.hub import Hub
from handoff.pipeline.ledger_stage import LedgerStage
from handoff.pipeline.processor import Processor, Stage, StageBatch
from handoff.store import ledger as ls
from handoff.store import ledger_rebuild as rb
from handoff.store import migrate
from handoff.store import receipts as rs
from handoff.store.db import Database

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/handoff_bench_ledger"
NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)
FIXTURE = Path(__file__).parents[1] / "tests" / "connectors" / "fixtures" / "erp"
TWO_YEARS = 690 * 86400  # up to a few days before NOW
START_EPOCH = int(datetime(2025, 1, 1, tzinfo=UTC).timestamp())

# Set-based generation: one INSERT … SELECT per table; the dialects differ only in the row source
# and the time arithmetic.
_ENTRY_COLUMNS = (
    "customer_id, entry_id, kind, points, pending, spend, tier_points, effective_at, "
    "qualifies_at, rule, event_id, order_id, written_at"
)
_EARN = "(n % 10) < 8"


def _entries_select(when: str, false: str, written: str) -> str:
    points = f"CASE WHEN {_EARN} THEN (n % 300) + 1 ELSE -((n % 50) + 1) END"
    return (
        f"SELECT (n / 10) % :customers + 1, "
        f"CASE WHEN {_EARN} THEN 'earn:' ELSE 'reverse:' END || n, "
        f"CASE WHEN {_EARN} THEN 'earn' ELSE 'reverse' END, "
        f"{points}, {false}, ({points}) * 100, {points}, {when}, {when}, "
        f"'earn on order.paid of O' || n || ': basis net merchandise x 1 point(s) per 1.00', "
        f"'e' || n, 'O' || n, {written}"
    )


def _inputs_select(when: str) -> str:
    return f"SELECT 'e' || n, (n / 10) % :customers + 1, 'order.paid', {when}, 'O' || n"


PG_WHEN = f"to_timestamp({START_EPOCH} + (n * 7919) % {TWO_YEARS})"
SQLITE_WHEN = (
    f"strftime('%Y-%m-%d %H:%M:%S.000000', {START_EPOCH} + (n * 7919) % {TWO_YEARS}, 'unixepoch')"
)


def generate(conn: Connection, entries: int, customers: int) -> None:
    params = {"entries": entries, "customers": customers}
    if conn.dialect.name == "postgresql":
        rows = "FROM generate_series(0::bigint, :entries - 1) AS g(n)"
        conn.execute(
            text(
                f"INSERT INTO ledger_entries ({_ENTRY_COLUMNS}) "
                f"{_entries_select(PG_WHEN, 'false', 'now()')} {rows}"
            ),
            params,
        )
        conn.execute(
            text(
                "INSERT INTO ledger_inputs (event_id, customer_id, type, occurred_at, order_id) "
                f"{_inputs_select(PG_WHEN)} {rows}"
            ),
            params,
        )
        return
    series = "WITH RECURSIVE s(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM s WHERE n < :last) "
    params["last"] = entries - 1
    written = "strftime('%Y-%m-%d %H:%M:%S.000000', 'now')"
    conn.execute(
        text(
            f"INSERT INTO ledger_entries ({_ENTRY_COLUMNS}) {series}"
            f"{_entries_select(SQLITE_WHEN, '0', written)} FROM s"
        ),
        params,
    )
    conn.execute(
        text(
            "INSERT INTO ledger_inputs (event_id, customer_id, type, occurred_at, order_id) "
            f"{series}{_inputs_select(SQLITE_WHEN)} FROM s"
        ),
        params,
    )


def recreate_pg(pg_url: str) -> None:
    url = make_url(pg_url)
    name = url.database or ""
    if not re.fullmatch(r"[A-Za-z0-9_]+", name) or name == "postgres":
        raise SystemExit(f"--pg-url must name a scratch database: {pg_url}")
    admin = url.set(drivername="postgresql", database="postgres")
    with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]
        conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]


def drop_pg(pg_url: str) -> None:
    url = make_url(pg_url)
    admin = url.set(drivername="postgresql", database="postgres")
    with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')  # type: ignore[arg-type]


def fresh(backend: str, pg_url: str, workdir: Path) -> str:
    if backend == "postgresql":
        recreate_pg(pg_url)
        url = pg_url
    else:
        path = workdir / "ledger.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        url = f"sqlite:///{path}"
    db = Database(url, pool_size=2)
    migrate.upgrade(db)
    db.dispose()
    return url


def cpu() -> float:
    times = os.times()
    return times.user + times.system


def generated(url: str) -> int:
    """Entries already in a kept database (0 if none)."""
    db = Database(url, pool_size=1)
    try:
        with db.read() as conn:
            return ls.count_entries(conn)
    except Exception:
        return 0
    finally:
        db.dispose()


def bench_rebuild(url: str, entries: int, customers: int, *, reuse: bool) -> dict[str, Any]:
    db = Database(url, pool_size=2)
    program = Program()
    try:
        results: dict[str, Any] = {}
        if not reuse:
            started = time.perf_counter()
            with db.write() as conn:
                generate(conn, entries, customers)
            with db.engine.connect() as conn:
                conn.execute(text("ANALYZE"))
                conn.commit()
            seconds = time.perf_counter() - started
            print(f"  generated {entries:,} entries in {seconds:.1f} s", file=sys.stderr)
            results["generate_s"] = round(seconds, 1)
        for run in ("first", "again"):
            started, cpu0 = time.perf_counter(), cpu()
            with db.write() as conn:
                summary = rb.rebuild_projections(conn, program, now=NOW, cause=f"bench {run}")
            seconds = time.perf_counter() - started
            results[f"rebuild_{run}_s"] = round(seconds, 1)
            results[f"rebuild_{run}_client_cpu_s"] = round(cpu() - cpu0, 1)
            print(
                f"  rebuild ({run}): {seconds:.1f} s, {summary.customers:,} customers",
                file=sys.stderr,
            )
            if summary.customers != customers or summary.entries != entries:
                raise SystemExit(
                    f"rebuild saw {summary.customers} customers, {summary.entries} entries"
                )
            results["tiers"] = summary.tiers
            results["changes_" + run] = summary.changes
        started = time.perf_counter()
        with db.read() as conn:
            past = rb.summarise(
                conn,
                rb.projections_as_of(conn, program, NOW - timedelta(days=365)),
                NOW,
                0,
            )
        results["as_of_s"] = round(time.perf_counter() - started, 1)
        results["as_of_customers"] = past.customers
        return results
    finally:
        db.dispose()


class ByErpId:
    """Stand-in identity for the bench: the golden customer is the ERP id's number."""

    def handle(self, conn: Connection, batch: StageBatch) -> None:
        for event in batch.events:
            ref = event.customer
            if ref is not None and ref.external_id:
                batch.customers[event.event_id] = int(ref.external_id.removeprefix("C-"))


def _body(name: str, **data: Any) -> bytes:
    body = json.loads((FIXTURE / f"{name}.json").read_text())
    body["data"].update(data)
    return json.dumps(body).encode()


def live_receipts(events: int, run: str, first: int) -> list[rs.NewReceipt]:
    """ERP webhooks for events/10 new customers (ids from `first`), in time order: each customer's
    10 events are 8 paid orders and 2 partial refunds (its 4th and 8th event refund the order
    just before)."""
    customers = max(events // 10, 1)
    out = []
    for n in range(events):
        customer = first + n % customers
        refund = (n // customers) % 10 in (3, 7)
        order = f"{run}-SO-{n - customers if refund else n}"
        when = (NOW - timedelta(days=400) + timedelta(minutes=n)).isoformat()
        if refund:
            body = _body(
                "order_refunded",
                order_id=order,
                refund_id=f"{run}-RF-{n}",
                amount="5.00",
                customer={"id": f"C-{customer}"},
                refunded_at=when,
            )
        else:
            body = _body(
                "order_paid",
                order_id=order,
                customer={"id": f"C-{customer}"},
                subtotal=f"{50 + n % 400}.00",
                paid_at=when,
            )
        out.append(
            rs.NewReceipt(
                "erp", "standard", f"{run}-{n}", NOW, {"webhook-id": f"{run}-{n}"}, body, "0" * 64
            )
        )
    return out


class Timed:
    """Wraps a stage and adds up the seconds spent inside it: wall clock, and the CPU time of the
    thread running it (the worker's own work, on SQLite the database's too; on a loaded machine
    it moves much less than the wall clock, which mostly measures waiting for a core)."""

    def __init__(self, stage: Stage) -> None:
        self.stage = stage
        self.seconds = 0.0
        self.cpu_seconds = 0.0

    def handle(self, conn: Connection, batch: StageBatch) -> None:
        started, cpu0 = time.perf_counter(), time.thread_time()
        self.stage.handle(conn, batch)
        self.seconds += time.perf_counter() - started
        self.cpu_seconds += time.thread_time() - cpu0


def projections(hub: Hub, customers: range) -> list[Any]:
    """Each customer's stored state, in customer order (ids themselves left out)."""
    with hub.db.read() as conn:
        rows = conn.execute(
            text(
                "SELECT balance, pending, lifetime_spend, tier, is_vip FROM ledger_projections "
                "WHERE customer_id BETWEEN :a AND :b ORDER BY customer_id"
            ),
            {"a": customers.start, "b": customers.stop - 1},
        )
        return [tuple(r) for r in rows]


def bench_live(url: str, events: int, batch_sizes: list[int]) -> dict[str, Any]:
    config = parse_config(
        {
            "sources": {"erp": {"vendor": "standard", "role": "erp", "secret_env": "BENCH_ERP"}},
            "program": {"trigger": "paid"},
        }
    )
    hub = Hub.build(Settings(config=config, database_url=url, config_path=None), env={})
    results: dict[str, Any] = {"events": events}
    try:
        first = 1
        for size in batch_sizes:
            outcome: dict[str, list[Any]] = {}
            for label in ("without_ledger", "ledger_rederive", "ledger_append"):
                run = f"{label}-{size}"
                stage = LedgerStage.from_hub(hub)
                stage.append = label == "ledger_append"
                ledger = Timed(stage)
                with_ledger = label != "without_ledger"
                stages: list[Stage] = [ByErpId()] + ([ledger] if with_ledger else [])
                with hub.db.write() as conn:
                    rs.insert_batch(conn, live_receipts(events, run, first), NOW)
                customers = range(first, first + max(events // 10, 1))
                first += events
                processor = Processor(hub, stages=stages, batch_size=size)
                load_before = os.getloadavg()
                started, cpu0 = time.perf_counter(), cpu()
                result = processor.drain()
                seconds = time.perf_counter() - started
                assert result.events == events and result.quarantined == 0, result
                row: dict[str, Any] = {
                    "seconds": round(seconds, 2),
                    "events_per_s": round(events / seconds),
                    "client_cpu_s": round(cpu() - cpu0, 1),
                    "load_before": [round(x, 2) for x in load_before],
                    "load_after": [round(x, 2) for x in os.getloadavg()],
                }
                if with_ledger:
                    with hub.db.read() as conn:  # every refund found its order
                        held = conn.execute(text("SELECT count(*) FROM ledger_held")).scalar()
                    assert held == 0, f"{held} events still held"
                    row["ledger_stage_s"] = round(ledger.seconds, 2)
                    row["ledger_stage_events_per_s"] = round(events / ledger.seconds)
                    row["ledger_stage_cpu_s"] = round(ledger.cpu_seconds, 2)
                    row["ledger_stage_cpu_us_per_event"] = round(ledger.cpu_seconds / events * 1e6)
                    row["customers_appended"] = stage.tally["appended"]
                    row["customers_rederived"] = stage.tally["rederived"]
                    outcome[label] = projections(hub, customers)
                results[run] = row
                print(f"  live {run}: {row}", file=sys.stderr)
            # the same webhooks (other customer ids) give the same state either way
            assert outcome["ledger_append"] == outcome["ledger_rederive"], "append != re-derive"
            results[f"append_equals_rederive-{size}"] = True
        with hub.db.read() as conn:
            results["entries_written"] = ls.count_entries(conn)
    finally:
        hub.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--entries", type=int, default=10_000_000)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--live-events", type=int, default=20_000)
    parser.add_argument(
        "--batch-sizes", default="100,500", help="processor batch sizes, comma-separated"
    )
    parser.add_argument(
        "--pg-url", default=os.environ.get("HANDOFF_BENCH_LEDGER_PG_URL", DEFAULT_PG_URL)
    )
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument("--skip-pg", action="store_true")
    parser.add_argument("--skip-rebuild", action="store_true")
    parser.add_argument("--skip-live", action="store_true")
    parser.add_argument("--json-out", type=Path)
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the generated databases (PostgreSQL: --pg-url; SQLite: $TMPDIR/"
        "handoff-ledger-bench) and reuse them when they hold --entries entries",
    )
    args = parser.parse_args()
    backends = [
        b for b, skip in (("postgresql", args.skip_pg), ("sqlite", args.skip_sqlite)) if not skip
    ]
    report: dict[str, Any] = {
        "entries": args.entries,
        "customers": args.customers,
        "cores": os.cpu_count(),
    }
    keep_dir = Path(tempfile.gettempdir()) / "handoff-ledger-bench"
    keep_dir.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ledger-bench-") as tmp:
        for backend in backends:
            print(f"{backend}:", file=sys.stderr)
            row: dict[str, Any] = {}
            workdir = keep_dir if args.keep else Path(tmp)
            try:
                if not args.skip_rebuild:
                    kept = pg_kept = args.pg_url if backend == "postgresql" else None
                    kept = pg_kept or f"sqlite:///{workdir / 'ledger.db'}"
                    reuse = args.keep and generated(kept) == args.entries
                    url = kept if reuse else fresh(backend, args.pg_url, workdir)
                    row["rebuild"] = bench_rebuild(url, args.entries, args.customers, reuse=reuse)
                if not args.skip_live:
                    sizes = [int(b) for b in args.batch_sizes.split(",")]
                    url = fresh(backend, args.pg_url + "_live", Path(tmp))
                    try:
                        row["live"] = bench_live(url, args.live_events, sizes)
                    finally:
                        if backend == "postgresql":
                            drop_pg(args.pg_url + "_live")
            finally:
                if backend == "postgresql" and not args.keep:
                    drop_pg(args.pg_url)
            report[backend] = row
    text_out = json.dumps(report, indent=2)
    print(text_out)
    if args.json_out:
        args.json_out.write_text(text_out + "\n")


if __name__ == "__main__":
    main()
