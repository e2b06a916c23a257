"""Couplings remember the mapped values of both sides as of the last sync (field-level merge).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _has_column(table: str, column: str) -> bool:
    inspector = sa.inspect(op.get_bind())
    return any(c["name"] == column for c in inspector.get_columns(table))


def upgrade() -> None:
    """Add bcdv_couplings.synced (JSON text). Revision 0001 builds the table from the current
    schema module, so a new database may already have it."""
    if not _has_column("bcdv_couplings", "synced"):
        with op.batch_alter_table("bcdv_couplings") as batch:
            batch.add_column(sa.Column("synced", sa.Text, nullable=True))


def downgrade() -> None:
    """Drop the column."""
    with op.batch_alter_table("bcdv_couplings") as batch:
        batch.drop_column("synced")
