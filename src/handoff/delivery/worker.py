"""The delivery worker: claim, pace, send, record — any number of them, in any process.

One round:
1. In a write transaction, lease due rows (store.outbox.claim), drop state rows a newer
   delivered version already covers (superseded), then draw on each destination's shared rate
   limit and circuit breaker (locked rows in `delivery_destinations`): rows that may not go now
   are put back with the time they may, without using an attempt.
2. Look the customers up (identity) for destinations that need their ids or email.
3. Send, destinations and chunks in parallel on a thread pool (fan-out), each writer speaking
   its vendor's API and saying whether the destination confirmed.
4. In a write transaction, record every attempt and each row's fate (delivered, retry at,
   dead with the reason), the breaker's and limiter's lessons, and the ids learned on the way.

If the process dies anywhere in between, its leases run out and another worker takes the rows:
deliveries are at least once, and the idempotency key (webhook-id, the sent-adjustments ledger)
lets the destination's side make them exactly once.
"""

from __future__ import annotations

import itertools
import os
import random
import socket
import threading
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import Connection

from handoff import logs
from handoff.connectors.writers.base import Delivery, Recipient, WriteResult, truncate
from handoff.delivery import breaker, limits, recipients
from handoff.delivery import metrics as m
from handoff.delivery.destinations import Destination, build_available
from handoff.delivery.outbox import use_destinations
from handoff.delivery.policy import Outcome, next_delay
from handoff.hub import Hub
from handoff.store import outbox as store
from handoff.store.outbox import Finish, OutboxRow

log = logs.get(__name__)


@dataclass
class Round:
    """What one round did (tests and the bench read it)."""

    claimed: int = 0
    sent: int = 0
    delivered: int = 0
    waited: int = 0
    superseded: int = 0
    failed: int = 0
    dead: int = 0


@dataclass
class _Batch:
    destination: Destination
    rows: list[OutboxRow]
    probe: bool = False
    sent_before: set[int] = field(default_factory=set)


class Worker:
    def __init__(
        self,
        hub: Hub,
        destinations: dict[str, Destination] | None = None,
        *,
        owner: str | None = None,
        seed: int | None = None,
        batch_size: int | None = None,
        lease_seconds: float | None = None,
        concurrency: int | None = None,
        lookup: Callable[[Connection, Iterable[int]], dict[int, Recipient]] = recipients.lookup,
    ) -> None:
        cfg = hub.settings.config.delivery
        self.hub = hub
        self.lookup = lookup
        self.disabled: dict[str, str] = {}
        if destinations is None:
            destinations, self.disabled = build_available(hub.settings, hub.env)
        self.destinations = destinations
        for name, reason in self.disabled.items():
            log.error(
                "destination disabled: its deliveries wait until it is configured",
                destination=name,
                reason=reason,
            )
        self._announced = False
        use_destinations(hub.db.url, hub.settings.config.destinations)
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._claims = itertools.count(1)
        self.batch_size = batch_size or cfg.batch_size
        self.lease = timedelta(seconds=lease_seconds or cfg.lease_seconds)
        self.concurrency = concurrency or cfg.concurrency
        self.rng = random.Random(seed)
        self.pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="delivery")
        self.clients = {
            name: httpx.Client(
                timeout=d.config.retry.timeout_seconds,
                limits=httpx.Limits(
                    max_connections=self.concurrency, max_keepalive_connections=self.concurrency
                ),
            )
            for name, d in self.destinations.items()
        }

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        for client in self.clients.values():
            client.close()

    # --- a round ----------------------------------------------------------------------------

    def announce(self) -> None:
        """Record which destinations this worker cannot run (and clear the mark on the ones it
        can), so the CLI, the API and the metrics show them as disabled."""
        with self.hub.db.write() as conn:
            store.mark_disabled(conn, self.disabled, self.destinations, self.hub.clock.now())
        self._announced = True

    def run_once(self) -> Round:
        result = Round()
        if not self._announced:
            self.announce()
        if not self.destinations:
            return result
        now = self.hub.clock.now()
        # Each claim holds its rows under its own lease name: with rounds running at once, a
        # round whose lease ran out must not finish rows another round of this worker took.
        lease = f"{self.owner[:50]}/{next(self._claims)}"
        with self.hub.db.write() as conn:
            rows = store.claim(
                conn,
                owner=lease,
                now=now,
                lease_until=now + self.lease,
                limit=self.batch_size,
                destinations=sorted(self.destinations),
            )
            result.claimed = len(rows)
            if not rows:
                return result
            batches = self._admit(conn, rows, now, result, lease)
        if not batches:
            return result
        people = self._recipients(batches)
        sent_at = self.hub.clock.now()
        outcomes = self._send(batches, people, sent_at)
        done = self.hub.clock.now()
        with self.hub.db.write() as conn:
            self._record(conn, outcomes, people, sent_at, done, result, lease)
        return result

    def drain(self, max_rounds: int = 10_000) -> Round:
        """Rounds until nothing is due now (tests, `deliveries worker --once`)."""
        total = Round()
        for _ in range(max_rounds):
            r = self.run_once()
            for name in total.__dataclass_fields__:
                setattr(total, name, getattr(total, name) + getattr(r, name))
            if r.claimed == 0:
                break
        return total

    # --- 1. admission: supersede, rate limits, breaker ------------------------------------------

    def _admit(
        self, conn: Connection, rows: list[OutboxRow], now: datetime, result: Round, lease: str
    ) -> list[_Batch]:
        finished: list[Finish] = []
        attempts: list[dict[str, Any]] = []
        newest = store.delivered_versions(conn, rows)
        live: list[OutboxRow] = []
        for row in rows:
            if newest.get((row.destination, row.customer_id, row.field), -1) > row.version:
                finished.append(Finish(row.id, "superseded", row.attempts, row.throttled, now))
                attempts.append(
                    self._attempt(row, now, "superseded", error="a newer value was delivered")
                )
                result.superseded += 1
            else:
                live.append(row)
        by_dest: dict[str, list[OutboxRow]] = defaultdict(list)
        for row in live:
            by_dest[row.destination].append(row)
        # a closed breaker in front of an unlimited destination needs no lock: nothing to take
        seen = store.read_states(conn)
        free = {
            n
            for n in by_dest
            if self.destinations[n].limit.model == "none"
            and breaker.state_of(seen.get(n, ({}, {}))[1]) == breaker.CLOSED
        }
        states = store.lock_states(conn, set(by_dest) - free, now)
        states |= {n: ({}, {}) for n in free}
        ts = now.timestamp()
        batches: list[_Batch] = []
        for name, dest_rows in sorted(by_dest.items()):
            dest = self.destinations[name]
            limiter, state = states[name]
            size = max(1, dest.writer.batch_size)
            for start in range(0, len(dest_rows), size):
                chunk = dest_rows[start : start + size]
                was_open = breaker.state_of(state) != breaker.CLOSED
                wait = breaker.admit(dest.breaker, state, ts, self.lease.total_seconds())
                if wait <= 0:
                    wait = limits.take(dest.limit, limiter, ts)
                if wait > 0:
                    until = now + timedelta(seconds=wait)
                    for row in chunk:
                        finished.append(
                            Finish(row.id, "pending", row.attempts, row.throttled + 1, until)
                        )
                    result.waited += len(chunk)
                    m.ATTEMPTS.labels(name, "waited").inc(len(chunk))
                    continue
                batch = _Batch(dest, chunk, probe=was_open)
                if dest.keeps_sent_ledger:
                    for row in chunk:
                        if row.kind == "points" and not store.mark_sent(
                            conn, name, row.idem_key, row.id, now
                        ):
                            batch.sent_before.add(row.id)
                batches.append(batch)
        store.save_states(conn, {n: v for n, v in states.items() if n not in free}, now)
        store.finish(conn, lease, finished, now)
        store.record_attempts(conn, attempts)
        return batches

    # --- 2. who --------------------------------------------------------------------------------

    def _recipients(self, batches: Sequence[_Batch]) -> dict[int, Recipient]:
        wanted = {
            row.customer_id
            for b in batches
            if b.destination.config.vendor != "webhook"
            for row in b.rows
        }
        if not wanted:
            return {}
        with self.hub.db.read() as conn:
            return self.lookup(conn, wanted)

    # --- 3. send -------------------------------------------------------------------------------

    def _send(
        self, batches: Sequence[_Batch], people: dict[int, Recipient], now: datetime
    ) -> list[tuple[_Batch, list[WriteResult]]]:
        futures: list[tuple[_Batch, Future[list[WriteResult]]]] = []
        for b in batches:
            deliveries = [self._delivery(b, row, people.get(row.customer_id)) for row in b.rows]
            client = self.clients[b.destination.name]
            futures.append((b, self.pool.submit(self._write, b, client, deliveries, now)))
        return [(b, f.result()) for b, f in futures]

    @staticmethod
    def _write(
        b: _Batch, client: httpx.Client, deliveries: list[Delivery], now: datetime
    ) -> list[WriteResult]:
        try:
            results = b.destination.writer.write(client, deliveries, now)
        except Exception as exc:  # a writer bug must not lose the rows: retry, say why
            log.exception("writer failed", destination=b.destination.name)
            error = f"writer error: {type(exc).__name__}: {exc}"
            return [WriteResult(Outcome.RETRY, error=error, destination_fault=False)] * len(
                deliveries
            )
        if len(results) != len(deliveries):
            error = "writer returned the wrong number of results"
            return [WriteResult(Outcome.RETRY, error=error, destination_fault=False)] * len(
                deliveries
            )
        return results

    @staticmethod
    def _delivery(b: _Batch, row: OutboxRow, person: Recipient | None) -> Delivery:
        system = b.destination.system
        return Delivery(
            id=row.id,
            kind=row.kind,
            customer_id=row.customer_id,
            field=row.field,
            version=row.version,
            payload=row.payload,
            idem_key=row.idem_key,
            attempt=row.attempts + 1,
            recipient=person,
            external_id=person.external_ids.get(system) if person else None,
            sent_before=row.id in b.sent_before,
        )

    # --- 4. record -----------------------------------------------------------------------------

    def _record(
        self,
        conn: Connection,
        outcomes: list[tuple[_Batch, list[WriteResult]]],
        people: dict[int, Recipient],
        sent_at: datetime,
        now: datetime,
        result: Round,
        lease: str,
    ) -> None:
        finished: list[Finish] = []
        attempts: list[dict[str, Any]] = []
        health: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        pauses: dict[str, float] = {}
        available: dict[str, float] = {}
        confirmed: dict[str, list[str]] = defaultdict(list)
        for b, results in outcomes:
            name = b.destination.name
            for row, r in zip(b.rows, results, strict=True):
                result.sent += 1
                finished.append(self._finish(b.destination, row, r, now, result))
                attempts.append(self._attempt(row, sent_at, r.outcome.value, r))
                m.ATTEMPTS.labels(name, r.outcome.value).inc()
                if r.ok:
                    m.END_TO_END.labels(name).observe(
                        max(0.0, (now - row.change_at).total_seconds())
                    )
                    if row.kind == "points" and b.destination.keeps_sent_ledger:
                        confirmed[name].append(row.idem_key)
                if r.outcome in (Outcome.RETRY, Outcome.TIMEOUT) and r.destination_fault:
                    health[name][1] += 1
                elif r.outcome is not Outcome.THROTTLED:
                    health[name][0] += 1
                if r.outcome is Outcome.THROTTLED:
                    wait = r.retry_after if r.retry_after is not None else 1.0
                    pauses[name] = max(pauses.get(name, 0.0), now.timestamp() + wait)
                if r.available is not None:
                    available[name] = r.available
                if r.external_id:
                    person = people.get(row.customer_id)
                    owner_id = person.customer_id if person else row.customer_id
                    recipients.remember(conn, owner_id, b.destination.system, r.external_id, now)
        store.finish(conn, lease, finished, now)
        store.record_attempts(conn, attempts)
        for name, keys in confirmed.items():
            store.confirm_sent(conn, name, keys, now)
        touched = set(health) | set(pauses) | set(available)
        if touched:
            states = store.lock_states(conn, touched, now)
            ts = now.timestamp()
            for name, (limiter, state) in states.items():
                dest = self.destinations[name]
                ok, failed = health.get(name, [0, 0])
                before = breaker.state_of(state)
                breaker.record(dest.breaker, state, ts, ok, failed)
                if breaker.state_of(state) != before:
                    log.warning("circuit breaker", destination=name, state=breaker.state_of(state))
                if name in pauses:
                    limits.pause(limiter, pauses[name])
                if name in available:
                    limits.observe_available(dest.limit, limiter, ts, available[name])
            store.save_states(conn, states, now)

    def _finish(
        self, dest: Destination, row: OutboxRow, r: WriteResult, now: datetime, result: Round
    ) -> Finish:
        if r.ok:
            result.delivered += 1
            return Finish(
                row.id,
                "delivered",
                row.attempts + 1,
                row.throttled,
                now,
                delivered_at=now,
                last_status=r.status,
            )
        counted = row.attempts + (0 if r.outcome is Outcome.THROTTLED else 1)
        throttled = row.throttled + (1 if r.outcome is Outcome.THROTTLED else 0)
        delay = next_delay(
            r.outcome, counted, dest.schedule, retry_after=r.retry_after, rng=self.rng
        )
        error = r.error or r.outcome.value
        if delay is None:
            result.dead += 1
            reason = (
                error if r.outcome is Outcome.PERMANENT else f"gave up after {counted}: {error}"
            )
            return Finish(
                row.id, "dead", counted, throttled, now, last_status=r.status, last_error=reason
            )
        result.failed += 1
        return Finish(
            row.id,
            "pending",
            counted,
            throttled,
            now + timedelta(seconds=delay),
            last_status=r.status,
            last_error=error,
        )

    def _attempt(
        self,
        row: OutboxRow,
        at: datetime,
        outcome: str,
        r: WriteResult | None = None,
        error: str | None = None,
    ) -> dict[str, Any]:
        return {
            "outbox_id": row.id,
            "destination": row.destination,
            "attempt": row.attempts + 1,
            "at": at,
            "outcome": outcome,
            "status_code": r.status if r else None,
            "latency_ms": r.latency_ms if r else None,
            "response": truncate(r.response) if r else None,
            "error": (r.error if r else error),
            "worker": self.owner,
        }


class DeliveryLoop:
    """Runs a Worker until stopped (the background task of `serve` and `deliveries worker`).

    One round at a time: two rounds at once sharing the sender pool (so senders work while
    the other round claims or records) measured no faster on the shared 2-core machine
    (PostgreSQL 3 workers 780 vs 798/s, SQLite 618 vs 666/s) and took SQLite's write lock
    more often; more processes are the way to more throughput."""

    def __init__(self, worker: Worker, idle_seconds: float, gauges_every: float = 5.0) -> None:
        self.worker = worker
        self.idle_seconds = idle_seconds
        self.gauges_every = gauges_every
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="delivery", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.worker.close()

    def run(self) -> None:
        log.info("delivery worker started", owner=self.worker.owner)
        next_gauges = 0.0
        while not self._stop.is_set():
            try:
                r = self.worker.run_once()
                clock = self.worker.hub.clock.now().timestamp()
                if clock >= next_gauges:
                    with self.worker.hub.db.read() as conn:
                        names = set(self.worker.destinations) | set(self.worker.disabled)
                        m.refresh(conn, clock, sorted(names))
                    next_gauges = clock + self.gauges_every
            except Exception as exc:  # database away: back off and try again, never exit
                log.error("delivery round failed", error=type(exc).__name__)
                self._stop.wait(min(5.0, self.idle_seconds * 10))
                continue
            if r.claimed < self.worker.batch_size:
                self._stop.wait(self.idle_seconds)
        log.info("delivery worker stopped")
