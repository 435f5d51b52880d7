"""Shared fixtures: every store-touching test runs on SQLite and on PostgreSQL.

PostgreSQL tests use HANDOFF_TEST_POSTGRES_URL (default: the local server, database
handoff_test_<pid>, created for the session and dropped after it). When no server answers they
are skipped with the reason shown, unless HANDOFF_TEST_REQUIRE_POSTGRES=1 (set by CI), in which
case they fail.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from handoff.config import HandoffConfig, Settings, parse_config
from handoff.hub import Hub
from handoff.store import migrate
from handoff.store.db import Database, normalise_url
from handoff.store.tables import metadata
from handoff.web.server import ServerThread

# A database of its own per test session, so that concurrent runs never see each other's rows.
PG_URL = os.environ.get(
    "HANDOFF_TEST_POSTGRES_URL", f"postgresql://postgres@127.0.0.1:5432/handoff_test_{os.getpid()}"
)
PG_OWNED = "HANDOFF_TEST_POSTGRES_URL" not in os.environ
PG_REQUIRED = os.environ.get("HANDOFF_TEST_REQUIRE_POSTGRES") == "1"


def _pg_reason() -> str | None:
    """None if PostgreSQL is usable, else why not."""
    url = make_url(normalise_url(PG_URL))
    try:
        with socket.create_connection((url.host or "127.0.0.1", url.port or 5432), timeout=2):
            pass
    except OSError as exc:
        return f"PostgreSQL not reachable at {url.host}:{url.port}: {exc}"
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            exists = conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": url.database}
            ).first()
            if not exists:
                conn.exec_driver_sql(f'CREATE DATABASE "{url.database}"')
    except Exception as exc:
        return f"PostgreSQL at {url.host}:{url.port} unusable: {exc}"
    finally:
        admin.dispose()
    return None


_PG_STATE: dict[str, Any] = {}


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Drop the per-session database this run created."""
    if not (PG_OWNED and _PG_STATE.get("reason", "unused") is None):
        return
    url = make_url(normalise_url(PG_URL))
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')
    finally:
        admin.dispose()


def _pg_ready() -> None:
    if "reason" not in _PG_STATE:
        _PG_STATE["reason"] = _pg_reason()
    reason = _PG_STATE["reason"]
    if reason is not None:
        if PG_REQUIRED:
            pytest.fail(f"HANDOFF_TEST_REQUIRE_POSTGRES=1 but {reason}")
        pytest.skip(reason)


def _reset_pg() -> None:
    """Fresh schema once per session, then TRUNCATE between tests (much faster than migrating)."""
    db = Database(PG_URL, pool_size=1)
    try:
        if not _PG_STATE.get("migrated"):
            with db.engine.begin() as conn:
                conn.exec_driver_sql("DROP SCHEMA public CASCADE")
                conn.exec_driver_sql("CREATE SCHEMA public")
            migrate.upgrade(db)
            _PG_STATE["migrated"] = True
        else:
            names = ", ".join(t.name for t in metadata.sorted_tables)
            with db.engine.begin() as conn:
                conn.exec_driver_sql(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
    finally:
        db.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database URL on each backend."""
    if request.param == "postgresql":
        _pg_ready()
        _reset_pg()
        return PG_URL
    url = f"sqlite:///{tmp_path / 'handoff.db'}"
    db = Database(url, pool_size=1)
    migrate.upgrade(db)
    db.dispose()
    return url


@pytest.fixture
def database(db_url: str) -> Iterator[Database]:
    db = Database(db_url)
    yield db
    db.dispose()


SECRETS = {
    "SHOP_SECRET": "shop-secret-1",
    "SHOP_SECRET_OLD": "shop-secret-0",
    "CRM_SECRET": "crm-client-secret",
    "ERP_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "LOYALTY_SECRET": "loyalty-secret",
}

SOURCES: dict[str, Any] = {
    "shop": {
        "vendor": "shopify",
        "role": "pos",
        "secret_env": "SHOP_SECRET",
        "previous_secret_env": "SHOP_SECRET_OLD",
    },
    "crm": {"vendor": "hubspot", "role": "crm", "secret_env": "CRM_SECRET"},
    "erp": {"vendor": "standard", "role": "erp", "secret_env": "ERP_SECRET"},
    "loyalty": {"vendor": "loyaltylion", "role": "loyalty", "secret_env": "LOYALTY_SECRET"},
}


def make_settings(db_url: str, **overrides: Any) -> Settings:
    data: dict[str, Any] = {"sources": SOURCES} | overrides
    config: HandoffConfig = parse_config(data)
    return Settings(config=config, database_url=db_url, config_path=None)


@pytest.fixture
def hub_factory(db_url: str) -> Iterator[Callable[..., Hub]]:
    hubs: list[Hub] = []

    def build(env: Mapping[str, str] | None = None, **overrides: Any) -> Hub:
        hub = Hub.build(make_settings(db_url, **overrides), env=SECRETS if env is None else env)
        hubs.append(hub)
        return hub

    yield build
    for hub in hubs:
        hub.close()


class LiveServer(ServerThread):
    """handoff served by uvicorn on a loopback port, in a thread of the test process."""

    def __init__(self, hub: Hub, *, run_worker: bool = True) -> None:
        super().__init__(hub, run_worker=run_worker)
        self.start()


@pytest.fixture
def live_server(hub_factory: Callable[..., Hub]) -> Iterator[Callable[..., LiveServer]]:
    servers: list[LiveServer] = []

    def start(
        *, run_worker: bool = True, env: Mapping[str, str] | None = None, **overrides: Any
    ) -> LiveServer:
        server = LiveServer(hub_factory(env=env, **overrides), run_worker=run_worker)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
