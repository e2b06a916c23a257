"""Run locks per mapping (bcdv_locks).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create bcdv_locks (columns spelled out: later schema edits must not change 0002)."""
    op.create_table(
        "bcdv_locks",
        sa.Column("mapping", sa.String(100), primary_key=True),
        sa.Column("owner", sa.String(250), nullable=False),
        sa.Column("acquired_at", sa.DateTime, nullable=False),
        sa.Column("renewed_at", sa.DateTime, nullable=False),
        sa.Column("host", sa.String(250), nullable=True),
        sa.Column("pid", sa.Integer, nullable=True),
    )


def downgrade() -> None:
    """Drop bcdv_locks."""
    op.drop_table("bcdv_locks")
