"""Read models for the dashboard's view of each handoff: counts, failures and lag per source.

Every query is bounded by a time window over an indexed column (`receipts.source,received_at`),
so the overview costs the same with ten thousand receipts or ten million.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, case, func, select

from handoff.store.tables import receipts


@dataclass(frozen=True, slots=True)
class SourceHealth:
    source: str
    received: int
    processed: int
    skipped: int
    quarantined: int
    pending: int
    last_received_at: datetime | None

    @property
    def failure_rate(self) -> float:
        """Quarantined share of what arrived in the window (0 when nothing arrived)."""
        return self.quarantined / self.received if self.received else 0.0


def source_health(conn: Connection, sources: list[str], since: datetime) -> list[SourceHealth]:
    """One row per configured source, whether or not anything arrived since `since`."""

    def status_count(name: str) -> Any:
        return func.sum(case((receipts.c.status == name, 1), else_=0))

    stmt = (
        select(
            receipts.c.source,
            func.count(),
            status_count("processed"),
            status_count("skipped"),
            status_count("quarantined"),
            status_count("pending"),
        )
        .where(receipts.c.received_at >= since)
        .group_by(receipts.c.source)
    )
    counts = {row[0]: [int(v or 0) for v in row[1:]] for row in conn.execute(stmt)}
    last = {
        source: conn.execute(
            select(func.max(receipts.c.received_at)).where(receipts.c.source == source)
        ).scalar_one_or_none()
        for source in sources
    }
    out = []
    for source in sources:
        received, processed, skipped, quarantined, pending = counts.get(source, [0] * 5)
        out.append(
            SourceHealth(
                source, received, processed, skipped, quarantined, pending, last.get(source)
            )
        )
    return out


def _hour(conn: Connection) -> Any:
    if conn.dialect.name == "postgresql":
        return func.date_trunc("hour", receipts.c.received_at)
    return func.strftime("%Y-%m-%d %H:00:00", receipts.c.received_at)


def hourly_received(
    conn: Connection, since: datetime, until: datetime
) -> list[tuple[datetime, int]]:
    """Webhooks received per hour in [since, until), zero-filled, for the throughput chart."""
    start = since.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    hours = max(1, int((until - start).total_seconds() // 3600) + 1)
    buckets = [0] * hours
    hour = _hour(conn).label("hour")
    stmt = (
        select(hour, func.count())
        .where(receipts.c.received_at >= start, receipts.c.received_at < until)
        .group_by(hour)
    )
    for moment, n in conn.execute(stmt):
        if isinstance(moment, str):
            moment = datetime.fromisoformat(moment)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        index = int((moment - start).total_seconds() // 3600)
        if 0 <= index < hours:
            buckets[index] += int(n)
    return [(start + timedelta(hours=i), n) for i, n in enumerate(buckets)]
