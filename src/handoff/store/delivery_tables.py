"""Tables of the delivery part, on the shared metadata (migration 0004 creates them)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

from handoff.store.tables import metadata
from handoff.store.types import BigId, Json, UtcDateTime

# The transactional outbox: one row per (destination, change), written in the transaction that
# made the change. status: pending → inflight (leased) → delivered | dead | superseded.
delivery_outbox = Table(
    "delivery_outbox",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("destination", String(64), nullable=False),
    Column("kind", String(16), nullable=False),  # attribute | points | profile
    Column("customer_id", BigInteger, nullable=False),
    Column("field", String(100), nullable=False),  # the attribute; "" for points/profile
    Column("version", BigInteger, nullable=False),
    Column("payload", Json, nullable=False),
    Column("idem_key", String(300), nullable=False),  # kept on retry and replay
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),  # failures that counted
    Column("throttled", Integer, nullable=False, server_default="0"),  # waits that did not
    Column("next_attempt_at", UtcDateTime, nullable=False),
    Column("lease_owner", String(64), nullable=True),
    Column("lease_until", UtcDateTime, nullable=True),
    Column("cause", Text, nullable=False),
    Column("change_at", UtcDateTime, nullable=False),  # when the change happened (latency)
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("delivered_at", UtcDateTime, nullable=True),
    Column("last_status", Integer, nullable=True),
    Column("last_error", Text, nullable=True),
    UniqueConstraint("destination", "idem_key"),
    Index("ix_delivery_outbox_due", "status", "next_attempt_at", "id"),
    Index("ix_delivery_outbox_line", "destination", "customer_id", "id"),
    Index("ix_delivery_outbox_field", "destination", "customer_id", "field", "version"),
    Index("ix_delivery_outbox_created_at", "created_at"),
    Index("ix_delivery_outbox_destination_status", "destination", "status"),  # counts, index-only
    Index(
        "ix_delivery_outbox_active",
        "destination",
        "customer_id",
        "id",
        postgresql_where=text("status IN ('pending', 'inflight')"),
        sqlite_where=text("status IN ('pending', 'inflight')"),
    ),
)

# Every attempt: when, what came back, how long it took, what we made of it.
delivery_attempts = Table(
    "delivery_attempts",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("outbox_id", BigInteger, nullable=False, index=True),
    Column("destination", String(64), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("outcome", String(16), nullable=False),  # delivered|retry|dead|throttled|superseded
    Column("status_code", Integer, nullable=True),
    Column("latency_ms", Float, nullable=True),
    Column("response", Text, nullable=True),  # truncated
    Column("error", Text, nullable=True),
    Column("worker", String(64), nullable=True),
)

# Per destination: the shared rate-limiter and circuit-breaker state, so every worker process
# enforces one limit and sees one breaker.
delivery_destinations = Table(
    "delivery_destinations",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("limiter", Json, nullable=False),
    Column("breaker", Json, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

# Points adjustments sent to a vendor with no idempotency field of its own: a key here means an
# earlier attempt may have reached the vendor, so the next one looks before it sends.
delivery_sent_adjustments = Table(
    "delivery_sent_adjustments",
    metadata,
    Column("destination", String(64), primary_key=True),
    Column("idem_key", String(300), primary_key=True),
    Column("outbox_id", BigInteger, nullable=False),
    Column("sent_at", UtcDateTime, nullable=False),
    Column("confirmed_at", UtcDateTime, nullable=True),
)

__all__ = [
    "delivery_attempts",
    "delivery_destinations",
    "delivery_outbox",
    "delivery_sent_adjustments",
    "metadata",
]
