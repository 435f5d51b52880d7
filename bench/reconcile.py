"""Benchmark `handoff reconcile` at the issue's size: 10M orders, ~10M loyalty events, 1M members
and 1M contacts, as CSV.

    python bench/reconcile.py [--orders 10000000] [--customers 1000000] [--data DIR]
                              [--memory-limit 1GB] [--runs 1]

The files are generated once with DuckDB and cached under `--data` (generation is not timed).
Then, each in its own process so that peak memory is that run's alone:

1. the bare DuckDB full outer join of orders against loyalty events on the order id, reading the
   same CSV files (the same I/O, so parsing does not hide in the ratio);
2. the whole `handoff reconcile` run (load, validate, link, classify, plan, write --out);
3. the same with `--memory-limit` (DuckDB spills beyond it).

Wall time and peak RSS (the process and its children, polled every 20 ms with psutil) are
printed, with the ratio of the reconcile run to the bare join. Lines for bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import psutil

HERE = Path(__file__).resolve().parent


def generate(data: Path, orders: int, customers: int) -> dict[str, Path]:
    """Orders, refunds, loyalty events and members, CRM contacts; ~2% of each fault kind."""
    data.mkdir(parents=True, exist_ok=True)
    files = {
        name: data / f"{name}.csv"
        for name in ("orders", "refunds", "loyalty_events", "loyalty_members", "crm_contacts")
    }
    stamp = data / f"done-{orders}-{customers}"
    if stamp.exists() and all(p.exists() for p in files.values()):
        return files
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    t0 = time.perf_counter()
    # order i: customer i % customers; fulfilled one minute after placement; ~1% cancelled
    con.execute(
        f"""
        CREATE TABLE o AS
        SELECT i, 'SO-' || i AS order_id, 'C-' || (i % {customers}) AS customer_id,
               'USD' AS currency, (1000 + (i * 7919) % 30000) AS sub,
               CASE WHEN i % 5 = 0 THEN ((1000 + (i * 7919) % 30000) // 10) ELSE 0 END AS disc,
               TIMESTAMPTZ '2025-01-01 00:00:00+00' + to_seconds(i * 3) AS placed,
               i % 100 = 7 AS cancelled
        FROM range({orders}) t(i)
        """
    )
    con.execute(
        f"""
        COPY (
            SELECT order_id, customer_id, currency,
                   'person' || (i % {customers}) || '@shop.test' AS email,
                   'First' || ((i % {customers}) % 5000) AS first_name,
                   printf('%d.%02d', sub // 100, sub % 100) AS subtotal,
                   printf('%d.%02d', disc // 100, disc % 100) AS discount,
                   printf('%d.%02d', (sub - disc) * 825 // 1000000, (sub - disc) * 825 // 10000 % 100) AS tax,
                   '0.00' AS shipping, '0.00' AS gift_card,
                   CASE WHEN cancelled THEN 'cancelled' ELSE 'fulfilled' END AS status,
                   strftime(placed, '%Y-%m-%dT%H:%M:%SZ') AS placed_at,
                   strftime(placed, '%Y-%m-%dT%H:%M:%SZ') AS paid_at,
                   CASE WHEN cancelled THEN NULL
                        ELSE strftime(placed + INTERVAL 1 MINUTE, '%Y-%m-%dT%H:%M:%SZ') END
                        AS fulfilled_at,
                   CASE WHEN cancelled THEN strftime(placed + INTERVAL 2 HOUR,
                        '%Y-%m-%dT%H:%M:%SZ') END AS cancelled_at,
                   CASE WHEN i % 3 = 0 THEN 'online' ELSE 'pos' END AS channel
            FROM o
        ) TO '{files["orders"]}' (HEADER)
        """
    )
    # refunds: 5% of fulfilled orders, a tenth of the net merchandise, a week later
    con.execute(
        """
        CREATE TABLE r AS SELECT i, order_id, (sub - disc) // 10 AS amount,
               placed + INTERVAL 7 DAY AS r_at
        FROM o WHERE NOT cancelled AND i % 20 = 3
        """
    )
    con.execute(
        f"""
        COPY (SELECT 'RF-' || i AS refund_id, order_id,
                     strftime(r_at, '%Y-%m-%dT%H:%M:%SZ') AS refunded_at,
                     printf('%d.%02d', amount // 100, amount % 100) AS amount FROM r)
        TO '{files["refunds"]}' (HEADER)
        """
    )
    # loyalty: earn per fulfilled order on member M-<customer>; faults keyed by i % 50:
    # 1 dropped, 2 earned twice, 3 earned on gross (tax added); refunds reversed except i % 40 = 23
    con.execute(
        f"""
        COPY (
            WITH earn AS (
                SELECT 'E-' || i AS event_id, 'M-' || (i % {customers}) AS member_id,
                       'earn' AS kind,
                       CASE WHEN i % 50 = 3 THEN (sub - disc + (sub - disc) * 825 // 10000) // 100
                            ELSE (sub - disc) // 100 END AS points,
                       placed + INTERVAL 1 MINUTE AS e_at, order_id
                FROM o WHERE NOT cancelled AND i % 50 <> 1
            ),
            twice AS (
                SELECT 'E2-' || i, 'M-' || (i % {customers}), 'earn', (sub - disc) // 100,
                       placed + INTERVAL 3 MINUTE, order_id
                FROM o WHERE NOT cancelled AND i % 50 = 2
            ),
            rev AS (
                SELECT 'R-' || r.i, 'M-' || (r.i % {customers}), 'reverse',
                       -(((o.sub - o.disc) // 100) * r.amount // (o.sub - o.disc)), r.r_at,
                       r.order_id
                FROM r JOIN o USING (i) WHERE r.i % 40 <> 23 AND r.i % 50 NOT IN (1, 2, 3)
            )
            SELECT event_id, member_id, kind, points,
                   strftime(e_at, '%Y-%m-%dT%H:%M:%SZ') AS occurred_at, order_id
            FROM (SELECT * FROM earn UNION ALL SELECT * FROM twice UNION ALL SELECT * FROM rev)
        ) TO '{files["loyalty_events"]}' (HEADER)
        """
    )
    con.execute(
        f"""
        COPY (
            WITH bal AS (
                SELECT member_id, sum(points) AS total
                FROM read_csv('{files["loyalty_events"]}', header=true) GROUP BY 1
            )
            SELECT 'M-' || c AS member_id,
                   coalesce(bal.total, 0) + CASE WHEN c % 97 = 5 THEN 13 ELSE 0 END AS points_balance,
                   'C-' || c AS customer_id, 'person' || c || '@shop.test' AS email,
                   'First' || (c % 5000) AS first_name, 'Last' || c AS last_name
            FROM range({customers}) t(c) LEFT JOIN bal ON bal.member_id = 'M-' || c
        ) TO '{files["loyalty_members"]}' (HEADER)
        """
    )
    con.execute(
        f"""
        COPY (
            SELECT 'K-' || c AS contact_id, 'Person' || c || '@Shop.test' AS email,
                   'First' || (c % 5000) AS first_name, 'Last' || c AS last_name
            FROM range({customers}) t(c)
        ) TO '{files["crm_contacts"]}' (HEADER)
        """
    )
    stamp.touch()
    print(f"generated {data} in {time.perf_counter() - t0:.1f} s", flush=True)
    return files


def measure(cmd: list[str]) -> tuple[float, int, int]:
    """Wall seconds, peak RSS bytes (the process tree, polled) and the exit code."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ps = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            rss = ps.memory_info().rss + sum(
                c.memory_info().rss for c in ps.children(recursive=True)
            )
            peak = max(peak, rss)
        except psutil.Error:
            pass
        time.sleep(0.02)
    wall = time.perf_counter() - start
    if proc.returncode:
        sys.stderr.write(proc.stderr.read().decode() if proc.stderr else "")
    return wall, peak, proc.returncode


BARE_JOIN = """
import duckdb, sys
con = duckdb.connect()
n = con.execute(
    "SELECT count(*) FROM read_csv(?, header=true) o "
    "FULL OUTER JOIN read_csv(?, header=true) e ON o.order_id = e.order_id",
    [sys.argv[1], sys.argv[2]],
).fetchone()[0]
print(n)
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--orders", type=int, default=10_000_000)
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument(
        "--data", type=Path, default=Path(tempfile.gettempdir()) / "handoff-bench-recon"
    )
    ap.add_argument("--memory-limit", default="1GB")
    ap.add_argument("--runs", type=int, default=1)
    args = ap.parse_args()
    files = generate(args.data, args.orders, args.customers)
    sizes = {k: v.stat().st_size for k, v in files.items()}
    print(
        f"data: {args.orders:,} orders, {args.customers:,} customers/members/contacts, "
        f"{sum(sizes.values()) / 1e9:.2f} GB of CSV in {args.data}",
        flush=True,
    )
    handoff = [sys.executable, "-m", "handoff.cli", "reconcile"]
    for name, path in files.items():
        handoff += [f"--{name.replace('_', '-')}", str(path)]
    out = args.data / "out"
    base = [*handoff, "--out", str(out), "--format", "json"]
    results = {}
    for _ in range(args.runs):
        join = measure(
            [sys.executable, "-c", BARE_JOIN, str(files["orders"]), str(files["loyalty_events"])]
        )
        run = measure(base)
        limited = measure([*base, "--memory-limit", args.memory_limit])
        for key, value in (("join", join), ("run", run), ("limited", limited)):
            if key not in results or value[0] < results[key][0]:
                results[key] = value
    join, run, limited = results["join"], results["run"], results["limited"]
    summary = json.loads((out / "summary.json").read_text())
    print(
        f"bare DuckDB full outer join (orders × loyalty events, from CSV): {join[0]:.2f} s, "
        f"peak {join[1] / 2**30:.2f} GiB"
    )
    print(
        f"handoff reconcile (whole run, --out): {run[0]:.2f} s, peak {run[1] / 2**30:.2f} GiB, "
        f"{run[0] / join[0]:.2f}x the bare join; exit {run[2]}"
    )
    print(
        f"handoff reconcile --memory-limit {args.memory_limit}: {limited[0]:.2f} s, "
        f"peak {limited[1] / 2**30:.2f} GiB; exit {limited[2]}"
    )
    print(
        f"inner timings: {summary['timings']}; findings {summary['findings']} "
        f"{summary['by_class']}; identity {summary['identity']['mode']}"
    )
    print(f"machine: {os.cpu_count()} cores, duckdb {duckdb.__version__}")


if __name__ == "__main__":
    main()
