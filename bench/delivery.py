"""Delivery benchmark: outbox → worker processes → a loopback Standard Webhooks receiver.

Two measurements per database:

- **throughput**: N points adjustments with ~1 KB payloads (2,000 customers, so per-customer
  order does not serialise them) are enqueued, then W `handoff deliveries worker` processes
  drain them; deliveries/s = N / (last confirmation - first confirmation), from the outbox's
  own `delivered_at` timestamps. PostgreSQL with 3 workers, SQLite with 1 (the issue's set-up).
- **latency**: with the workers running, changes are enqueued at a fixed rate (default 200/s,
  in transactions of 10 every 50 ms, as the processor commits batches) for D seconds;
  end-to-end latency is confirmation - change time per delivery (p50/p99). This starts at
  the outbox, not at the CRM's webhook: identity and the ledger that turn a webhook into a
  change are other parts.

The receiver runs in its own process (it verifies every signature), so it competes for the
same cores as the workers, as a real loopback set-up would.

    .venv/bin/python bench/delivery.py                        # both databases
    .venv/bin/python bench/delivery.py --only sqlite --count 10000 --rate 200 --duration 20

PostgreSQL: --pg-url (default postgresql://postgres@127.0.0.1:5432/handoff_bench_delivery,
dropped and recreated per run).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, func, select
from sqlalchemy.engine import make_url

from handoff.clock import system_clock
from handoff.config import parse_config
from handoff.delivery.outbox import enqueue
from handoff.domain.changes import PointsAdjustment
from handoff.store import migrate
from handoff.store.db import Database, normalise_url
from handoff.store.delivery_tables import delivery_outbox

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
PAD = "x" * 900  # with the envelope, ~1 KB per request body


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_receiver(port: int) -> None:
    import uvicorn

    from handoff.sim.receiver import WebhookReceiver

    uvicorn.run(
        WebhookReceiver([SECRET]),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
    )


@contextlib.contextmanager
def receiver() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--receiver", str(port)])
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)


def fresh_database(url: str) -> Database:
    if url.startswith("sqlite"):
        path = Path(make_url(url).database or "")
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
    else:
        parsed = make_url(normalise_url(url))
        admin = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)')
            conn.exec_driver_sql(f'CREATE DATABASE "{parsed.database}"')
        admin.dispose()
    db = Database(url, pool_size=2)
    migrate.upgrade(db)
    return db


def config_file(folder: Path, url: str, concurrency: int) -> Path:
    path = folder / "handoff.toml"
    path.write_text(
        f"[delivery]\nbatch_size = 200\nlease_seconds = 30\nidle_poll_seconds = 0.02\n"
        f"concurrency = {concurrency}\n"
        f'[destinations.hook]\nvendor = "webhook"\nrole = "comms"\nbase_url = "{url}"\n'
        'token_env = "HOOK_SECRET"\n'
    )
    return path


def adjustments(start: int, n: int) -> list[PointsAdjustment]:
    now = system_clock.now()
    return [
        PointsAdjustment(1 + i % 2000, 1, PAD, f"b{start + i}", "bench", now)
        for i in range(start, start + n)
    ]


@contextlib.contextmanager
def workers(count: int, env: dict[str, str]) -> Iterator[None]:
    procs = [
        subprocess.Popen([sys.executable, "-m", "handoff.cli", "deliveries", "worker"], env=env)
        for _ in range(count)
    ]
    try:
        yield
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()


def wait_delivered(db: Database, total: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with db.read() as conn:
            done = conn.execute(
                select(func.count()).where(delivery_outbox.c.status == "delivered")
            ).scalar_one()
        if done >= total:
            return
        time.sleep(0.5)
    raise SystemExit(f"only {done} of {total} delivered after {timeout:.0f} s")


def times(db: Database) -> list[tuple[datetime, datetime]]:
    with db.read() as conn:
        rows = conn.execute(
            select(delivery_outbox.c.change_at, delivery_outbox.c.delivered_at).where(
                delivery_outbox.c.status == "delivered"
            )
        ).all()
    return [(r.change_at, r.delivered_at) for r in rows]


def run(label: str, url: str, n_workers: int, args: argparse.Namespace) -> dict[str, Any]:
    db = fresh_database(url)
    with tempfile.TemporaryDirectory() as tmp, receiver() as hook_url:
        config = config_file(Path(tmp), hook_url, args.concurrency)
        from handoff.delivery.outbox import use_destinations

        use_destinations(
            db.url,
            parse_config(
                {
                    "destinations": {
                        "hook": {
                            "vendor": "webhook",
                            "role": "comms",
                            "base_url": hook_url,
                            "token_env": "HOOK_SECRET",
                        }
                    }
                }
            ).destinations,
        )
        for start in range(0, args.count, 1000):
            with db.write() as conn:
                enqueue(conn, adjustments(start, min(1000, args.count - start)), system_clock.now())
        env = os.environ | {
            "HOOK_SECRET": SECRET,
            "HANDOFF_CONFIG": str(config),
            "HANDOFF_DATABASE_URL": url,
        }
        with workers(n_workers, env):
            wait_delivered(db, args.count, timeout=600)
            done = sorted(d for _, d in times(db))
            span = (done[-1] - done[0]).total_seconds()
            throughput = (len(done) - 1) / span if span > 0 else float("inf")
            # latency at a fixed rate, workers warm
            before = len(done)
            # the processor commits in batches: 10 changes every 50 ms is 200/s
            sent, per_tick = 0, max(1, round(args.rate / 20))
            t0 = time.monotonic()
            while time.monotonic() - t0 < args.duration:
                due = t0 + sent / args.rate
                pause = due - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                with db.write() as conn:
                    enqueue(conn, adjustments(10_000_000 + sent, per_tick), system_clock.now())
                sent += per_tick
            wait_delivered(db, before + sent, timeout=120)
            achieved = sent / (time.monotonic() - t0)
            latest = sorted((d - c).total_seconds() for c, d in times(db) if c >= done[-1])
    db.dispose()
    p50 = statistics.median(latest)
    p99 = latest[min(len(latest) - 1, int(len(latest) * 0.99))]
    return {
        "label": label,
        "workers": n_workers,
        "deliveries": args.count,
        "per_second": round(throughput),
        "rate": round(achieved),
        "latency_n": len(latest),
        "p50_ms": round(p50 * 1000, 1),
        "p99_ms": round(p99 * 1000, 1),
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--receiver", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--only", choices=["sqlite", "postgresql"])
    parser.add_argument("--count", type=int, default=20_000, help="deliveries for throughput")
    parser.add_argument("--rate", type=float, default=200, help="changes/s for the latency run")
    parser.add_argument("--duration", type=float, default=20, help="seconds of the latency run")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight/worker")
    parser.add_argument(
        "--pg-url", default="postgresql://postgres@127.0.0.1:5432/handoff_bench_delivery"
    )
    parser.add_argument("--pg-workers", type=int, default=3)
    parser.add_argument("--sqlite-workers", type=int, default=1)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.receiver:
        serve_receiver(args.receiver)
        return 0
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.only in (None, "sqlite"):
            url = f"sqlite:///{tmp}/bench.db"
            results.append(run("SQLite", url, args.sqlite_workers, args))
        if args.only in (None, "postgresql"):
            results.append(run("PostgreSQL", args.pg_url, args.pg_workers, args))
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"\ndelivery bench, {stamp}, {os.cpu_count()} cores")
    print("| database | workers | deliveries | deliveries/s | offered/s | p50 ms | p99 ms |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['label']} | {r['workers']} | {r['deliveries']:,} | {r['per_second']:,} | "
            f"{r['rate']} | {r['p50_ms']} | {r['p99_ms']} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
