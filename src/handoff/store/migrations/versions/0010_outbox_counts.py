"""delivery_outbox: counts by destination and status from the index alone

The dashboard's overview and deliveries pages count the outbox by destination and status
(`store.outbox.stats`). Without an index that holds both columns that is a scan of the whole
table (about 470 ms at 2 million rows); with it, an index-only scan (about 155 ms). It still
grows with the outbox's history: docs/dashboard.md says so.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-25 08:56:00
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_delivery_outbox_destination_status", "delivery_outbox", ["destination", "status"]
    )


def downgrade() -> None:
    op.drop_index("ix_delivery_outbox_destination_status", table_name="delivery_outbox")
