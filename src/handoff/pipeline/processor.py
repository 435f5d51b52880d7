"""The processor: receipts in, canonical events out, exactly once.

Each batch runs in one write transaction: claim the oldest pending receipts, map each through
its source's connector (pure, no database), then store every event, run the downstream stages
and mark every receipt — a handful of statements for the whole batch. If that fails (a stage
bug, one poisonous payload) the batch is replayed receipt by receipt, each in its own
savepoint, so one bad receipt is quarantined with the error and never holds up the others. If
the process dies mid-batch the transaction never commits and the receipts are claimed again.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from sqlalchemy import Connection

from handoff import logs
from handoff.connectors.base import NothingToMap, PayloadError, StoredReceipt
from handoff.domain.changes import Change
from handoff.domain.events import CanonicalEvent
from handoff.hub import Hub
from handoff.monitor import metrics
from handoff.store import events as event_store
from handoff.store import receipts as receipt_store
from handoff.store.receipts import Outcome, ReceiptRow

log = logs.get(__name__)


@dataclass
class StageBatch:
    """What the stages of one processing transaction share, passed from one to the next.

    `events` are only the new ones (never seen before), in receipt order, so stages need no
    dedupe of their own. Identity fills `customers` (event id → golden customer id) for the
    stages after it, and `merges` with each (absorbed, survivor) pair of customers it merged
    in this batch, so the ledger can move the absorbed customer's entries; any stage may append
    outbound `changes`, which the delivery outbox stage stores last. Everything commits or rolls
    back together with the receipts' state.
    """

    events: Sequence[CanonicalEvent]
    now: datetime
    customers: dict[str, int] = field(default_factory=dict)
    merges: list[tuple[int, int]] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)


class Stage(Protocol):
    """A downstream step (identity, ledger, delivery) run inside the processing transaction."""

    def handle(self, conn: Connection, batch: StageBatch) -> None: ...


@dataclass
class BatchResult:
    claimed: int = 0
    processed: int = 0
    skipped: int = 0
    quarantined: int = 0
    events: int = 0


@dataclass
class _Mapped:
    row: ReceiptRow
    status: str  # processed | skipped | quarantined
    reason: str | None = None
    events: list[CanonicalEvent] = field(default_factory=list)


@dataclass
class Processor:
    hub: Hub
    stages: list[Stage] = field(default_factory=list)
    batch_size: int = 100

    def run_once(self) -> BatchResult:
        result = BatchResult()
        with self.hub.db.write() as conn:
            claimed = receipt_store.claim_pending(conn, self.batch_size)
            result.claimed = len(claimed)
            mapped = [self._map(row) for row in claimed]
            try:
                with conn.begin_nested():
                    fresh = self._apply(conn, mapped)
            except Exception:
                log.warning("batch failed; isolating its receipts", receipts=len(mapped))
                fresh = []
                for item in mapped:
                    try:
                        with conn.begin_nested():
                            fresh += self._apply(conn, [item])
                    except Exception as exc:  # a stage bug must not stall the queue
                        log.exception("receipt processing failed", receipt_id=item.row.id)
                        item.status, item.events = "quarantined", []
                        item.reason = f"processing error: {type(exc).__name__}: {exc}"
                        self._apply(conn, [item])
        self._count(mapped, fresh, result)
        return result

    def drain(self) -> BatchResult:
        """Process until nothing is pending (tests, the demo, `handoff worker --once`)."""
        total = BatchResult()
        while True:
            r = self.run_once()
            if r.claimed == 0:
                return total
            for name in ("claimed", "processed", "skipped", "quarantined", "events"):
                setattr(total, name, getattr(total, name) + getattr(r, name))

    def _map(self, row: ReceiptRow) -> _Mapped:
        """Connector mapping only: no database, so it can never leave anything half-written."""
        source = self.hub.sources.get(row.source)
        if source is None:
            return _Mapped(row, "quarantined", f"source {row.source!r} is no longer configured")
        stored = StoredReceipt(
            id=row.id,
            source=row.source,
            headers=row.headers,
            body=row.body,
            received_at=row.received_at,
            delivery_id=row.delivery_id,
        )
        try:
            drafts = source.connector.map(stored)
            events = [d.stamp(source=row.source, received_at=row.received_at) for d in drafts]
        except NothingToMap as exc:
            return _Mapped(row, "skipped", exc.reason)
        except PayloadError as exc:
            return _Mapped(row, "quarantined", exc.reason)
        except Exception as exc:  # a mapping bug: keep the receipt, say why, move on
            log.exception("mapping failed", receipt_id=row.id, source=row.source)
            return _Mapped(row, "quarantined", f"mapping error: {type(exc).__name__}: {exc}")
        return _Mapped(row, "processed", events=events)

    def _apply(self, conn: Connection, mapped: Sequence[_Mapped]) -> list[CanonicalEvent]:
        now = self.hub.clock.now()
        pairs = [(m.row.id, e) for m in mapped for e in m.events]
        new_ids = event_store.insert_events(conn, pairs, now)
        fresh = [e for _, e in pairs if e.event_id in new_ids]
        batch = StageBatch(fresh, now)
        for stage in self.stages:
            stage.handle(conn, batch)
        receipt_store.mark_many(
            conn,
            [Outcome(m.row.id, m.status, m.reason, len(m.events)) for m in mapped],
            now=now,
        )
        return fresh

    def _count(
        self, mapped: Sequence[_Mapped], fresh: Sequence[CanonicalEvent], result: BatchResult
    ) -> None:
        """Metrics and counts, only once the transaction has committed."""
        now = self.hub.clock.now()
        for m in mapped:
            setattr(result, m.status, getattr(result, m.status) + 1)
            metrics.PROCESSED.labels(m.row.source, m.status).inc()
            metrics.RECEIVE_TO_PROCESS.labels(m.row.source).observe(
                max(0.0, (now - m.row.received_at).total_seconds())
            )
            if m.status == "quarantined":
                log.warning(
                    "receipt quarantined", receipt_id=m.row.id, source=m.row.source, reason=m.reason
                )
        result.events += len(fresh)
        for e in fresh:
            metrics.EVENTS.labels(e.source, str(e.type)).inc()
            metrics.SOURCE_TO_RECEIPT.labels(e.source).observe(
                max(0.0, (e.received_at - e.occurred_at).total_seconds())
            )
            metrics.SOURCE_TO_PROCESS.labels(e.source).observe(
                max(0.0, (now - e.occurred_at).total_seconds())
            )


class ProcessorLoop:
    """Runs a Processor until stopped.

    When the queue is drained it sleeps `idle_seconds` before looking again rather than waking
    on every commit: receipts then arrive in batches, and on SQLite (one writer at a time) the
    processor does not take the write lock between every pair of gateway commits.
    """

    def __init__(self, processor: Processor, idle_seconds: float) -> None:
        self.processor = processor
        self.idle_seconds = idle_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="processor", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def run(self) -> None:
        log.info("processor started", batch_size=self.processor.batch_size)
        while not self._stop.is_set():
            try:
                result = self.processor.run_once()
            except Exception as exc:  # database away: back off and try again, never exit
                log.error("processor batch failed", error=type(exc).__name__)
                self._stop.wait(min(5.0, self.idle_seconds * 10))
                continue
            if result.claimed < self.processor.batch_size:
                self._stop.wait(self.idle_seconds)
        log.info("processor stopped")
