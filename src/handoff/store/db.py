"""Engines for SQLite and PostgreSQL, and the two kinds of transaction the hub uses.

SQLite needs care to be safe under concurrency: a deferred transaction that later upgrades to a
write fails with "database is locked" when another writer got there first, so every write
transaction starts with BEGIN IMMEDIATE (it waits for the lock up front, within busy_timeout).
Reads use plain deferred transactions so they never queue behind writers in WAL mode.

Within one process, SQLite writers also take a Python lock first. SQLite's own busy handler
polls with sleeps that grow to 100 ms, so two threads contending through it (the gateway's
committer and the processor) would add tens of milliseconds to every acknowledgement; a lock
hands over the moment the holder commits. Other processes still meet at BEGIN IMMEDIATE.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

WRITE = "handoff_write"


def normalise_url(url: str) -> str:
    """Accept the URLs people paste (`postgresql://…`) and pick the psycopg 3 driver."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")  # an acknowledged webhook survives power loss
        cur.execute("PRAGMA busy_timeout=10000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        if conn.get_execution_options().get(WRITE):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")


class Database:
    """One engine plus the transaction helpers every repository function runs inside."""

    def __init__(self, url: str, *, pool_size: int = 10, echo: bool = False) -> None:
        self.url = normalise_url(url)
        backend = make_url(self.url).get_backend_name()
        self.dialect = backend
        kwargs: dict[str, Any] = {"echo": echo, "future": True}
        if backend == "sqlite":
            database = make_url(self.url).database
            if not database or database == ":memory:":
                raise ValueError("use a file for SQLite (several connections must share it)")
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 10}
            kwargs["poolclass"] = NullPool if pool_size == 0 else None
            if kwargs["poolclass"] is None:
                del kwargs["poolclass"]
        else:
            kwargs["pool_size"] = pool_size
            kwargs["max_overflow"] = pool_size
            # no pre-ping: it costs a round trip per checkout on the hot path; a connection that
            # died with the server fails its one transaction (a retryable 503 at the gateway)
            # and SQLAlchemy invalidates it, so the next checkout gets a fresh one
            kwargs["pool_pre_ping"] = False
        self.engine = create_engine(self.url, **kwargs)
        self._write_lock: threading.Lock | None = None
        if backend == "sqlite":
            _configure_sqlite(self.engine)
            self._write_lock = threading.Lock()

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction: BEGIN IMMEDIATE on SQLite; commits on success."""
        if self._write_lock is None:
            with self.engine.connect() as conn, conn.begin():
                yield conn
            return
        with self._write_lock, self.engine.connect() as conn:
            conn = conn.execution_options(**{WRITE: True})
            with conn.begin():
                yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn, conn.begin():
            yield conn

    def ping(self) -> None:
        with self.read() as conn:
            conn.exec_driver_sql("SELECT 1")

    def dispose(self) -> None:
        self.engine.dispose()
