"""`handoff serve --workers 2`: two HTTP processes and one processor process, as a real command.

Every webhook acknowledged by either HTTP process is stored once and processed once (by the
separate worker process), and SIGTERM to the parent leaves no process behind.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from handoff.connectors import shopify
from handoff.store.db import Database
from handoff.store.tables import events, receipts
from tests.conftest import SECRETS
from tests.test_contention import write_config
from tests.test_crash import Server
from tests.test_gateway import ORDER

pytestmark = pytest.mark.slow

N = 400


def children(pid: int) -> set[int]:
    """Every descendant of `pid`, from /proc (no psutil needed)."""
    found: set[int] = set()
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        try:
            tasks = Path(f"/proc/{parent}/task").iterdir()
            kids = {
                int(k)
                for task in tasks
                for k in (task / "children").read_text().split()
                if (task / "children").exists()
            }
        except (FileNotFoundError, ProcessLookupError):
            continue
        frontier += sorted(kids - found)
        found |= kids
    return found


def stored_count(metrics_text: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics_text.splitlines()
        if line.startswith("handoff_webhooks_total{") and 'outcome="stored"' in line
    )


def alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


async def post_all(url: str) -> set[str]:
    secret = SECRETS["SHOP_SECRET"].encode()
    acked: set[str] = set()

    async def one(client: httpx.AsyncClient, i: int) -> None:
        body = json.dumps(ORDER | {"id": 7_000_000 + i}).encode()
        headers = shopify.sign(secret, body, topic="orders/paid", webhook_id=f"mw-{i}")
        response = await client.post(f"{url}/hooks/shop", content=body, headers=headers)
        assert response.status_code == 200, response.text
        acked.add(f"mw-{i}")

    limits = httpx.Limits(max_connections=16)
    async with httpx.AsyncClient(timeout=20, limits=limits) as client:
        for start in range(0, N, 50):
            await asyncio.gather(*(one(client, i) for i in range(start, min(N, start + 50))))
    return acked


def test_serve_with_two_http_workers_and_a_processor_process(
    database: Database, db_url: str, tmp_path: Path
) -> None:
    server = Server(write_config(tmp_path, batch_size=50), db_url)
    server.cmd += ["--workers", "2"]
    server.start()
    assert server.proc is not None
    descendants: set[int] = set()
    try:
        descendants = children(server.proc.pid)
        # uvicorn's two HTTP workers and the processor's own process (at least)
        assert len(descendants) >= 3, descendants
        acked = asyncio.run(post_all(server.url))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with database.read() as conn:
                pending = conn.execute(
                    select(func.count()).select_from(receipts).where(receipts.c.status == "pending")
                ).scalar_one()
            if pending == 0:
                break
            time.sleep(0.2)
        # whichever process answers the scrape reports every process's counts
        for _ in range(4):
            text = httpx.get(f"{server.url}/metrics", timeout=5).text
            assert stored_count(text) == N
    finally:
        server.stop()

    assert server.proc.returncode is not None
    deadline = time.monotonic() + 15
    while any(alive(pid) for pid in descendants) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in descendants if alive(pid)], "a child outlived `handoff serve`"

    with database.read() as conn:
        stored = conn.execute(select(receipts.c.delivery_id, receipts.c.status)).all()
        per_order = conn.execute(
            select(events.c.order_id, func.count()).group_by(events.c.order_id)
        ).all()
    assert sorted(r.delivery_id for r in stored) == sorted(acked)
    assert {r.status for r in stored} == {"processed"}
    assert len(per_order) == N and all(count == 1 for _, count in per_order)


def test_workers_option_is_validated(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("handoff")),
            "serve",
            "--workers",
            "0",
            "--config",
            str(write_config(tmp_path)),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "--workers" in result.stderr
