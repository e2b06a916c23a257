"""Initial state store: couplings, watermarks, jobs, record errors.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from alembic import op

from bcdv.state.schema import couplings, jobs, record_errors, watermarks

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_TABLES = (couplings, watermarks, jobs, record_errors)


def upgrade() -> None:
    """Create the tables as the schema module defines them at revision 0001."""
    bind = op.get_bind()
    for table in _TABLES:
        table.create(bind, checkfirst=True)


def downgrade() -> None:
    """Drop the tables."""
    bind = op.get_bind()
    for table in reversed(_TABLES):
        table.drop(bind, checkfirst=True)
