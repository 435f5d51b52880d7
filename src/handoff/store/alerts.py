"""Alert episodes, and the facts the alert rules are evaluated on.

The facts are a handful of aggregate queries over indexed columns (receipts by source and time,
the outbox by status), so evaluating every rule once a minute stays cheap at any volume.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, case, func, select, update

from handoff.domain.alerts import DestinationFacts, Firing, ReviewFacts, SourceFacts
from handoff.store.delivery_tables import delivery_outbox as outbox
from handoff.store.identity_tables import identity_review
from handoff.store.monitor_tables import alerts
from handoff.store.tables import receipts

HISTORY = timedelta(days=7)  # what "usual" means for a source's gap between webhooks
MIN_HISTORY = 10  # fewer webhooks than this in the history: no opinion on silence


@dataclass(frozen=True)
class AlertRow:
    id: int
    rule: str
    key: str
    status: str
    summary: str
    advice: str
    customers: int | None
    since: datetime
    opened_at: datetime
    last_notified_at: datetime | None
    notifications: int
    resolved_at: datetime | None
    acked_at: datetime | None
    acked_by: str | None


_COLUMNS = tuple(getattr(alerts.c, name) for name in AlertRow.__dataclass_fields__)


def source_facts(conn: Connection, roles: Mapping[str, str], now: datetime) -> list[SourceFacts]:
    day = now - timedelta(hours=24)
    window = (
        select(
            receipts.c.source,
            func.count(),
            func.sum(case((receipts.c.status == "quarantined", 1), else_=0)),
        )
        .where(receipts.c.received_at >= day)
        .group_by(receipts.c.source)
    )
    counts = {r[0]: (int(r[1]), int(r[2] or 0)) for r in conn.execute(window)}
    history = (
        select(receipts.c.source, func.count(), func.min(receipts.c.received_at))
        .where(receipts.c.received_at >= now - HISTORY)
        .group_by(receipts.c.source)
    )
    spans = {r[0]: (int(r[1]), r[2]) for r in conn.execute(history)}
    pending = (
        select(receipts.c.source, func.min(receipts.c.received_at))
        .where(receipts.c.status == "pending")
        .group_by(receipts.c.source)
    )
    oldest = dict(conn.execute(pending).all())
    out = []
    for source, role in sorted(roles.items()):
        last = conn.execute(
            select(func.max(receipts.c.received_at)).where(receipts.c.source == source)
        ).scalar_one_or_none()
        n, first = spans.get(source, (0, None))
        gap = None
        if n >= MIN_HISTORY and first is not None and last is not None and last > first:
            gap = (last - first).total_seconds() / (n - 1)
        received, failed = counts.get(source, (0, 0))
        out.append(SourceFacts(source, role, received, failed, last, gap, oldest.get(source)))
    return out


def destination_facts(
    conn: Connection, names: Sequence[str], now: datetime
) -> list[DestinationFacts]:
    day = now - timedelta(hours=24)
    finished = (
        select(
            outbox.c.destination,
            func.sum(case((outbox.c.status.in_(("delivered", "dead")), 1), else_=0)),
            func.sum(case((outbox.c.status == "dead", 1), else_=0)),
        )
        .where(outbox.c.updated_at >= day)
        .group_by(outbox.c.destination)
    )
    counts = {r[0]: (int(r[1] or 0), int(r[2] or 0)) for r in conn.execute(finished)}
    dead = (
        select(
            outbox.c.destination,
            func.min(outbox.c.updated_at),
            func.count(func.distinct(outbox.c.customer_id)),
        )
        .where(outbox.c.status == "dead")
        .group_by(outbox.c.destination)
    )
    dead_by = {r[0]: (r[1], int(r[2])) for r in conn.execute(dead)}
    waiting = (
        select(
            outbox.c.destination,
            func.min(outbox.c.created_at),
            func.count(func.distinct(outbox.c.customer_id)),
        )
        .where(outbox.c.status.in_(("pending", "inflight")))
        .group_by(outbox.c.destination)
    )
    waiting_by = {r[0]: (r[1], int(r[2])) for r in conn.execute(waiting)}
    out = []
    for name in sorted(set(names) | set(counts) | set(dead_by) | set(waiting_by)):
        done, dead_n = counts.get(name, (0, 0))
        oldest_dead, dead_customers = dead_by.get(name, (None, 0))
        oldest_waiting, waiting_customers = waiting_by.get(name, (None, 0))
        out.append(
            DestinationFacts(
                name, done, dead_n, oldest_dead, dead_customers, oldest_waiting, waiting_customers
            )
        )
    return out


def open_alerts(conn: Connection) -> list[AlertRow]:
    stmt = select(*_COLUMNS).where(alerts.c.status == "open").order_by(alerts.c.id)
    return [AlertRow(*r) for r in conn.execute(stmt)]


def list_alerts(
    conn: Connection, *, include_resolved: bool = False, limit: int = 100
) -> list[AlertRow]:
    stmt = select(*_COLUMNS).order_by(alerts.c.id.desc()).limit(limit)
    if not include_resolved:
        stmt = stmt.where(alerts.c.status == "open")
    return [AlertRow(*r) for r in conn.execute(stmt)]


def open_alert(conn: Connection, firing: Firing, now: datetime) -> int:
    return int(
        conn.execute(
            alerts.insert()
            .values(
                rule=firing.rule,
                key=firing.key,
                status="open",
                summary=firing.summary,
                advice=firing.advice,
                customers=firing.customers,
                since=firing.since,
                opened_at=now,
                notifications=0,
            )
            .returning(alerts.c.id)
        ).scalar_one()
    )


def refresh(conn: Connection, alert_id: int, firing: Firing) -> None:
    """The latest wording and counts of an alert that is still firing."""
    conn.execute(
        update(alerts)
        .where(alerts.c.id == alert_id)
        .values(summary=firing.summary, customers=firing.customers)
    )


def notified(conn: Connection, alert_id: int, now: datetime) -> None:
    conn.execute(
        update(alerts)
        .where(alerts.c.id == alert_id)
        .values(last_notified_at=now, notifications=alerts.c.notifications + 1)
    )


def resolve(conn: Connection, alert_id: int, now: datetime) -> None:
    conn.execute(
        update(alerts).where(alerts.c.id == alert_id).values(status="resolved", resolved_at=now)
    )


def ack(conn: Connection, alert_id: int, who: str, now: datetime) -> bool:
    result = conn.execute(
        update(alerts)
        .where(alerts.c.id == alert_id, alerts.c.status == "open", alerts.c.acked_at.is_(None))
        .values(acked_at=now, acked_by=who)
    )
    return bool(result.rowcount)


def review_facts(conn: Connection) -> ReviewFacts:
    """The identity review queue's open items: how many, the oldest, the customers involved."""
    review = identity_review.c
    count, oldest = conn.execute(
        select(func.count(), func.min(review.created_at)).where(review.status == "open")
    ).one()
    sides = (
        select(review.customer_id.label("c"))
        .where(review.status == "open")
        .union(select(review.candidate_customer_id.label("c")).where(review.status == "open"))
    )
    customers = conn.execute(select(func.count()).select_from(sides.subquery())).scalar_one()
    return ReviewFacts(int(count), oldest, int(customers))
