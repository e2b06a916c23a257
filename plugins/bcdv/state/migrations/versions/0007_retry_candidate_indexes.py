"""Partial indexes of the couplings a pass's retry set is drawn from (one per direction), so
that set is found without reading every coupling of a mapping.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

from alembic import op

from bcdv.state.schema import RETRY_INDEXES

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the indexes (revision 0001 builds the tables from the current schema module,
    so a new database has them already)."""
    for index in RETRY_INDEXES:
        index.create(op.get_bind(), checkfirst=True)


def downgrade() -> None:
    """Drop them."""
    for index in RETRY_INDEXES:
        index.drop(op.get_bind(), checkfirst=True)
