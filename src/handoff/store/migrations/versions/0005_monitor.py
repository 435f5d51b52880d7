"""monitoring: dashboard users and sessions, alerts

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 03:35:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import handoff.store.types

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("username", sa.String(length=100), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("disabled", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("created_at", handoff.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("last_login_at", handoff.store.types.UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("username", name=op.f("uq_users_username")),
    )
    op.create_table(
        "web_sessions",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", _ID, nullable=False),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("created_at", handoff.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", handoff.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_web_sessions_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_web_sessions")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_web_sessions_token_hash")),
    )
    op.create_index("ix_web_sessions_user_id", "web_sessions", ["user_id"])
    op.create_table(
        "alerts",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("rule", sa.String(length=40), nullable=False),
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("advice", sa.Text(), nullable=False),
        sa.Column("customers", sa.Integer(), nullable=True),
        sa.Column("since", handoff.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("opened_at", handoff.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column(
            "last_notified_at", handoff.store.types.UtcDateTime(timezone=True), nullable=True
        ),
        sa.Column("notifications", sa.Integer(), server_default="0", nullable=False),
        sa.Column("resolved_at", handoff.store.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("acked_at", handoff.store.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("acked_by", sa.String(length=100), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
    )
    op.create_index("ix_alerts_status_rule_key", "alerts", ["status", "rule", "key"])


def downgrade() -> None:
    op.drop_index("ix_alerts_status_rule_key", table_name="alerts")
    op.drop_table("alerts")
    op.drop_index("ix_web_sessions_user_id", table_name="web_sessions")
    op.drop_table("web_sessions")
    op.drop_table("users")
