"""Tables of identity resolution, on the shared metadata (migration 0002 creates them).

One golden `customers` row per person; `identities` map every system's id to it; every profile
seen is kept with its blocking keys (the candidate index); every decision is appended, never
changed; uncertain pairs wait in the review queue.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)

from handoff.store.tables import metadata
from handoff.store.types import BigId, Json, UtcDateTime

# The golden record. A merged-away customer keeps its row, pointing at its survivor.
customers = Table(
    "customers",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("merged_into", BigInteger, nullable=True),
    Column("email", String(320), nullable=True),
    Column("phone", String(32), nullable=True),
    Column("first_name", String(200), nullable=True),
    Column("last_name", String(200), nullable=True),
    Column("zip", String(32), nullable=True),
    Column("birth_date", String(10), nullable=True),
    Column("sources", Json, nullable=False),  # field -> the system its value came from
    Column("version", Integer, nullable=False, server_default="1"),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Index("ix_customers_email", "email"),
    Index("ix_customers_phone", "phone"),
    Index("ix_customers_merged_into", "merged_into"),
    # search by name (last, or last and first) without a scan: find_customers, the dashboard
    Index(
        "ix_customers_lower_names", func.lower(text("last_name")), func.lower(text("first_name"))
    ),
)

# Every system's id for a customer: (system, external_id) is one customer, forever.
identities = Table(
    "identities",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("system", String(64), nullable=False),
    Column("external_id", String(255), nullable=False),
    Column("customer_id", BigInteger, nullable=False),
    Column("first_seen_at", UtcDateTime, nullable=False),
    UniqueConstraint("system", "external_id"),
    Index("ix_identities_customer_id", "customer_id"),
    Index("ix_identities_external_id", "external_id"),  # a system's id, system unknown
)

# Every profile seen (raw, as the source sent it), attached to the customer it resolved to.
identity_profiles = Table(
    "identity_profiles",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("record_id", String(100), nullable=False),  # the canonical event id
    Column("customer_id", BigInteger, nullable=False),
    Column("system", String(64), nullable=True),
    Column("external_id", String(255), nullable=True),
    Column("profile", Json, nullable=False),
    Column("seen_at", UtcDateTime, nullable=False),
    UniqueConstraint("record_id"),
    Index("ix_identity_profiles_customer_id", "customer_id"),
)

# The candidate index: each profile under each of its blocking keys.
identity_keys = Table(
    "identity_keys",
    metadata,
    Column("key", String(300), nullable=False),
    Column("profile_id", BigInteger, nullable=False),
    PrimaryKeyConstraint("key", "profile_id"),
    Index("ix_identity_keys_profile_id", "profile_id"),
)

# Append-only: every merge, new customer, review, split and unmerge, with its evidence.
identity_decisions = Table(
    "identity_decisions",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("at", UtcDateTime, nullable=False),
    Column("actor", String(100), nullable=False),  # "pipeline" or the operator
    Column("kind", String(16), nullable=False),  # new | merge | review | split | unmerge
    Column("rule", String(40), nullable=False),
    Column("score", Float, nullable=True),
    Column("record_id", String(100), nullable=True),
    Column("customer_id", BigInteger, nullable=True),
    Column("other_customer_id", BigInteger, nullable=True),
    Column("evidence", Json, nullable=True),
    Index("ix_identity_decisions_customer_id", "customer_id"),
    Index("ix_identity_decisions_other_customer_id", "other_customer_id"),
    Index("ix_identity_decisions_record_id", "record_id"),
)

# Pairs the engine would not decide alone: an operator merges them or keeps them apart.
identity_review = Table(
    "identity_review",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("record_id", String(100), nullable=False),
    Column("customer_id", BigInteger, nullable=False),  # the new profile's customer
    Column("candidate_customer_id", BigInteger, nullable=False),
    Column("candidate_record_id", String(100), nullable=True),
    Column("score", Float, nullable=True),
    Column("rule", String(40), nullable=False),
    Column("reason", Text, nullable=False),
    Column("evidence", Json, nullable=True),
    Column("status", String(16), nullable=False),  # open | merged | split
    Column("created_at", UtcDateTime, nullable=False),
    Column("decided_at", UtcDateTime, nullable=True),
    Column("decided_by", String(100), nullable=True),
    Index("ix_identity_review_status_id", "status", "id"),
)
