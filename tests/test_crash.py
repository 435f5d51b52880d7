"""Crash test: SIGKILL the server twice while 5,000 signed webhooks (with redeliveries) arrive.

The client behaves like a vendor: it retries every delivery until it gets a 2xx. Afterwards every
acknowledged webhook is in the receive log exactly once, and once the processor catches up every
canonical event exists exactly once.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
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
from tests.test_gateway import ORDER

pytestmark = pytest.mark.slow

N_WEBHOOKS = 5000
REDELIVERY_RATE = 0.1
KILL_AFTER_ACKS = (1500, 3300)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, config: Path, db_url: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.cmd = [
            sys.executable,
            "-m",
            "handoff.cli",
            "serve",
            "--config",
            str(config),
            "--port",
            str(self.port),
            "--log-level",
            "WARNING",
        ]
        self.env = os.environ | SECRETS | {"HANDOFF_DATABASE_URL": db_url}
        self.proc: subprocess.Popen[bytes] | None = None
        self.kills = 0

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self.cmd, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError("server did not start")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.kills += 1

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def deliveries() -> list[tuple[str, bytes]]:
    rng = random.Random(7)
    plan: list[tuple[str, bytes]] = []
    for i in range(N_WEBHOOKS):
        body = json.dumps(ORDER | {"id": 5_000_000 + i}).encode()
        plan.append((f"wh-{i}", body))
        if rng.random() < REDELIVERY_RATE:  # the vendor sends it again later
            plan.append((f"wh-{i}", body))
    rng.shuffle(plan)
    return plan


async def send_all(server: Server, plan: list[tuple[str, bytes]]) -> set[str]:
    acked: set[str] = set()
    acks = 0
    queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
    for item in plan:
        queue.put_nowait(item)
    restarting = asyncio.Lock()
    secret = SECRETS["SHOP_SECRET"].encode()

    async def restart() -> None:
        async with restarting:
            server.kill()
            await asyncio.to_thread(server.start)

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal acks
        while True:
            try:
                webhook_id, body = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            headers = shopify.sign(secret, body, topic="orders/paid", webhook_id=webhook_id)
            while True:  # a vendor retries until it gets a 2xx
                async with restarting:
                    pass
                try:
                    response = await client.post(
                        f"{server.url}/hooks/shop", content=body, headers=headers
                    )
                except httpx.HTTPError:
                    await asyncio.sleep(0.05)
                    continue
                if response.status_code == 200:
                    acked.add(webhook_id)
                    acks += 1
                    if (
                        server.kills < len(KILL_AFTER_ACKS)
                        and acks >= KILL_AFTER_ACKS[server.kills]
                    ):
                        await restart()
                    break
                assert response.status_code in (503, 429), response.text
                await asyncio.sleep(0.05)

    limits = httpx.Limits(max_connections=32)
    async with httpx.AsyncClient(timeout=10, limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(32)))
    return acked


def test_sigkill_loses_nothing_and_doubles_nothing(
    database: Database, db_url: str, tmp_path: Path
) -> None:
    server = Server(write_config(tmp_path, batch_size=50), db_url)
    plan = deliveries()
    server.start()
    try:
        t0 = time.monotonic()
        acked = asyncio.run(send_all(server, plan))
        print(f"sent in {time.monotonic() - t0:.1f}s")
        assert server.kills == 2
        # let the processor catch up on whatever the killed instances left pending
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with database.read() as conn:
                pending = conn.execute(
                    select(func.count()).select_from(receipts).where(receipts.c.status == "pending")
                ).scalar_one()
            if pending == 0:
                print(f"caught up after {time.monotonic() - t0:.1f}s")
                break
            time.sleep(0.2)
    finally:
        server.stop()

    assert len(acked) == N_WEBHOOKS
    with database.read() as conn:
        stored = conn.execute(select(receipts.c.delivery_id, receipts.c.status)).all()
        per_order = conn.execute(
            select(events.c.order_id, func.count()).group_by(events.c.order_id)
        ).all()
    ids = [r.delivery_id for r in stored]
    assert len(ids) == len(set(ids)), "a delivery was stored twice"
    assert set(ids) == acked, "an acknowledged webhook is missing (or an unknown one appeared)"
    assert {r.status for r in stored} == {"processed"}
    assert len(per_order) == N_WEBHOOKS
    assert all(count == 1 for _, count in per_order), "a canonical event was written twice"
