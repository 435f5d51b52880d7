"""The processor: receipts in, canonical events out, exactly once.

Each batch runs in one write transaction: claim the oldest pending receipts, map each through
its source's connector, store the events, run the downstream stages, mark the receipt. A receipt
that cannot be mapped is quarantined inside its own savepoint, so one bad payload never holds up
or rolls back the others. If the process dies mid-batch the transaction never commits and the
receipts are simply claimed again.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from sqlalchemy import Connection

from handoff import logs
from handoff.connectors.base import NothingToMap, PayloadError, StoredReceipt
from handoff.domain.events import CanonicalEvent
from handoff.hub import Hub
from handoff.monitor import metrics
from handoff.store import events as event_store
from handoff.store import receipts as receipt_store
from handoff.store.receipts import ReceiptRow

log = logs.get(__name__)


class Stage(Protocol):
    """A downstream step (identity, ledger, delivery) run inside the processing transaction.

    It receives only the events that are new (never seen before), so stages need no dedupe of
    their own; anything it writes commits or rolls back together with the receipt's state.
    """

    def handle(self, conn: Connection, events: Sequence[CanonicalEvent]) -> None: ...


@dataclass
class BatchResult:
    claimed: int = 0
    processed: int = 0
    skipped: int = 0
    quarantined: int = 0
    events: int = 0


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
            for row in claimed:
                self._process_one(conn, row, result)
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

    def _process_one(self, conn: Connection, row: ReceiptRow, result: BatchResult) -> None:
        now = self.hub.clock.now()
        source = self.hub.sources.get(row.source)
        if source is None:
            reason = f"source {row.source!r} is no longer configured"
            receipt_store.quarantine_receipt(
                conn, row.id, stage="processor", reason=reason, now=now
            )
            result.quarantined += 1
            metrics.PROCESSED.labels(row.source, "quarantined").inc()
            return
        stored = StoredReceipt(
            id=row.id,
            source=row.source,
            headers=row.headers,
            body=row.body,
            received_at=row.received_at,
            delivery_id=row.delivery_id,
        )
        status = "processed"
        try:
            with conn.begin_nested():
                try:
                    drafts = source.connector.map(stored)
                except NothingToMap as exc:
                    receipt_store.mark(conn, row.id, "skipped", now=now, reason=exc.reason)
                    status = "skipped"
                else:
                    events = [
                        d.stamp(source=row.source, received_at=row.received_at) for d in drafts
                    ]
                    new_ids = set(event_store.insert_events(conn, row.id, events, now))
                    fresh = [e for e in events if e.event_id in new_ids]
                    for stage in self.stages:
                        stage.handle(conn, fresh)
                    receipt_store.mark(conn, row.id, "processed", now=now, event_count=len(events))
                    result.events += len(fresh)
                    for e in fresh:
                        metrics.EVENTS.labels(row.source, str(e.type)).inc()
        except PayloadError as exc:
            self._quarantine(conn, row, exc.reason, result)
            return
        except Exception as exc:  # a mapping or stage bug must not stall the queue
            log.exception("receipt processing failed", receipt_id=row.id, source=row.source)
            self._quarantine(conn, row, f"processing error: {type(exc).__name__}: {exc}", result)
            return
        if status == "skipped":
            result.skipped += 1
        else:
            result.processed += 1
        metrics.PROCESSED.labels(row.source, status).inc()
        metrics.RECEIVE_TO_PROCESS.labels(row.source).observe(
            max(0.0, (now - row.received_at).total_seconds())
        )

    def _quarantine(
        self, conn: Connection, row: ReceiptRow, reason: str, result: BatchResult
    ) -> None:
        now = self.hub.clock.now()
        receipt_store.quarantine_receipt(conn, row.id, stage="processor", reason=reason, now=now)
        result.quarantined += 1
        metrics.PROCESSED.labels(row.source, "quarantined").inc()
        log.warning("receipt quarantined", receipt_id=row.id, source=row.source, reason=reason)


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
