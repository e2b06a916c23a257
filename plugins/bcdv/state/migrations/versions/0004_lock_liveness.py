"""Run locks know their holder process: its start time, and whether the lock dies with it.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _has_column(table: str, column: str) -> bool:
    inspector = sa.inspect(op.get_bind())
    return any(c["name"] == column for c in inspector.get_columns(table))


def upgrade() -> None:
    """Add bcdv_locks.process_start (seconds since the epoch) and bcdv_locks.bound."""
    with op.batch_alter_table("bcdv_locks") as batch:
        if not _has_column("bcdv_locks", "process_start"):
            batch.add_column(sa.Column("process_start", sa.Float, nullable=True))
        if not _has_column("bcdv_locks", "bound"):
            batch.add_column(sa.Column("bound", sa.Boolean, nullable=False,
                                       server_default=sa.false()))


def downgrade() -> None:
    """Drop the columns."""
    with op.batch_alter_table("bcdv_locks") as batch:
        batch.drop_column("bound")
        batch.drop_column("process_start")
