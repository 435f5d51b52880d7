"""ledger: inputs, entries, held events, manual flags, the platform's recorded log, projections,
tier/VIP history

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 02:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import handoff.store.types

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _utc() -> handoff.store.types.UtcDateTime:
    return handoff.store.types.UtcDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "ledger_inputs",
        sa.Column("event_id", sa.String(length=40), nullable=False),
        sa.Column("customer_id", sa.BigInteger(), nullable=False),
        sa.Column("type", sa.String(length=40), nullable=False),
        sa.Column("occurred_at", _utc(), nullable=False),
        sa.Column("order_id", sa.String(length=255), nullable=True),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_ledger_inputs")),
    )
    op.create_index("ix_ledger_inputs_customer_id", "ledger_inputs", ["customer_id"])
    op.create_index("ix_ledger_inputs_order_id", "ledger_inputs", ["order_id"])

    op.create_table(
        "ledger_entries",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("customer_id", sa.BigInteger(), nullable=False),
        sa.Column("entry_id", sa.String(length=300), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("pending", sa.Boolean(), nullable=False),
        sa.Column("spend", sa.BigInteger(), nullable=False),
        sa.Column("tier_points", sa.BigInteger(), nullable=False),
        sa.Column("effective_at", _utc(), nullable=False),
        sa.Column("qualifies_at", _utc(), nullable=False),
        sa.Column("rule", sa.Text(), nullable=False),
        sa.Column("event_id", sa.String(length=40), nullable=True),
        sa.Column("order_id", sa.String(length=255), nullable=True),
        sa.Column("written_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_entries")),
        sa.UniqueConstraint(
            "customer_id", "entry_id", name=op.f("uq_ledger_entries_customer_id_entry_id")
        ),
    )
    op.create_index("ix_ledger_entries_effective_at", "ledger_entries", ["effective_at"])
    op.create_index("ix_ledger_entries_event_id", "ledger_entries", ["event_id"])

    op.create_table(
        "ledger_held",
        sa.Column("event_id", sa.String(length=40), nullable=False),
        sa.Column("customer_id", sa.BigInteger(), nullable=True),
        sa.Column("type", sa.String(length=40), nullable=False),
        sa.Column("order_id", sa.String(length=255), nullable=True),
        sa.Column("occurred_at", _utc(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("held_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_ledger_held")),
    )
    op.create_index("ix_ledger_held_customer_id", "ledger_held", ["customer_id"])
    op.create_index("ix_ledger_held_order_id", "ledger_held", ["order_id"])

    op.create_table(
        "ledger_flags",
        sa.Column("event_id", sa.String(length=40), nullable=False),
        sa.Column("customer_id", sa.BigInteger(), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Boolean(), nullable=True),
        sa.Column("effective_at", _utc(), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=True),
        sa.Column("sort_key", sa.String(length=400), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_ledger_flags")),
    )
    op.create_index("ix_ledger_flags_customer_id", "ledger_flags", ["customer_id"])

    op.create_table(
        "ledger_recorded",
        sa.Column("event_id", sa.String(length=40), nullable=False),
        sa.Column("customer_id", sa.BigInteger(), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("member_id", sa.String(length=255), nullable=False),
        sa.Column("delta", sa.BigInteger(), nullable=False),
        sa.Column("balance", sa.BigInteger(), nullable=True),
        sa.Column("pending", sa.BigInteger(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("order_ref", sa.String(length=255), nullable=True),
        sa.Column("occurred_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_ledger_recorded")),
    )
    op.create_index("ix_ledger_recorded_customer_id", "ledger_recorded", ["customer_id"])

    op.create_table(
        "ledger_projections",
        sa.Column("customer_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("balance", sa.BigInteger(), nullable=False),
        sa.Column("pending", sa.BigInteger(), nullable=False),
        sa.Column("lifetime_spend", sa.BigInteger(), nullable=False),
        sa.Column("tier_spend", sa.BigInteger(), nullable=False),
        sa.Column("tier_points", sa.BigInteger(), nullable=False),
        sa.Column("tier", sa.String(length=64), nullable=True),
        sa.Column("is_vip", sa.Boolean(), nullable=False),
        sa.Column("manual_vip", sa.Boolean(), nullable=True),
        sa.Column("recorded_points", sa.BigInteger(), nullable=False),
        sa.Column("recorded_balance", sa.BigInteger(), nullable=True),
        sa.Column("held", sa.Integer(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("as_of", _utc(), nullable=False),
        sa.Column("next_change_at", _utc(), nullable=True),
        sa.Column("inputs_digest", sa.String(length=64), nullable=True),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("customer_id", name=op.f("pk_ledger_projections")),
    )
    op.create_index(
        "ix_ledger_projections_next_change_at", "ledger_projections", ["next_change_at"]
    )

    op.create_table(
        "ledger_attribute_history",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("customer_id", sa.BigInteger(), nullable=False),
        sa.Column("attribute", sa.String(length=32), nullable=False),
        sa.Column("value", sa.String(length=64), nullable=True),
        sa.Column("previous", sa.String(length=64), nullable=True),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("effective_at", _utc(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("cause", sa.String(length=300), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_attribute_history")),
    )
    op.create_index(
        "ix_ledger_attribute_history_customer_id",
        "ledger_attribute_history",
        ["customer_id", "attribute"],
    )


def downgrade() -> None:
    for name in (
        "ledger_attribute_history",
        "ledger_projections",
        "ledger_recorded",
        "ledger_flags",
        "ledger_held",
        "ledger_entries",
        "ledger_inputs",
    ):
        op.drop_table(name)
