"""identity: lookups by a system's id alone and decisions by record or other customer

`find_customers` looks a system's id up without knowing the system, and a customer's decision
history (`decisions_of`, `cluster_decisions`) names it as the other customer or by record: each
was a scan of the whole table without these indexes.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25 07:08:00
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_identities_external_id", "identities", ["external_id"])
    op.create_index(
        "ix_identity_decisions_other_customer_id", "identity_decisions", ["other_customer_id"]
    )
    op.create_index("ix_identity_decisions_record_id", "identity_decisions", ["record_id"])


def downgrade() -> None:
    op.drop_index("ix_identity_decisions_record_id", table_name="identity_decisions")
    op.drop_index("ix_identity_decisions_other_customer_id", table_name="identity_decisions")
    op.drop_index("ix_identities_external_id", table_name="identities")
