"""events: search by a system's customer id alone

The dashboard's event search takes the customer's id without the system (`customer=C-42`); the
index on (customer_system, customer_external_id) cannot serve that, so at 10 million events the
search was a scan of the table (median 0.9 s, p95 22 s in bench/dashboard_pages.py).

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-25 08:25:00
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_events_customer_external_id", "events", ["customer_external_id"])


def downgrade() -> None:
    op.drop_index("ix_events_customer_external_id", table_name="events")
