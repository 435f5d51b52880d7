# READ FIRST: /work/main/WORKING-AGREEMENT.md (commit rules, shared files, tests, 04:20 UTC deadline).
"""delivery: outbox, attempts, sent adjustments

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 02:40:00
"""

from __future__ import annotations

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
