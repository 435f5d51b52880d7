"""identity: customers found by name (case-insensitive), an index for the dashboard's search

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25 07:05:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_customers_lower_names",
        "customers",
        [sa.text("lower(last_name)"), sa.text("lower(first_name)")],
    )


def downgrade() -> None:
    op.drop_index("ix_customers_lower_names", table_name="customers")
