"""`enqueue`: the transactional outbox's front door.

Whoever changes something other systems must hear about (the pipeline's stages,
reconciliation's apply, identity's unmerge) calls `enqueue` in the same transaction, so the
change and its deliveries commit or vanish together: nothing is ever changed but not sent,
or sent but not changed.

Routing needs the `[destinations]` configuration; a process registers it once per database
(`use_destinations`, done by the outbox stage, the web part and the worker command). A process
that never did falls back to the settings on disk (`handoff.toml` / $HANDOFF_CONFIG).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from datetime import datetime

from sqlalchemy import Connection

from handoff.config import DestinationConfig, load_settings
from handoff.delivery.destinations import wants
from handoff.domain.changes import AttributeChange, Change, PointsAdjustment, ProfileRelay
from handoff.store import outbox as store
from handoff.store.outbox import NewRow

_lock = threading.Lock()
_routes: dict[str, Mapping[str, DestinationConfig]] = {}
_last: list[Mapping[str, DestinationConfig]] = []


def use_destinations(database_url: str, destinations: Mapping[str, DestinationConfig]) -> None:
    """Route changes written to this database by these destinations."""
    with _lock:
        _routes[database_url] = dict(destinations)
        _last[:] = [dict(destinations)]


def _destinations(conn: Connection) -> Mapping[str, DestinationConfig]:
    url = conn.engine.url.render_as_string(hide_password=False)
    with _lock:
        if url in _routes:
            return _routes[url]
        if _last:
            return _last[0]
    return load_settings().config.destinations


def rows_for(
    changes: Sequence[Change], destinations: Mapping[str, DestinationConfig]
) -> list[NewRow]:
    rows: list[NewRow] = []
    for change in changes:
        for name, cfg in sorted(destinations.items()):
            if isinstance(change, AttributeChange):
                if wants(cfg, "attribute", change.attribute):
                    rows.append(
                        NewRow(
                            name,
                            "attribute",
                            change.customer_id,
                            change.attribute,
                            change.version,
                            {"value": change.value},
                            f"attr:{change.customer_id}:{change.attribute}:v{change.version}",
                            change.cause,
                            change.at,
                        )
                    )
            elif isinstance(change, PointsAdjustment):
                if wants(cfg, "points"):
                    rows.append(
                        NewRow(
                            name,
                            "points",
                            change.customer_id,
                            "",
                            0,
                            {"delta": change.delta, "reason": change.reason},
                            change.key,
                            change.cause,
                            change.at,
                        )
                    )
            elif isinstance(change, ProfileRelay) and wants(cfg, "profile"):
                rows.append(
                    NewRow(
                        name,
                        "profile",
                        change.customer_id,
                        "profile",
                        change.version,
                        {"fields": dict(change.fields)},
                        f"profile:{change.customer_id}:v{change.version}",
                        change.cause,
                        change.at,
                    )
                )
    return rows


def enqueue(
    conn: Connection,
    changes: Sequence[Change],
    now: datetime,
    *,
    destinations: Mapping[str, DestinationConfig] | None = None,
) -> int:
    """Store `changes` as outbox rows for every destination whose flow wants them, in the
    caller's transaction; returns the rows written (coalesced ones included)."""
    if not changes:
        return 0
    routes = _destinations(conn) if destinations is None else destinations
    return store.add(conn, rows_for(changes, routes), now)
