"""Two worker processes on one database: every receipt is processed exactly once.

On SQLite this is the proof that BEGIN IMMEDIATE makes claims safe (a deferred transaction that
upgrades to a write fails with "database is locked" under this load); on PostgreSQL it exercises
FOR UPDATE SKIP LOCKED.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from handoff.store import receipts as rs
from handoff.store.db import Database
from handoff.store.tables import events, receipts
from tests.conftest import SECRETS, SOURCES
from tests.test_gateway import ORDER

N = 3000

pytestmark = pytest.mark.slow


def write_config(tmp_path: Path, batch_size: int = 10) -> Path:
    path = tmp_path / "handoff.toml"
    lines = [f"[processor]\nbatch_size = {batch_size}\nidle_poll_seconds = 0.01\n"]
    for name, cfg in SOURCES.items():
        lines.append(f"[sources.{name}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in cfg.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_two_workers_never_process_a_receipt_twice(
    database: Database, db_url: str, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    batch = []
    for i in range(N):
        body = json.dumps(ORDER | {"id": 1_000_000 + i}).encode()
        batch.append(
            rs.NewReceipt(
                source="shop",
                vendor="shopify",
                delivery_id=f"wh-{i}",
                received_at=now,
                headers={"x-shopify-topic": "orders/paid"},
                body=body,
                body_sha256="0" * 64,
            )
        )
    for start in range(0, N, 500):
        with database.write() as conn:
            rs.insert_batch(conn, batch[start : start + 500], now)
    config = write_config(tmp_path)
    env = os.environ | SECRETS | {"HANDOFF_DATABASE_URL": db_url}
    cmd = [
        sys.executable,
        "-m",
        "handoff.cli",
        "worker",
        "--once",
        "--config",
        str(config),
        "--log-level",
        "WARNING",
    ]
    procs = [
        subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=240) for p in procs]
    for proc, (_out, errout) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, errout.decode()
        assert b"locked" not in errout, errout.decode()
    with database.read() as conn:
        statuses = dict(
            conn.execute(select(receipts.c.status, func.count()).group_by(receipts.c.status)).all()
        )
        attempts = dict(
            conn.execute(
                select(receipts.c.attempts, func.count()).group_by(receipts.c.attempts)
            ).all()
        )
        n_events = conn.execute(select(func.count()).select_from(events)).scalar_one()
        distinct = conn.execute(select(func.count(func.distinct(events.c.order_id)))).scalar_one()
    assert statuses == {"processed": N}
    assert attempts == {1: N}, "a receipt was claimed more than once"
    assert n_events == distinct == N
    processed = [int(out.split()[1].rstrip(b",")) for out, _ in outputs]
    assert sum(processed) == N
    print(f"processed per worker: {processed}")
