"""Group commit: many concurrent webhook requests share one durable transaction.

One commit per request caps a 2-core machine at a few thousand webhooks per second, and most of
that time is spent waiting for fsync. Here each request hands its receipt to a single writer
thread and waits; the writer takes everything that queued up while the previous commit was
flushing, writes it in one INSERT, commits once, and then wakes every waiting request. No request
is answered before its receipt is committed, so every acknowledgement is still durable.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from handoff import logs
from handoff.clock import Clock
from handoff.monitor import metrics
from handoff.store import receipts as receipt_store
from handoff.store.db import Database
from handoff.store.receipts import NewReceipt, Stored

log = logs.get(__name__)


class StoreUnavailable(Exception):
    """The receive log could not be written; the request must be answered with a retryable code."""


@dataclass(slots=True)
class _Job:
    receipt: NewReceipt
    future: asyncio.Future[Stored]
    loop: asyncio.AbstractEventLoop


_STOP = object()


class GroupCommitter:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        batch_max: int = 256,
    ) -> None:
        self._db = db
        self._clock = clock
        self._batch_max = batch_max
        self._queue: queue.SimpleQueue[_Job | object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="receipt-committer", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout)
            self._thread = None

    async def submit(self, receipt: NewReceipt) -> Stored:
        if self._thread is None:
            raise StoreUnavailable("receipt writer is not running")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Stored] = loop.create_future()
        self._queue.put(_Job(receipt, future, loop))
        return await future

    def _run(self) -> None:
        stopping = False
        while not stopping:
            item = self._queue.get()
            if item is _STOP:
                break
            batch: list[_Job] = [item]  # type: ignore[list-item]
            while len(batch) < self._batch_max:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stopping = True  # finish this batch, then leave
                    break
                batch.append(nxt)  # type: ignore[arg-type]
            self._commit(batch)

    def _commit(self, batch: Sequence[_Job]) -> None:
        try:
            with self._db.write() as conn:
                results = receipt_store.insert_batch(
                    conn, [job.receipt for job in batch], self._clock.now()
                )
        except Exception as exc:  # any failure: nothing was committed, every request gets 5xx/429
            log.error("receive log write failed", error=type(exc).__name__, batch=len(batch))
            self._resolve(batch, None, StoreUnavailable(type(exc).__name__))
            return
        metrics.COMMIT_BATCH.observe(len(batch))
        self._resolve(batch, results, None)

    @staticmethod
    def _resolve(
        batch: Sequence[_Job], results: Sequence[Stored] | None, error: Exception | None
    ) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Stored], Stored | None]]]
        by_loop = {}
        for i, job in enumerate(batch):
            outcome = results[i] if results is not None else None
            by_loop.setdefault(job.loop, []).append((job.future, outcome))

        def settle(items: list[tuple[asyncio.Future[Stored], Stored | None]]) -> None:
            for future, outcome in items:
                if future.done():  # the client went away; its receipt is stored regardless
                    continue
                if outcome is None:
                    future.set_exception(error or StoreUnavailable("no result"))
                else:
                    future.set_result(outcome)

        for loop, items in by_loop.items():
            # a closed event loop means nobody is waiting any more
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(settle, items)
