"""Prometheus metrics of delivery. Labels are destination names and outcomes, never customers."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy import Connection

from handoff.delivery import breaker
from handoff.store import outbox as store

ATTEMPTS = Counter(
    "handoff_delivery_attempts_total",
    "Delivery attempts by destination and outcome "
    "(delivered, retry, timeout, throttled, permanent, superseded, waited).",
    ["destination", "outcome"],
)
END_TO_END = Histogram(
    "handoff_delivery_end_to_end_seconds",
    "From the change (the event that caused it) to the destination's confirmation.",
    ["destination"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600, 21600, 86400),
)
QUEUE_DEPTH = Gauge(
    "handoff_delivery_queue_depth", "Deliveries pending or in flight.", ["destination"]
)
OLDEST_PENDING = Gauge(
    "handoff_delivery_oldest_pending_seconds",
    "Age of the oldest delivery still pending or in flight.",
    ["destination"],
)
DLQ_DEPTH = Gauge("handoff_delivery_dlq_depth", "Dead-lettered deliveries.", ["destination"])
SUCCESS_RATE = Gauge(
    "handoff_delivery_success_ratio",
    "Share of the destination's deliveries that ended delivered (not dead).",
    ["destination"],
)
BREAKER = Gauge(
    "handoff_delivery_breaker_state",
    "Circuit breaker per destination: 0 closed, 1 half-open, 2 open.",
    ["destination"],
)

DISABLED = Gauge(
    "handoff_delivery_destination_disabled",
    "1 while a worker reports the destination cannot run (a missing token): its deliveries wait.",
    ["destination"],
)


def refresh(conn: Connection, now_ts: float, names: list[str]) -> None:
    """Set the gauges from the database (any process may answer a scrape for all workers)."""
    seen = set()
    for s in store.stats(conn):
        seen.add(s.destination)
        active = s.by_status.get("pending", 0) + s.by_status.get("inflight", 0)
        QUEUE_DEPTH.labels(s.destination).set(active)
        DLQ_DEPTH.labels(s.destination).set(s.by_status.get("dead", 0))
        done = s.by_status.get("delivered", 0) + s.by_status.get("dead", 0)
        SUCCESS_RATE.labels(s.destination).set(
            s.by_status.get("delivered", 0) / done if done else 1.0
        )
        age = now_ts - s.oldest_pending.timestamp() if s.oldest_pending else 0.0
        OLDEST_PENDING.labels(s.destination).set(max(0.0, age))
    for name, (_limiter, state) in store.read_states(conn).items():
        BREAKER.labels(name).set(breaker.STATE_CODES[breaker.state_of(state)])
        DISABLED.labels(name).set(1 if breaker.disabled_reason(state) else 0)
    for name in names:
        if name not in seen:
            QUEUE_DEPTH.labels(name).set(0)
            DLQ_DEPTH.labels(name).set(0)
            OLDEST_PENDING.labels(name).set(0)
