"""identity: versioned trained models

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25 06:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import handoff.store.types

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "identity_models",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("version", sa.String(length=40), nullable=False),
        sa.Column("created_at", handoff.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("model", _JSON, nullable=False),
        sa.Column("report", _JSON, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_identity_models")),
        sa.UniqueConstraint("version", name=op.f("uq_identity_models_version")),
    )


def downgrade() -> None:
    op.drop_table("identity_models")
