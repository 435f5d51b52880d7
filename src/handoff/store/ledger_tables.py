"""Tables of the ledger part, on the shared metadata (migration 0003 creates them).

The expected ledger keeps what the program rules derive (entries, projections, tier/VIP history)
apart from what it was derived from (the canonical events it consumed, the CRM's manual flags)
and apart from what the loyalty platform says it did (`ledger_recorded`): the two are compared by
reconciliation, never mixed. Customer ids are the golden customers of identity; there is no
foreign key so that the ledger does not depend on the order the parts' migrations land in.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from handoff.store.tables import metadata
from handoff.store.types import BigId, UtcDateTime

# Which canonical events feed which customer's ledger. Rebuilding a customer re-derives its
# entries from exactly these events (read from `events`), so the mapping survives merges.
ledger_inputs = Table(
    "ledger_inputs",
    metadata,
    Column("event_id", String(40), primary_key=True),
    Column("customer_id", BigInteger, nullable=False),
    Column("type", String(40), nullable=False),
    Column("occurred_at", UtcDateTime, nullable=False),
    Column("order_id", String(255), nullable=True),
    Index("ix_ledger_inputs_customer_id", "customer_id"),
    Index("ix_ledger_inputs_order_id", "order_id"),
)

# Ledger lines. `entry_id` is deterministic per customer (earn:<event id>, vest:…, expire:<at>),
# which makes writing idempotent by source event. Vesting and expiry scheduled after "now" are
# stored too: every read filters on effective_at, so a projection is right at any instant.
ledger_entries = Table(
    "ledger_entries",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("customer_id", BigInteger, nullable=False),
    Column("entry_id", String(300), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("points", BigInteger, nullable=False),
    Column("pending", Boolean, nullable=False),
    Column("spend", BigInteger, nullable=False),
    Column("tier_points", BigInteger, nullable=False),
    Column("effective_at", UtcDateTime, nullable=False),
    Column("qualifies_at", UtcDateTime, nullable=False),
    Column("rule", Text, nullable=False),
    Column("event_id", String(40), nullable=True),
    Column("order_id", String(255), nullable=True),
    Column("written_at", UtcDateTime, nullable=False),
    UniqueConstraint("customer_id", "entry_id"),
    Index("ix_ledger_entries_effective_at", "effective_at"),
    Index("ix_ledger_entries_event_id", "event_id"),
)

# Events the ledger cannot place yet: no resolved customer (customer_id null), or a refund or
# cancellation that arrived before its order earned (reason says which). Never dropped.
ledger_held = Table(
    "ledger_held",
    metadata,
    Column("event_id", String(40), primary_key=True),
    Column("customer_id", BigInteger, nullable=True),
    Column("type", String(40), nullable=False),
    Column("order_id", String(255), nullable=True),
    Column("occurred_at", UtcDateTime, nullable=False),
    Column("reason", Text, nullable=False),
    Column("held_at", UtcDateTime, nullable=False),
    Index("ix_ledger_held_customer_id", "customer_id"),
    Index("ix_ledger_held_order_id", "order_id"),
)

# The CRM's manual VIP flags (value null clears the override), for set-based rebuilds.
ledger_flags = Table(
    "ledger_flags",
    metadata,
    Column("event_id", String(40), primary_key=True),
    Column("customer_id", BigInteger, nullable=False),
    Column("source", String(64), nullable=False),
    Column("value", Boolean, nullable=True),
    Column("effective_at", UtcDateTime, nullable=False),
    Column("version", String(64), nullable=True),
    # sorts like VipFlag.order_key (time, numeric-aware version, event id): latest flag in SQL
    Column("sort_key", String(400), nullable=False),
    Index("ix_ledger_flags_customer_id", "customer_id"),
)

# What the loyalty platform itself says it recorded (`loyalty.points.recorded`): its view,
# kept beside the expected entries and never folded into them.
ledger_recorded = Table(
    "ledger_recorded",
    metadata,
    Column("event_id", String(40), primary_key=True),
    Column("customer_id", BigInteger, nullable=False),
    Column("source", String(64), nullable=False),
    Column("member_id", String(255), nullable=False),
    Column("delta", BigInteger, nullable=False),
    Column("balance", BigInteger, nullable=True),
    Column("pending", BigInteger, nullable=True),
    Column("reason", Text, nullable=True),
    Column("order_ref", String(255), nullable=True),
    Column("occurred_at", UtcDateTime, nullable=False),
    Index("ix_ledger_recorded_customer_id", "customer_id"),
)

# One row per customer: the expected state as of `as_of`. `version` strictly increases with every
# tier or VIP change, so delivery can order the pushes; `next_change_at` is when time alone
# (vesting, expiry, a window exit) can change the state, so the stage wakes the customer then.
ledger_projections = Table(
    "ledger_projections",
    metadata,
    Column("customer_id", BigInteger, primary_key=True, autoincrement=False),
    Column("balance", BigInteger, nullable=False),
    Column("pending", BigInteger, nullable=False),
    Column("lifetime_spend", BigInteger, nullable=False),
    Column("tier_spend", BigInteger, nullable=False),  # in the tier window (rolling, year, all)
    Column("tier_points", BigInteger, nullable=False),
    Column("tier", String(64), nullable=True),
    Column("is_vip", Boolean, nullable=False),
    Column("manual_vip", Boolean, nullable=True),
    Column("recorded_points", BigInteger, nullable=False),
    Column("recorded_balance", BigInteger, nullable=True),
    Column("held", Integer, nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("as_of", UtcDateTime, nullable=False),
    Column("next_change_at", UtcDateTime, nullable=True),
    # digest of the input event ids the stored entries were derived from (null: unknown)
    Column("inputs_digest", String(64), nullable=True),
    Column("updated_at", UtcDateTime, nullable=False),
    Index("ix_ledger_projections_next_change_at", "next_change_at"),
)

# Every tier and VIP change the ledger emitted, with the reason: the customer's tier history.
ledger_attribute_history = Table(
    "ledger_attribute_history",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("customer_id", BigInteger, nullable=False),
    Column("attribute", String(32), nullable=False),
    Column("value", String(64), nullable=True),
    Column("previous", String(64), nullable=True),
    Column("version", BigInteger, nullable=False),
    Column("effective_at", UtcDateTime, nullable=False),
    Column("reason", Text, nullable=False),
    Column("cause", String(300), nullable=False),
    Index("ix_ledger_attribute_history_customer_id", "customer_id", "attribute"),
)

__all__ = [
    "ledger_attribute_history",
    "ledger_entries",
    "ledger_flags",
    "ledger_held",
    "ledger_inputs",
    "ledger_projections",
    "ledger_recorded",
    "metadata",
]
