# READ FIRST: /work/main/WORKING-AGREEMENT.md (commit rules, shared files, tests, 04:20 UTC deadline).
"""identity: customers, identities, decisions, review queue

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 02:40:00
"""

from __future__ import annotations

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
