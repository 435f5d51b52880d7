"""delivery: outbox, attempts, destination state, sent adjustments

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 02:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import handoff.store.types

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), "postgresql")


def _utc() -> handoff.store.types.UtcDateTime:
    return handoff.store.types.UtcDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "delivery_outbox",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("destination", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("customer_id", sa.BigInteger(), nullable=False),
        sa.Column("field", sa.String(length=100), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("payload", JSON, nullable=False),
        sa.Column("idem_key", sa.String(length=300), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("throttled", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_attempt_at", _utc(), nullable=False),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("lease_until", _utc(), nullable=True),
        sa.Column("cause", sa.Text(), nullable=False),
        sa.Column("change_at", _utc(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.Column("delivered_at", _utc(), nullable=True),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery_outbox")),
        sa.UniqueConstraint(
            "destination", "idem_key", name=op.f("uq_delivery_outbox_destination_idem_key")
        ),
    )
    op.create_index(
        "ix_delivery_outbox_due", "delivery_outbox", ["status", "next_attempt_at", "id"]
    )
    op.create_index(
        "ix_delivery_outbox_line", "delivery_outbox", ["destination", "customer_id", "id"]
    )
    op.create_index(
        "ix_delivery_outbox_field",
        "delivery_outbox",
        ["destination", "customer_id", "field", "version"],
    )
    op.create_index("ix_delivery_outbox_created_at", "delivery_outbox", ["created_at"])
    op.create_index(
        "ix_delivery_outbox_active",
        "delivery_outbox",
        ["destination", "customer_id", "id"],
        postgresql_where=sa.text("status IN ('pending', 'inflight')"),
        sqlite_where=sa.text("status IN ('pending', 'inflight')"),
    )

    op.create_table(
        "delivery_attempts",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("outbox_id", sa.BigInteger(), nullable=False),
        sa.Column("destination", sa.String(length=64), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("at", _utc(), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.Column("response", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("worker", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery_attempts")),
    )
    op.create_index(
        op.f("ix_delivery_attempts_outbox_id"), "delivery_attempts", ["outbox_id"], unique=False
    )

    op.create_table(
        "delivery_destinations",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("limiter", JSON, nullable=False),
        sa.Column("breaker", JSON, nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_delivery_destinations")),
    )

    op.create_table(
        "delivery_sent_adjustments",
        sa.Column("destination", sa.String(length=64), nullable=False),
        sa.Column("idem_key", sa.String(length=300), nullable=False),
        sa.Column("outbox_id", sa.BigInteger(), nullable=False),
        sa.Column("sent_at", _utc(), nullable=False),
        sa.Column("confirmed_at", _utc(), nullable=True),
        sa.PrimaryKeyConstraint(
            "destination", "idem_key", name=op.f("pk_delivery_sent_adjustments")
        ),
    )


def downgrade() -> None:
    op.drop_table("delivery_sent_adjustments")
    op.drop_table("delivery_destinations")
    op.drop_index(op.f("ix_delivery_attempts_outbox_id"), table_name="delivery_attempts")
    op.drop_table("delivery_attempts")
    op.drop_index("ix_delivery_outbox_active", table_name="delivery_outbox")
    op.drop_index("ix_delivery_outbox_created_at", table_name="delivery_outbox")
    op.drop_index("ix_delivery_outbox_field", table_name="delivery_outbox")
    op.drop_index("ix_delivery_outbox_line", table_name="delivery_outbox")
    op.drop_index("ix_delivery_outbox_due", table_name="delivery_outbox")
    op.drop_table("delivery_outbox")
