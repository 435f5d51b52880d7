"""The schema, once, in SQLAlchemy Core. Alembic migrations must produce exactly this."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

from handoff.store.types import BigId, Blob, Json, UtcDateTime

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
    }
)

# Every webhook that passed its signature check, exactly as it arrived, once per delivery id.
receipts = Table(
    "receipts",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("source", String(64), nullable=False),
    Column("vendor", String(32), nullable=False),
    Column("delivery_id", String(255), nullable=False),
    Column("received_at", UtcDateTime, nullable=False),
    Column("headers", Json, nullable=False),
    Column("body", Blob, nullable=False),
    Column("body_sha256", String(64), nullable=False),
    # pending → processed | skipped | quarantined (→ pending again on retry)
    Column("status", String(16), nullable=False, server_default="pending"),
    Column("status_reason", Text, nullable=True),
    Column("processed_at", UtcDateTime, nullable=True),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("event_count", Integer, nullable=False, server_default="0"),
    UniqueConstraint("source", "delivery_id"),
    Index("ix_receipts_source_received_at", "source", "received_at"),
    Index("ix_receipts_status_id", "status", "id"),
    Index(
        "ix_receipts_pending",
        "id",
        postgresql_where=text("status = 'pending'"),
        sqlite_where=text("status = 'pending'"),
    ),
)

# Why a receipt could not be used, and when it was set right. History is kept on retry.
quarantine = Table(
    "quarantine",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("receipt_id", BigId, ForeignKey("receipts.id"), nullable=False, index=True),
    Column("stage", String(16), nullable=False),  # gateway | processor
    Column("reason", Text, nullable=False),
    Column("quarantined_at", UtcDateTime, nullable=False),
    Column("resolved_at", UtcDateTime, nullable=True),
    Column("resolution", String(32), nullable=True),  # retried
)

# Canonical events (ARCHITECTURE.md §4). event_id is derived from (source, source_event_id, type),
# so a fact that arrives twice under two delivery ids is still stored once.
events = Table(
    "events",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("event_id", String(40), nullable=False, unique=True),
    Column("receipt_id", BigId, ForeignKey("receipts.id"), nullable=False, index=True),
    Column("source", String(64), nullable=False),
    Column("source_event_id", String(255), nullable=False),
    Column("type", String(40), nullable=False),
    Column("occurred_at", UtcDateTime, nullable=False),
    Column("received_at", UtcDateTime, nullable=False),
    Column("processed_at", UtcDateTime, nullable=False),
    Column("customer_system", String(64), nullable=True),
    Column("customer_external_id", String(255), nullable=True),
    Column("order_id", String(255), nullable=True),
    Column("customer", Json, nullable=True),
    Column("body", Json, nullable=False),
    Column("customer_id", BigInteger, nullable=True),  # the golden customer (identity sets it)
    Index("ix_events_type_occurred_at", "type", "occurred_at"),
    Index("ix_events_customer_id", "customer_id"),
    Index("ix_events_customer", "customer_system", "customer_external_id"),
    Index("ix_events_customer_external_id", "customer_external_id"),  # search without the system
    Index("ix_events_order_id", "order_id"),
    Index("ix_events_source_occurred_at", "source", "occurred_at"),
)

# Bearer tokens for /api/*, stored as SHA-256 (they are 256-bit random, so no slow hash needed).
api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("name", String(100), nullable=False),
    Column("role", String(16), nullable=False),  # viewer | operator | admin
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(16), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("last_used_at", UtcDateTime, nullable=True),
    Column("revoked_at", UtcDateTime, nullable=True),
)


# Each part keeps its tables in its own module on this metadata; importing them here makes
# `metadata` (and Alembic's comparison against it) the whole schema.
from handoff.store import (  # noqa: E402
    delivery_tables,
    identity_models_tables,
    identity_tables,
    ledger_tables,
    monitor_tables,
)

__all__ = [
    "delivery_tables",
    "identity_models_tables",
    "identity_tables",
    "ledger_tables",
    "metadata",
    "monitor_tables",
]
