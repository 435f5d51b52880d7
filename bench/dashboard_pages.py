"""Dashboard pages benchmark: server-side time of the customer 360, search and review pages.

    .venv/bin/python bench/dashboard_pages.py                      # 1M customers, 10M events
    .venv/bin/python bench/dashboard_pages.py --customers 100000 --events 1000000

A scratch PostgreSQL database (`handoff_bench_dashboard`, dropped and recreated) is migrated
and filled set-based: C customers each with an ERP id, a profile, a `new` decision, a ledger
projection, one earn entry, one platform-recorded event and two outbox rows (VIP flag and
profile to one destination); E events spread over the customers; C/10 merges and C/50 open
review items. Then ANALYZE. Each page is fetched through the real app (FastAPI TestClient,
signed in as an operator) `--repeat` times for `--sample` different customers; the figure is
the median and the 95th percentile of the server-side time (the `X-Render-Ms` header the
benchmark's middleware adds around the route; the client's own overhead is not counted).

The machine is shared: every figure is printed with the load averages read before and after.
"""

# ruff: noqa: S608 — the SQL is built from the integers given on the command line

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

FIRST = ("Ana", "Bo", "Cy", "Di", "Ed", "Flo", "Gus", "Hal")
PG = os.environ.get(
    "HANDOFF_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/handoff_bench_dashboard"
)


def load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def fresh_database(url: str) -> None:
    u = make_url(url)
    admin = create_engine(u.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{u.database}" WITH (FORCE)')
        conn.exec_driver_sql(f'CREATE DATABASE "{u.database}"')
    admin.dispose()


def fill(url: str, customers: int, events: int) -> None:
    from handoff.store import migrate
    from handoff.store.db import Database

    db = Database(url, pool_size=1)
    migrate.upgrade(db)
    db.dispose()
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    c, e = customers, events
    steps = [
        (
            "customers",
            f"""INSERT INTO customers (id, merged_into, email, phone, first_name, last_name, zip,
                sources, version, created_at, updated_at)
            SELECT g, NULL, 'c' || g || '@bench.example.org', '+1555' || lpad(g::text, 7, '0'),
                   (ARRAY['Ana','Bo','Cy','Di','Ed','Flo','Gus','Hal'])[1 + g % 8],
                   'Name' || (g % 50000), lpad((g % 99999)::text, 5, '0'),
                   '{{"email": "erp"}}'::json, 1, now(), now()
            FROM generate_series(1, {c}) g""",
        ),
        (
            "identities",
            f"""INSERT INTO identities (system, external_id, customer_id, first_seen_at)
            SELECT 'erp', 'C-' || g, g, now() FROM generate_series(1, {c}) g""",
        ),
        (
            "profiles",
            f"""INSERT INTO identity_profiles (record_id, customer_id, system, external_id,
                profile, seen_at)
            SELECT 'rec-' || g, g, 'erp', 'C-' || g,
                   json_build_object('email', 'c' || g || '@bench.example.org'), now()
            FROM generate_series(1, {c}) g""",
        ),
        (
            "decisions",
            f"""INSERT INTO identity_decisions (at, actor, kind, rule, record_id, customer_id)
            SELECT now(), 'pipeline', 'new', 'no_candidates', 'rec-' || g, g
            FROM generate_series(1, {c}) g""",
        ),
        (
            "merges (every 10th customer absorbs the next)",
            f"""WITH m AS (SELECT g AS survivor, g + 1 AS absorbed
                           FROM generate_series(1, {c} - 1, 10) g)
            INSERT INTO identity_decisions (at, actor, kind, rule, score, record_id,
                customer_id, evidence)
            SELECT now(), 'pipeline', 'merge', 'exact_email', 0.99, 'rec-' || absorbed,
                   survivor, json_build_object('record_b', 'rec-' || survivor)
            FROM m""",
        ),
        (
            "merged_into",
            f"""UPDATE customers SET merged_into = id - 1
            WHERE id % 10 = 2 AND id <= {c}""",
        ),
        (
            "review",
            f"""INSERT INTO identity_review (record_id, customer_id, candidate_customer_id,
                candidate_record_id, score, rule, reason, evidence, status, created_at)
            SELECT 'rec-' || (g + 3), g + 3, g + 4, 'rec-' || (g + 4), 0.8, 'probabilistic',
                   'between the thresholds', '{{"evidence": []}}'::json,
                   CASE WHEN g % 250 = 0 THEN 'open' ELSE 'merged' END, now()
            FROM generate_series(1, {c} - 10, 5) g""",
        ),
        (
            "receipt",
            """INSERT INTO receipts (id, source, vendor, delivery_id, received_at, headers, body,
                body_sha256, status, attempts, event_count)
            VALUES (1, 'erp', 'standard', 'bench', now(), '{}', '\\x7b7d', repeat('0', 64),
                    'processed', 1, 0)""",
        ),
        (
            "events",
            f"""INSERT INTO events (event_id, receipt_id, source, source_event_id, type,
                occurred_at, received_at, processed_at, customer_system, customer_external_id,
                order_id, customer, body, customer_id)
            SELECT 'evt_' || g, 1, 'erp', 'order.paid:SO-' || g, 'order.paid',
                   now() - (g % 1000) * interval '1 hour', now(), now(), 'erp',
                   'C-' || (1 + g % {c}), 'SO-' || g,
                   '{{"system": "erp"}}'::json, '{{"subtotal": 1000}}'::json, 1 + g % {c}
            FROM generate_series(1, {e}) g""",
        ),
        (
            "ledger",
            f"""INSERT INTO ledger_entries (customer_id, entry_id, kind, points, pending, spend,
                tier_points, effective_at, qualifies_at, rule, event_id, order_id, written_at)
            SELECT g, 'earn:evt_' || g, 'earn', 100, false, 10000, 100, now() - interval '1 day',
                   now() - interval '1 day', 'bench', 'evt_' || g, 'SO-' || g, now()
            FROM generate_series(1, {c}) g""",
        ),
        (
            "projections",
            f"""INSERT INTO ledger_projections (customer_id, balance, pending, lifetime_spend,
                tier_spend, tier_points, tier, is_vip, manual_vip, recorded_points,
                recorded_balance, held, version, as_of, next_change_at, inputs_digest, updated_at)
            SELECT g, 100, 0, 10000, 10000, 100, 'Bronze', false, NULL, 90, 90, 0, 1, now(),
                   NULL, NULL, now()
            FROM generate_series(1, {c}) g""",
        ),
        (
            "recorded",
            f"""INSERT INTO ledger_recorded (event_id, customer_id, source, member_id, delta,
                balance, pending, reason, order_ref, occurred_at)
            SELECT 'lr_' || g, g, 'loyalty', 'M-' || g, 90, 90, 0, 'purchase', 'SO-' || g, now()
            FROM generate_series(1, {c}) g""",
        ),
        (
            "outbox",
            f"""INSERT INTO delivery_outbox (destination, kind, customer_id, field, version,
                payload, idem_key, status, attempts, throttled, next_attempt_at, cause,
                change_at, created_at, updated_at, delivered_at)
            SELECT 'pos-out', k.kind, g, k.field, 1, k.payload, k.kind || ':' || g, 'delivered',
                   0, 0, now(), 'bench', now(), now(), now(), now()
            FROM generate_series(1, {c}) g,
                 (VALUES ('attribute', 'is_vip', '{{"value": false}}'::json),
                         ('profile', 'profile', '{{"fields": {{}}}}'::json))
                     AS k(kind, field, payload)""",
        ),
    ]
    with engine.begin() as conn:
        for name, sql in steps:
            t = time.perf_counter()
            conn.execute(text(sql))
            print(f"  filled {name} in {time.perf_counter() - t:.1f} s", flush=True)
        for seq_table in ("customers", "identity_decisions", "identity_review"):
            conn.execute(
                text(
                    f"SELECT setval(pg_get_serial_sequence('{seq_table}', 'id'), "
                    f"(SELECT max(id) FROM {seq_table}))"
                )
            )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("ANALYZE"))
    engine.dispose()


def measure(url: str, customers: int, sample: int, repeat: int) -> list[tuple[str, float, float]]:
    from fastapi.testclient import TestClient
    from starlette.requests import Request

    from handoff.config import Settings, parse_config
    from handoff.hub import Hub
    from handoff.store import users as user_store
    from handoff.web.app import create_app
    from handoff.web.session import hash_password

    config = parse_config(
        {
            "destinations": {
                "pos-out": {"vendor": "webhook", "role": "pos", "base_url": "http://127.0.0.1:9"}
            }
        }
    )
    hub = Hub.build(Settings(config=config, database_url=url, config_path=None), env={})
    try:
        with hub.db.write() as conn:
            user_store.create_user(
                conn,
                username="bench",
                password_hash=hash_password("bench password"),
                role="operator",
                now=hub.clock.now(),
            )
    except ValueError:
        pass  # --reuse: the user from an earlier run
    app = create_app(hub, run_worker=False)

    @app.middleware("http")
    async def timing(request: Request, call_next: Any) -> Any:
        start = time.perf_counter()
        response = await call_next(request)
        response.headers["X-Render-Ms"] = f"{(time.perf_counter() - start) * 1000:.3f}"
        return response

    rng = random.Random(7)
    ids = [rng.randrange(1, customers) for _ in range(sample)]
    ids = [i if i % 10 != 2 else i - 1 for i in ids]  # survivors (absorbed ones redirect)
    with hub.db.read() as conn:
        open_items = [
            int(r[0])
            for r in conn.execute(
                text("SELECT id FROM identity_review WHERE status = 'open' ORDER BY id LIMIT :n"),
                {"n": sample},
            )
        ]
        newest_event = {
            i: int(
                conn.execute(
                    text("SELECT max(id) FROM events WHERE customer_id = :c"), {"c": i}
                ).scalar_one()
                or 0
            )
            for i in ids
        }
    pages: dict[str, list[str]] = {
        "customer 360": [f"/customers/{i}" for i in ids],
        "timeline, older page": [f"/customers/{i}/timeline?before={newest_event[i]}" for i in ids],
        "search by email": [f"/customers?q=c{i}@bench.example.org" for i in ids],
        "search by phone": [f"/customers?q=%2B1555{i:07d}" for i in ids],
        "search by system id": [f"/customers?q=C-{i}" for i in ids],
        "search by first and last name": [
            f"/customers?q={FIRST[i % 8]}+Name{i % 50000}" for i in ids
        ],
        "overview (the chain, 24 h)": ["/"] * sample,
        "events, newest": ["/events"] * sample,
        "events by customer id": [f"/events?customer=C-{1 + i}" for i in ids],
        "events by order": [f"/events?order_id=SO-{i * 7 + 3}" for i in ids],
        "events by source and type": ["/events?source=erp&type=order.paid"] * sample,
        "quarantine": ["/quarantine"] * sample,
        "deliveries": ["/deliveries"] * sample,
        "alerts": ["/alerts"] * sample,
        "review queue": ["/review"] * sample,
        "review item": [f"/review/{r}" for r in open_items] or ["/review"],
    }
    out = []
    with TestClient(app) as client:
        r = client.post(
            "/login",
            data={"username": "bench", "password": "bench password", "next": "/"},
            follow_redirects=False,
        )
        assert r.status_code == 303, r.text
        for name, paths in pages.items():
            times = []
            for _ in range(repeat):
                for path in paths:
                    response = client.get(path)
                    assert response.status_code == 200, (path, response.status_code)
                    times.append(float(response.headers["X-Render-Ms"]))
            times.sort()
            p95 = times[min(len(times) - 1, int(0.95 * len(times)))]
            out.append((name, statistics.median(times), p95))
            print(
                f"  {name:32s} median {statistics.median(times):7.1f} ms  p95 {p95:7.1f} ms  "
                f"(n={len(times)}; load {load()})",
                flush=True,
            )
    hub.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--sample", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--pg-url", default=PG)
    ap.add_argument("--reuse", action="store_true", help="Measure the database already filled.")
    args = ap.parse_args()
    print(
        f"dashboard pages on PostgreSQL: {args.customers:,} customers, {args.events:,} events; "
        f"load before {load()}",
        flush=True,
    )
    if not args.reuse:
        t = time.perf_counter()
        fresh_database(args.pg_url)
        fill(args.pg_url, args.customers, args.events)
        print(f"  filled in {time.perf_counter() - t:.0f} s (load {load()})", flush=True)
    measure(args.pg_url, args.customers, args.sample, args.repeat)
    print(f"load after {load()}")


if __name__ == "__main__":
    main()
