"""Delivery benchmark: outbox → worker processes → a loopback Standard Webhooks receiver.

Three measurements per database:

- **throughput**: N points adjustments with ~1 KB payloads (2,000 customers, so per-customer
  order does not serialise them) are enqueued, then W `handoff deliveries worker` processes
  drain them; deliveries/s = N / (last confirmation - first confirmation), from the outbox's
  own `delivered_at` timestamps. PostgreSQL with 3 workers, SQLite with 1 (the issue's set-up).
- **latency**: with the workers running, changes are enqueued at a fixed rate (default 200/s,
  in transactions of 10 every 50 ms, as the processor commits batches) for D seconds;
  outbox → confirmation latency per delivery (p50/p99).
- **end to end** (the issue's measure): `handoff serve` (gateway, processor and one delivery
  worker, plus W - 1 `deliveries worker` processes) receives signed HubSpot
  `contact.propertyChange` webhooks (vip_status → true) over HTTP on loopback at the same rate
  for D seconds; the VIP flag fans out to three destinations (POS, helpdesk, email: the
  receiver); latency = the last destination's confirmation (`delivered_at`) - the moment the
  webhook was posted. The customers exist beforehand (`crm` identities), as when a CRM user
  flags a known customer; `--new-contacts` sends unknown contacts instead.

The receiver runs in its own process (it verifies every signature), so it competes for the
same cores as the workers, as a real loopback set-up would.

    .venv/bin/python bench/delivery.py                        # both databases
    .venv/bin/python bench/delivery.py --only sqlite --count 10000 --rate 200 --duration 20
    .venv/bin/python bench/delivery.py --only postgresql --no-e2e      # throughput only

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

import orjson
import urllib3
from sqlalchemy import create_engine, func, select
from sqlalchemy.engine import make_url

from handoff.clock import system_clock
from handoff.config import parse_config
from handoff.connectors.hubspot import sign_v3
from handoff.delivery.outbox import enqueue
from handoff.domain.changes import PointsAdjustment
from handoff.store import migrate
from handoff.store.db import Database, normalise_url
from handoff.store.delivery_tables import delivery_outbox
from handoff.store.identity import add_identity, new_customer
from handoff.store.identity_tables import identities

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
CRM_SECRET = "bench-hubspot-client-secret"
FANOUT = ("pos", "helpdesk", "email")  # the CRM→POS/helpdesk/email fan-out of the VIP flag
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
    load = os.getloadavg()
    e2e = run_e2e(url, n_workers, args) if args.e2e else None
    return {
        "load": load,
        "e2e": e2e,
        "e2e_load": os.getloadavg(),
        "label": label,
        "workers": n_workers,
        "deliveries": args.count,
        "per_second": round(throughput),
        "rate": round(achieved),
        "latency_n": len(latest),
        "p50_ms": round(p50 * 1000, 1),
        "p99_ms": round(p99 * 1000, 1),
    }


# --- end to end: the CRM's webhook → gateway → processor → outbox → every destination ---------


def e2e_config(folder: Path, hook_url: str, concurrency: int) -> Path:
    """A hub with the CRM (HubSpot) as a source and the VIP flag fanned out to three loopback
    Standard Webhooks destinations (the receiver), as the POS, the helpdesk and email."""
    path = folder / "e2e.toml"
    lines = [
        "[delivery]",
        "batch_size = 200",
        "lease_seconds = 30",
        "idle_poll_seconds = 0.02",
        f"concurrency = {concurrency}",
        "[sources.crm]",
        'vendor = "hubspot"',
        'role = "crm"',
        'secret_env = "CRM_SECRET"',
    ]
    for name in FANOUT:
        lines += [
            f"[destinations.{name}]",
            'vendor = "webhook"',
            'role = "comms"',
            f'base_url = "{hook_url}"',
            'token_env = "HOOK_SECRET"',
            f"[destinations.{name}.fields]",
            'is_vip = "is_vip"',
        ]
    path.write_text("\n".join(lines) + "\n")
    return path


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"handoff serve exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.1)
    raise SystemExit("handoff serve did not open its port")


class CrmSender:
    """The CRM: HubSpot `contact.propertyChange` webhooks (vip_status → true), each for a new
    contact, signed with HubSpot's v3 scheme, posted at a fixed rate from several threads."""

    def __init__(self, base: str) -> None:
        self.url = f"{base}/hooks/crm"
        self.http = urllib3.PoolManager(maxsize=32, retries=False)
        self.sent: dict[str, datetime] = {}
        self.failed = 0

    def post(self, object_id: int) -> None:
        now_ms = int(time.time() * 1000)
        body = orjson.dumps(
            [
                {
                    "eventId": object_id,
                    "subscriptionId": 7,
                    "portalId": 12345678,
                    "appId": 987654,
                    "occurredAt": now_ms,
                    "subscriptionType": "contact.propertyChange",
                    "attemptNumber": 0,
                    "objectId": object_id,
                    "propertyName": "vip_status",
                    "propertyValue": "true",
                    "changeSource": "CRM_UI",
                    "sourceId": "userId:45678",
                }
            ]
        )
        headers = sign_v3(CRM_SECRET.encode(), "POST", self.url, body, now_ms)
        headers["content-type"] = "application/json"
        start = datetime.now(UTC)
        r = self.http.request("POST", self.url, body=body, headers=headers)
        if r.status == 200:
            self.sent[str(object_id)] = start
        else:
            self.failed += 1

    def run(self, first: int, rate: float, duration: float, threads: int = 64) -> float:
        """Post at `rate`/s for `duration` s (each thread its share, on its own schedule);
        returns the rate achieved."""
        import threading

        per_thread = rate / threads
        t0 = time.monotonic()
        counts = [0] * threads

        def loop(k: int) -> None:
            n = 0
            while True:
                due = t0 + (n + k / threads) / per_thread
                if due - t0 >= duration:
                    break
                pause = due - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                self.post(first + n * threads + k)
                n += 1
            counts[k] = n

        pool = [threading.Thread(target=loop, args=(k,)) for k in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        return sum(counts) / (time.monotonic() - t0)


def e2e_latencies(db: Database, sent: dict[str, datetime]) -> list[float]:
    """Per webhook: the last of the three destinations' confirmations minus the moment the
    CRM's webhook was posted (seconds). The contact's HubSpot id is the `crm` identity."""
    o, i = delivery_outbox, identities
    stmt = (
        select(i.c.external_id, func.max(o.c.delivered_at), func.count())
        .join(i, (i.c.customer_id == o.c.customer_id) & (i.c.system == "crm"))
        .where(o.c.status == "delivered", o.c.field == "is_vip")
        .where(i.c.external_id.in_(list(sent)))
        .group_by(i.c.external_id)
    )
    with db.read() as conn:
        rows = conn.execute(stmt).all()
    return sorted((last - sent[ext]).total_seconds() for ext, last, n in rows if n >= len(FANOUT))


def wait_e2e(db: Database, sent: dict[str, datetime], timeout: float) -> list[float]:
    deadline = time.monotonic() + timeout
    done: list[float] = []
    while time.monotonic() < deadline:
        done = e2e_latencies(db, sent)
        if len(done) >= len(sent):
            return done
        time.sleep(0.5)
    raise SystemExit(f"only {len(done)} of {len(sent)} webhooks confirmed everywhere")


def known_customers(db: Database, first: int, n: int) -> None:
    """Golden customers with their HubSpot contact ids (`crm` identities), as identity leaves
    them once the contacts have been seen: the VIP changes are then for known customers."""
    now = system_clock.now()
    with db.write() as conn:
        for k in range(n):
            customer = new_customer(conn, {}, {}, now)
            add_identity(conn, "crm", str(first + k), customer, now)


def run_e2e(url: str, n_workers: int, args: argparse.Namespace) -> dict[str, Any]:
    """`handoff serve` (gateway, processor and one delivery worker) plus n_workers - 1 more
    `deliveries worker` processes; the CRM posts VIP changes at args.rate for args.duration."""
    db = fresh_database(url)
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp, receiver() as hook_url:
        config = e2e_config(Path(tmp), hook_url, args.concurrency)
        env = os.environ | {
            "HOOK_SECRET": SECRET,
            "CRM_SECRET": CRM_SECRET,
            "HANDOFF_CONFIG": str(config),
            "HANDOFF_DATABASE_URL": url,
        }
        serve = subprocess.Popen(
            [sys.executable, "-m", "handoff.cli", "serve", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=Path(args.serve_log).open("ab") if args.serve_log else subprocess.DEVNULL,  # noqa: SIM115
        )
        try:
            wait_port(port, serve)
            first = 1_000_000
            if not args.new_contacts:  # the customers exist: the CRM flags known contacts
                known_customers(db, first, int(args.rate * args.duration) + 64)
            with workers(n_workers - 1, env):
                crm = CrmSender(f"http://127.0.0.1:{port}")
                crm.run(1, 20, 1.0)  # warm every stage up (new contacts)
                wait_e2e(db, dict(crm.sent), 60)
                warm = dict(crm.sent)
                crm.sent.clear()
                achieved = crm.run(first, args.rate, args.duration)
                latencies = wait_e2e(db, dict(crm.sent), 180)
        finally:
            serve.send_signal(signal.SIGTERM)
            try:
                serve.wait(15)
            except subprocess.TimeoutExpired:
                serve.kill()
    db.dispose()
    return {
        "warm": len(warm),
        "webhooks": len(latencies),
        "failed": crm.failed,
        "rate": round(achieved),
        "p50_ms": round(statistics.median(latencies) * 1000, 1),
        "p99_ms": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000, 1),
        "max_ms": round(latencies[-1] * 1000, 1),
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
    parser.add_argument(
        "--new-contacts",
        action="store_true",
        help="end to end: every webhook is an unknown contact (identity creates the customer)",
    )
    parser.add_argument("--serve-log", help="append handoff serve's log to this file")
    parser.add_argument(
        "--no-e2e",
        dest="e2e",
        action="store_false",
        help="skip the end-to-end run (CRM webhook → every destination confirmed)",
    )
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
    print(
        "| database | workers | deliveries | deliveries/s | load (1/5/15 min) "
        "| outbox→confirmed at /s | p50 ms | p99 ms |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        load = "/".join(f"{x:.1f}" for x in r["load"])
        print(
            f"| {r['label']} | {r['workers']} | {r['deliveries']:,} | {r['per_second']:,} | "
            f"{load} | {r['rate']} | {r['p50_ms']} | {r['p99_ms']} |"
        )
    if any(r["e2e"] for r in results):
        print(
            "\nend to end: CRM webhook posted → last of 3 destinations confirmed "
            f"({' / '.join(FANOUT)})"
        )
        print(
            "| database | delivery workers | webhooks/s | webhooks | rejected | p50 ms | p99 ms "
            "| max ms | load (1/5/15 min) |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        for r in results:
            e = r["e2e"]
            if e:
                load = "/".join(f"{x:.1f}" for x in r["e2e_load"])
                print(
                    f"| {r['label']} | {r['workers']} | {e['rate']} | {e['webhooks']:,} | "
                    f"{e['failed']} | {e['p50_ms']} | {e['p99_ms']} | {e['max_ms']} | {load} |"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
