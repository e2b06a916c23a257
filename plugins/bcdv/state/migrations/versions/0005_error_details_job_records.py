"""Error rows say what and why (name, code, field, value, caused_by); jobs keep their records.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bcdv.state.schema import job_records

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_ERROR_COLUMNS = (
    ("name", sa.String(250)),
    ("code", sa.String(100)),
    ("field", sa.String(250)),
    ("value", sa.Text),
    ("caused_by", sa.Integer),
)


def _has_column(table: str, column: str) -> bool:
    inspector = sa.inspect(op.get_bind())
    return any(c["name"] == column for c in inspector.get_columns(table))


def upgrade() -> None:
    """Add the bcdv_record_errors columns and create bcdv_job_records. Revision 0001 builds
    the tables from the current schema module, so a new database may already have them."""
    missing = [(n, t) for n, t in _ERROR_COLUMNS if not _has_column("bcdv_record_errors", n)]
    if missing:
        with op.batch_alter_table("bcdv_record_errors") as batch:
            for name, kind in missing:
                batch.add_column(sa.Column(name, kind, nullable=True))
    job_records.create(op.get_bind(), checkfirst=True)


def downgrade() -> None:
    """Drop the table and the columns."""
    job_records.drop(op.get_bind(), checkfirst=True)
    with op.batch_alter_table("bcdv_record_errors") as batch:
        for name, _ in reversed(_ERROR_COLUMNS):
            batch.drop_column(name)
