"""Identity benchmark: live resolution against a store of customers, sustained profiles/s through
the identity stage, the batch dedupe of a generated file, and Splink beside it where installed.

    .venv/bin/python bench/identity.py                         # 200,000 customers, 1M batch
    .venv/bin/python bench/identity.py --store 20000 --batch 100000 --probes 100
    .venv/bin/python bench/identity.py --skip-batch --backends postgresql
    .venv/bin/python bench/identity.py --skip-live --batch 1000000 --batch-file /tmp/p1m.csv

Live: a scratch database (a new SQLite file; `handoff_bench_identity` dropped and recreated on
--pg-url) is migrated and filled with S distinct people (`identity_quality.synthetic_profiles`:
FEBRL value pools, realistic name skew, 70% emails, 60% US phones), one customer each, stored the
way the live stage stores them (golden record, system id, the raw profile, its blocking keys),
then ANALYZEd. Timed, each in its own write transaction through `IdentityStage.handle` (the
live code path: known-id lookup, normalise, screen, lock and look up the blocking keys, decide,
store): P probe profiles, half a second record of a stored person (a typo or a missing
identifier), half new people — median and p95 per profile. Then the same stage on batches of 100
new profiles for --sustained profiles: profiles/s. Where the time goes is measured by wrapping
the store functions and the engine's `decide` (seconds per profile per step).

Batch: `handoff identity dedupe` on a generated CSV of B profiles (every source `default_region
= US`), as a subprocess; wall time and the peak of the summed proportional set size (PSS) of
the command and its worker processes, sampled every 0.2 s.

Splink (`.venv/bin/pip install splink`, bench-only): its DuckDB linker over the same stored
profiles, u by random sampling, and `linker.inference.predict_between` for one profile against
the store, median and p95 over the probes.

The machine is shared: every figure carries the load averages (1, 5, 15 min) read just before
and after it.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import text
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).parent))

from handoff.config import Settings, parse_config
from handoff.domain.events import (
    CanonicalEvent,
    CustomerRef,
    EventDraft,
    EventType,
    ProfileBody,
)
from handoff.domain.identity import (
    NormalizeConfig,
    Profile,
    blocking_keys,
    normalize,
    screen,
)
from handoff.hub import Hub
from handoff.pipeline import identity_stage as stage_module
from handoff.pipeline.identity_stage import IdentityStage
from handoff.pipeline.processor import StageBatch
from handoff.store import identity as store
from handoff.store import migrate
from handoff.store.db import Database
from handoff.store.identity_tables import (
    customers,
    identities,
    identity_keys,
    identity_profiles,
)
from identity_quality import synthetic_profiles

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/handoff_bench_identity"
NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)
SYSTEMS = ("pos", "web", "crm")
CONFIG = {
    "sources": {
        name: {
            "vendor": "standard",
            "role": role,
            "secret_env": f"BENCH_{name.upper()}_SECRET",
            "default_region": "US",
        }
        for name, role in zip(SYSTEMS, ("pos", "storefront", "crm"), strict=True)
    }
}


def load() -> tuple[float, float, float]:
    return os.getloadavg()


def fmt_load(before: tuple[float, ...], after: tuple[float, ...]) -> str:
    return f"{'/'.join(f'{x:.2f}' for x in before)} → {'/'.join(f'{x:.2f}' for x in after)}"


# --------------------------------------------------------------------------------------------
# the store


def recreate_pg(pg_url: str) -> None:
    url = make_url(pg_url)
    name = url.database or ""
    if not re.fullmatch(r"[A-Za-z0-9_]+", name) or name == "postgres":
        raise SystemExit(f"--pg-url must name a scratch database: {pg_url}")
    admin = url.set(drivername="postgresql", database="postgres")
    with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def fresh(backend: str, pg_url: str, workdir: Path) -> str:
    if backend == "postgresql":
        recreate_pg(pg_url)
        url = pg_url
    else:
        path = workdir / "identity.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        url = f"sqlite:///{path}"
    db = Database(url, pool_size=2)
    migrate.upgrade(db)
    db.dispose()
    return url


@dataclass
class People:
    stored: list[Profile]  # one record per person, in the store
    returning: list[Profile]  # a later record of a stored person
    new: list[Profile]  # people the store has never seen


def people(store_size: int, probes: int, sustained: int) -> People:
    """Distinct people for the store, later records of some of them, and unseen people."""
    stored: list[Profile] = []
    returning: list[Profile] = []
    new: list[Profile] = []
    want_new = probes + sustained
    stored_ids: set[str] = set()
    for p in synthetic_profiles(int((store_size + want_new) * 1.5) + 1000, seed=7):
        person, _, copy = p.record_id.partition("-")
        if copy == "0":
            if len(stored) < store_size:
                stored.append(p)
                stored_ids.add(person)
            elif len(new) < want_new:
                new.append(p)
        elif person in stored_ids and len(returning) < probes:
            returning.append(p)
        if len(stored) >= store_size and len(new) >= want_new and len(returning) >= probes:
            break
    return People(stored, returning, new)


_SETVAL = (
    "SELECT setval(pg_get_serial_sequence('customers', 'id'), (SELECT max(id) FROM customers))",
    "SELECT setval(pg_get_serial_sequence('identity_profiles', 'id'), "
    "(SELECT max(id) FROM identity_profiles))",
)


def fill(url: str, profiles: Sequence[Profile], config: NormalizeConfig) -> float:
    """Store one customer per profile, as the live stage would have, set-wise; seconds taken."""
    started = time.perf_counter()
    db = Database(url, pool_size=2)
    chunk = 5000
    with db.write() as conn:
        next_id = 1
        for start in range(0, len(profiles), chunk):
            part = profiles[start : start + chunk]
            cust_rows, id_rows, prof_rows, key_rows = [], [], [], []
            for k, p in enumerate(part):
                cid = next_id + k
                norm = screen(normalize(p, config))
                cust_rows.append(
                    {
                        "id": cid,
                        "email": norm.email_id,
                        "phone": norm.phone_id,
                        "first_name": p.first_name,
                        "last_name": p.last_name,
                        "zip": p.zip,
                        "birth_date": norm.dob,
                        "sources": {"email": p.system} if norm.email_id else {},
                        "version": 1,
                        "created_at": NOW,
                        "updated_at": NOW,
                    }
                )
                id_rows.append(
                    {
                        "system": p.system,
                        "external_id": p.external_id,
                        "customer_id": cid,
                        "first_seen_at": NOW,
                    }
                )
                prof_rows.append(
                    {
                        "id": cid,
                        "record_id": f"store-{p.record_id}",
                        "customer_id": cid,
                        "system": p.system,
                        "external_id": p.external_id,
                        "profile": stage_module._profile_json(p),
                        "seen_at": NOW,
                    }
                )
                key_rows += [{"key": key, "profile_id": cid} for key in sorted(blocking_keys(norm))]
            conn.execute(customers.insert(), cust_rows)
            conn.execute(identities.insert(), id_rows)
            conn.execute(identity_profiles.insert(), prof_rows)
            conn.execute(identity_keys.insert(), key_rows)
            next_id += len(part)
        if conn.dialect.name == "postgresql":
            for statement in _SETVAL:
                conn.execute(text(statement))
    with db.engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.execute(text("ANALYZE"))
    db.dispose()
    return time.perf_counter() - started


def event_of(p: Profile, n: int) -> CanonicalEvent:
    ref = CustomerRef(system=p.system or "web", external_id=p.external_id, email=p.email)
    body = ProfileBody(
        email=p.email,
        phone=p.phone,
        first_name=p.first_name,
        last_name=p.last_name,
        zip=p.zip,
        birth_date=str(p.date_of_birth) if p.date_of_birth else None,
    )
    return EventDraft(
        source_event_id=f"bench-{p.record_id}-{n}",
        type=EventType.PROFILE_CAPTURED,
        occurred_at=NOW + timedelta(seconds=n),
        customer=ref,
        body=body,
    ).stamp(source=p.system or "web", received_at=NOW + timedelta(seconds=n))


class StepTimer:
    """Seconds spent in each store function and in the engine's decide, while installed."""

    NAMES = (
        "customers_of_identities",
        "lock_keys",
        "candidates",
        "add_identity",
        "add_profile",
        "golden",
        "save_golden",
        "record_decision",
        "add_review",
        "new_customer",
        "count_customers",
        "survivors",
    )

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._undo: list[Callable[[], None]] = []

    def _wrap(self, owner: Any, name: str, label: str) -> None:
        original = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[label] = self.seconds.get(label, 0.0) + time.perf_counter() - started
                self.calls[label] = self.calls.get(label, 0) + 1

        setattr(owner, name, timed)
        self._undo.append(lambda: setattr(owner, name, original))

    @contextlib.contextmanager
    def installed(self) -> Iterator[StepTimer]:
        for name in self.NAMES:
            if hasattr(store, name):
                self._wrap(store, name, f"store.{name}")
        self._wrap(stage_module, "decide", "engine.decide")
        self._wrap(stage_module, "normalize", "engine.normalize")
        try:
            yield self
        finally:
            for undo in reversed(self._undo):
                undo()
            self._undo.clear()


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def bench_live(url: str, group: People, probes: int, sustained: int) -> dict[str, Any]:
    settings = Settings(config=parse_config(CONFIG), database_url=url, config_path=None)
    hub = Hub.build(settings, env={}, pool_size=2)
    stage = IdentityStage.from_hub(hub)
    half = probes // 2
    probe_profiles = [*group.returning[:half], *group.new[: probes - half]]
    # one warm-up transaction (connections, the model, the first population count)
    with hub.db.write() as conn:
        stage.handle(conn, StageBatch([event_of(group.new[-1], 0)], NOW))
    timer = StepTimer()
    latencies: list[float] = []
    decided: dict[str, int] = {"merged": 0, "new": 0}
    before = load()
    with timer.installed():
        for n, p in enumerate(probe_profiles, 1):
            batch = StageBatch([event_of(p, n)], NOW + timedelta(seconds=n))
            started = time.perf_counter()
            with hub.db.write() as conn:
                stage.handle(conn, batch)
            latencies.append(time.perf_counter() - started)
    live_load = (before, load())
    with hub.db.read() as conn:
        for p in probe_profiles:
            found = store.customers_of_identities(conn, [(p.system or "web", p.external_id or "")])
            cid = next(iter(found.values()), None)
            decided["merged" if cid is not None and cid <= len(group.stored) else "new"] += 1

    # sustained: batches of 100 new profiles through the stage, one transaction each
    pool = group.new[probes - half : probes - half + sustained]
    before = load()
    started = time.perf_counter()
    for start in range(0, len(pool), 100):
        events = [event_of(p, 10_000 + start + k) for k, p in enumerate(pool[start : start + 100])]
        with hub.db.write() as conn:
            stage.handle(conn, StageBatch(events, NOW + timedelta(hours=1)))
    elapsed = time.perf_counter() - started
    sustained_load = (before, load())
    hub.close()
    per_step = {
        label: round(seconds / len(probe_profiles) * 1000, 3)
        for label, seconds in sorted(timer.seconds.items(), key=lambda kv: -kv[1])
    }
    return {
        "probes": len(probe_profiles),
        "median_ms": round(statistics.median(latencies) * 1000, 2),
        "p95_ms": round(percentile(latencies, 0.95) * 1000, 2),
        "max_ms": round(max(latencies) * 1000, 2),
        "returning_merged_or_new": decided,
        "load": fmt_load(*live_load),
        "ms_per_profile_by_step": per_step,
        "sustained_profiles": len(pool),
        "sustained_seconds": round(elapsed, 2),
        "profiles_per_second": round(len(pool) / elapsed, 1) if elapsed else None,
        "sustained_load": fmt_load(*sustained_load),
    }


# --------------------------------------------------------------------------------------------
# batch


def write_csv(path: Path, n: int) -> None:
    cols = [
        "record_id",
        "system",
        "external_id",
        "first_name",
        "last_name",
        "email",
        "phone",
        "zip",
        "address",
        "city",
        "date_of_birth",
    ]
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(cols)
        for p in synthetic_profiles(n):
            writer.writerow(
                [
                    p.record_id,
                    p.system,
                    p.external_id,
                    p.first_name,
                    p.last_name,
                    p.email or "",
                    p.phone or "",
                    p.zip,
                    p.address,
                    p.city,
                    p.date_of_birth or "",
                ]
            )


def _pss_tree(pid: int) -> int:
    """Proportional set size (bytes) of a process and its descendants (shared pages split)."""
    import psutil  # type: ignore[import-untyped]

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            total += proc.memory_full_info().pss
    return total


def bench_batch(csv_path: Path, workdir: Path, workers: int) -> dict[str, Any]:
    config = workdir / "bench.toml"
    lines = []
    for name, cfg in CONFIG["sources"].items():
        lines.append(f"[sources.{name}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in cfg.items()]
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = workdir / "clusters.csv"
    cmd = [
        str(Path(sys.executable).parent / "handoff"),
        "identity",
        "dedupe",
        str(csv_path),
        "--out",
        str(out),
        "--config",
        str(config),
        "--format",
        "json",
        "--workers",
        str(workers),
    ]
    before = load()
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, _pss_tree(proc.pid))
            stop.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = proc.communicate()
    elapsed = time.perf_counter() - started
    stop.set()
    sampler.join()
    after = load()
    if proc.returncode != 0:
        raise SystemExit(f"dedupe failed ({proc.returncode}): {stderr[-2000:]}")
    summary = json.loads(stdout)
    return {
        "records": summary["records"],
        "seconds": round(elapsed, 1),
        "peak_pss_mb": round(peak / 2**20),
        "customers": summary["customers"],
        "candidate_pairs": summary["candidate_pairs"],
        "largest_cluster": summary["largest_cluster"],
        "review_items": summary["review_items"],
        "workers": workers or os.cpu_count(),
        "load": fmt_load(before, after),
    }


# --------------------------------------------------------------------------------------------
# Splink


def bench_splink(group: People, probes: int) -> dict[str, Any] | None:
    try:
        import splink
        import splink.comparison_library as cl
        from splink import Linker, SettingsCreator, block_on
        from splink.backends.duckdb import DuckDBAPI
    except ImportError:
        return None
    import logging

    import pandas as pd  # type: ignore[import-untyped]

    logging.getLogger("splink").setLevel(logging.ERROR)
    cols = ["first_name", "last_name", "date_of_birth", "zip", "address", "city", "email", "phone"]

    def frame(profiles: Sequence[Profile], prefix: str) -> Any:
        rows: list[dict[str, str | None]] = []
        for p in profiles:
            row: dict[str, str | None] = {"unique_id": f"{prefix}{p.record_id}"}
            for c in cols:
                value = getattr(p, c)
                row[c] = str(value) if value else None
            rows.append(row)
        return pd.DataFrame(rows, columns=["unique_id", *cols]).astype("string")

    db = DuckDBAPI()
    stored = db.register(frame(group.stored, "s"), dataset_display_name="store")
    settings = SettingsCreator(
        link_type="dedupe_only",
        comparisons=[
            cl.NameComparison("first_name"),
            cl.NameComparison("last_name"),
            cl.DamerauLevenshteinAtThresholds("date_of_birth", [1, 2]),
            cl.DamerauLevenshteinAtThresholds("zip", [1, 2]),
            cl.JaroWinklerAtThresholds("address", [0.9, 0.7]),
            cl.JaroWinklerAtThresholds("city", [0.9, 0.7]),
            cl.EmailComparison("email"),
            cl.ExactMatch("phone"),
        ],
        blocking_rules_to_generate_predictions=[
            block_on("email"),
            block_on("phone"),
            block_on("first_name", "last_name"),
            block_on("last_name", "zip"),
            block_on("date_of_birth"),
        ],
    )
    linker = Linker(stored, settings, log_level=logging.ERROR)
    for column in ("first_name", "last_name", "email"):  # the comparisons' term frequencies
        linker.table_management.compute_tf_table(column)
    linker.training.estimate_u_using_random_sampling(max_pairs=1e6, seed=1)
    half = probes // 2
    probe_profiles = [*group.returning[:half], *group.new[: probes - half]]
    latencies: list[float] = []
    before = load()
    for k, p in enumerate(probe_profiles):
        one = db.register(frame([p], f"n{k}-"), dataset_display_name=f"probe{k}")
        started = time.perf_counter()
        linker.inference.predict_between(
            stored, one, threshold_match_probability=0.5, warning_mode="never"
        ).as_pandas_dataframe()  # type: ignore[no-untyped-call]
        latencies.append(time.perf_counter() - started)
    return {
        "version": splink.__version__,
        "probes": len(latencies),
        "median_ms": round(statistics.median(latencies) * 1000, 1),
        "p95_ms": round(percentile(latencies, 0.95) * 1000, 1),
        "load": fmt_load(before, load()),
    }


# --------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=int, default=200_000, help="customers in the store")
    parser.add_argument("--probes", type=int, default=200, help="profiles timed one by one")
    parser.add_argument("--sustained", type=int, default=5000, help="profiles for profiles/s")
    parser.add_argument("--batch", type=int, default=1_000_000, help="profiles for dedupe")
    parser.add_argument("--batch-file", type=Path, help="reuse (or create) this generated CSV")
    parser.add_argument("--workers", type=int, default=0, help="dedupe --workers (0: cores)")
    parser.add_argument(
        "--backends", nargs="+", default=["postgresql", "sqlite"], help="or none (Splink alone)"
    )
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL)
    parser.add_argument("--skip-live", action="store_true")
    parser.add_argument("--skip-batch", action="store_true")
    parser.add_argument("--skip-splink", action="store_true")
    args = parser.parse_args(argv)

    report: dict[str, Any] = {"cores": os.cpu_count(), "started": datetime.now(UTC).isoformat()}
    with tempfile.TemporaryDirectory(prefix="bench-identity-") as tmp:
        workdir = Path(tmp)
        if not args.skip_live:
            group = people(args.store, args.probes, args.sustained)
            config = NormalizeConfig(regions=dict.fromkeys(SYSTEMS, "US"))
            for backend in args.backends:
                if backend == "none":  # Splink alone
                    continue
                url = fresh(backend, args.pg_url, workdir)
                seconds = fill(url, group.stored, config)
                print(f"{backend}: stored {len(group.stored):,} customers in {seconds:.0f} s")
                live = bench_live(url, group, args.probes, args.sustained)
                report[f"live_{backend}"] = {"store": len(group.stored), **live}
                print(json.dumps({backend: live}, indent=2), flush=True)
            if not args.skip_splink:
                found = bench_splink(group, min(args.probes, 40))
                report["splink"] = found or "not installed (pip install splink)"
                print(json.dumps({"splink": report["splink"]}, indent=2), flush=True)
        if not args.skip_batch:
            path = args.batch_file or workdir / "profiles.csv"
            if not path.exists():
                write_csv(path, args.batch)
            report["batch"] = bench_batch(path, workdir, args.workers)
            print(json.dumps({"batch": report["batch"]}, indent=2), flush=True)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
