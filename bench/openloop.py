"""Open-loop load at a fixed rate, for the latency check of bench/ingest.py.

wrk is closed-loop (a slow answer delays the next request, hiding the delay: coordinated
omission) and Debian has no wrk2, so this sends request i at t0 + i/rate whatever the server
does, over a pool of keep-alive HTTP/1.1 connections, and measures each latency from the
*scheduled* send time to the end of the response. A stall therefore shows up in the latency of
every request scheduled during it, as it would for a vendor posting at that rate.

Run by bench/ingest.py in its own process; prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import sys
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# uvicorn closes a keep-alive connection idle for 5 s; one idle longer than this is not reused,
# so a request is never written to a connection the server is closing.
MAX_IDLE = 2.0


@dataclass
class Conn:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    idle_since: float = 0.0


@dataclass
class Pool:
    host: str
    port: int
    limit: int
    idle: list[Conn] = field(default_factory=list)
    waiters: deque[asyncio.Future[Conn]] = field(default_factory=deque)
    opened: int = 0

    async def open(self) -> Conn:
        self.opened += 1
        try:
            reader, writer = await asyncio.open_connection(self.host, self.port)
        except OSError:
            self.opened -= 1
            raise
        return Conn(reader, writer)

    async def get(self) -> Conn:
        while self.idle:
            conn = self.idle.pop()
            if time.perf_counter() - conn.idle_since < MAX_IDLE:
                return conn
            self.discard(conn)
        if self.opened < self.limit:
            return await self.open()
        waiter: asyncio.Future[Conn] = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        return await waiter

    def put(self, conn: Conn) -> None:
        conn.idle_since = time.perf_counter()
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        self.idle.append(conn)

    def discard(self, conn: Conn) -> None:
        self.opened -= 1
        conn.writer.close()

    def close(self) -> None:
        for conn in self.idle:
            conn.writer.close()
        self.idle.clear()


async def read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    if length:
        await reader.readexactly(length)
    return status


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending list (0 if empty)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


@dataclass
class Phase:
    latencies: list[float] = field(default_factory=list)  # seconds, from scheduled send time
    send_lag: list[float] = field(default_factory=list)  # seconds, actual - scheduled write
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    acked: list[str] = field(default_factory=list)
    last_done: float = 0.0


async def run_phase(
    pool: Pool,
    request_for: Any,
    *,
    prefix: str,
    rate: float,
    duration: float,
    drain_timeout: float,
) -> tuple[Phase, float, int]:
    phase = Phase()
    total = int(rate * duration)
    interval = 1.0 / rate
    tasks: set[asyncio.Task[None]] = set()

    async def one(delivery_id: str, scheduled: float) -> None:
        try:
            conn = await pool.get()
        except OSError as exc:
            phase.errors[type(exc).__name__] += 1
            return
        try:
            phase.send_lag.append(time.perf_counter() - scheduled)
            conn.writer.write(request_for(delivery_id))
            status = await read_response(conn.reader)
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError) as exc:
            phase.errors[type(exc).__name__] += 1
            pool.discard(conn)
            return
        done = time.perf_counter()
        phase.latencies.append(done - scheduled)
        phase.last_done = max(phase.last_done, done)
        phase.statuses[status] += 1
        if status == 200:
            phase.acked.append(delivery_id)
        pool.put(conn)

    t0 = time.perf_counter() + 0.01
    sent = 0
    while sent < total:
        now = time.perf_counter()
        while sent < total and t0 + sent * interval <= now:
            task = asyncio.create_task(one(f"{prefix}-{sent}", t0 + sent * interval))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            sent += 1
        if sent < total:
            await asyncio.sleep(max(0.0, t0 + sent * interval - time.perf_counter()))
    if tasks:
        _, pending = await asyncio.wait(set(tasks), timeout=drain_timeout)
        for task in pending:
            task.cancel()
        if pending:
            phase.errors["unanswered"] += len(pending)
    return phase, t0, total


def summarise(phase: Phase, t0: float, total: int, duration: float) -> dict[str, Any]:
    lat = sorted(phase.latencies)
    lag = sorted(phase.send_lag)
    elapsed = (phase.last_done - t0) if phase.last_done else duration
    ms = 1000.0
    return {
        "scheduled": total,
        "completed": len(lat),
        "offered_rate": total / duration,
        "achieved_rate": len(lat) / elapsed if elapsed > 0 else 0.0,
        "status_counts": {str(k): v for k, v in sorted(phase.statuses.items())},
        "errors": dict(phase.errors),
        "latency_ms": {
            "p50": percentile(lat, 50) * ms,
            "p90": percentile(lat, 90) * ms,
            "p99": percentile(lat, 99) * ms,
            "p999": percentile(lat, 99.9) * ms,
            "max": (lat[-1] if lat else 0.0) * ms,
        },
        "send_lag_ms": {"p50": percentile(lag, 50) * ms, "p99": percentile(lag, 99) * ms},
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    body = Path(args.body_file).read_bytes()
    head = (
        f"POST {args.path} HTTP/1.1\r\n"
        f"Host: {args.host}:{args.port}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"X-Shopify-Hmac-Sha256: {args.signature}\r\n"
        "X-Shopify-Topic: orders/paid\r\n"
        "X-Shopify-Shop-Domain: bench.myshopify.com\r\n"
        "X-Shopify-API-Version: 2025-01\r\n"
    ).encode()

    def request_for(delivery_id: str) -> bytes:
        return head + b"X-Shopify-Webhook-Id: " + delivery_id.encode() + b"\r\n\r\n" + body

    pool = Pool(args.host, args.port, args.max_connections)
    warm = [await pool.open() for _ in range(args.initial_connections)]
    for conn in warm:
        pool.put(conn)
    try:
        if args.warmup > 0:
            await run_phase(
                pool,
                request_for,
                prefix=f"{args.prefix}w",
                rate=args.rate,
                duration=args.warmup,
                drain_timeout=args.drain_timeout,
            )
        phase, t0, total = await run_phase(
            pool,
            request_for,
            prefix=args.prefix,
            rate=args.rate,
            duration=args.duration,
            drain_timeout=args.drain_timeout,
        )
    finally:
        pool.close()
    if args.acked_file:
        Path(args.acked_file).write_text("\n".join(phase.acked) + "\n", encoding="utf-8")
    result = summarise(phase, t0, total, args.duration)
    result["connections_opened"] = pool.opened
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/hooks/shop")
    parser.add_argument("--body-file", required=True)
    parser.add_argument("--signature", required=True)
    parser.add_argument("--prefix", required=True, help="delivery ids are PREFIX-N")
    parser.add_argument("--rate", type=float, default=1000.0, help="requests per second")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds first")
    parser.add_argument("--initial-connections", type=int, default=16)
    parser.add_argument("--max-connections", type=int, default=256)
    parser.add_argument("--drain-timeout", type=float, default=30.0)
    parser.add_argument("--acked-file", help="write the delivery ids answered 200 here")
    args = parser.parse_args()
    loop_factory = None
    with contextlib.suppress(ImportError):
        import uvloop

        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        result = runner.run(main_async(args))
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
