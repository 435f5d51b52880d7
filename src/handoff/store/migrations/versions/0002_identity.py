"""identity: customers, identities, profiles, blocking keys, decisions, review queue

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 03:55:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import handoff.store.types

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _time(name: str, nullable: bool = False) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, handoff.store.types.UtcDateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "customers",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("merged_into", sa.BigInteger(), nullable=True),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("phone", sa.String(length=32), nullable=True),
        sa.Column("first_name", sa.String(length=200), nullable=True),
        sa.Column("last_name", sa.String(length=200), nullable=True),
        sa.Column("zip", sa.String(length=32), nullable=True),
        sa.Column("birth_date", sa.String(length=10), nullable=True),
        sa.Column("sources", _JSON, nullable=False),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        _time("created_at"),
        _time("updated_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customers")),
    )
    op.create_index("ix_customers_email", "customers", ["email"])
    op.create_index("ix_customers_phone", "customers", ["phone"])
    op.create_index("ix_customers_merged_into", "customers", ["merged_into"])
    op.create_table(
        "identities",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("system", sa.String(length=64), nullable=False),
        sa.Column("external_id", sa.String(length=255), nullable=False),
        sa.Column("customer_id", sa.BigInteger(), nullable=False),
        _time("first_seen_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_identities")),
        sa.UniqueConstraint("system", "external_id", name=op.f("uq_identities_system_external_id")),
    )
    op.create_index("ix_identities_customer_id", "identities", ["customer_id"])
    op.create_table(
        "identity_profiles",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("record_id", sa.String(length=100), nullable=False),
        sa.Column("customer_id", sa.BigInteger(), nullable=False),
        sa.Column("system", sa.String(length=64), nullable=True),
        sa.Column("external_id", sa.String(length=255), nullable=True),
        sa.Column("profile", _JSON, nullable=False),
        _time("seen_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_identity_profiles")),
        sa.UniqueConstraint("record_id", name=op.f("uq_identity_profiles_record_id")),
    )
    op.create_index("ix_identity_profiles_customer_id", "identity_profiles", ["customer_id"])
    op.create_table(
        "identity_keys",
        sa.Column("key", sa.String(length=300), nullable=False),
        sa.Column("profile_id", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("key", "profile_id", name=op.f("pk_identity_keys")),
    )
    op.create_index("ix_identity_keys_profile_id", "identity_keys", ["profile_id"])
    op.create_table(
        "identity_decisions",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        _time("at"),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("rule", sa.String(length=40), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("record_id", sa.String(length=100), nullable=True),
        sa.Column("customer_id", sa.BigInteger(), nullable=True),
        sa.Column("other_customer_id", sa.BigInteger(), nullable=True),
        sa.Column("evidence", _JSON, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_identity_decisions")),
    )
    op.create_index("ix_identity_decisions_customer_id", "identity_decisions", ["customer_id"])
    op.create_table(
        "identity_review",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("record_id", sa.String(length=100), nullable=False),
        sa.Column("customer_id", sa.BigInteger(), nullable=False),
        sa.Column("candidate_customer_id", sa.BigInteger(), nullable=False),
        sa.Column("candidate_record_id", sa.String(length=100), nullable=True),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("rule", sa.String(length=40), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("evidence", _JSON, nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        _time("created_at"),
        _time("decided_at", nullable=True),
        sa.Column("decided_by", sa.String(length=100), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_identity_review")),
    )
    op.create_index("ix_identity_review_status_id", "identity_review", ["status", "id"])
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("customer_id", sa.BigInteger(), nullable=True))
        batch.create_index("ix_events_customer_id", ["customer_id"])


def downgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.drop_index("ix_events_customer_id")
        batch.drop_column("customer_id")
    for name in (
        "identity_review",
        "identity_decisions",
        "identity_keys",
        "identity_profiles",
        "identities",
        "customers",
    ):
        op.drop_table(name)
