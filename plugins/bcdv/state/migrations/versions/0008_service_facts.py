"""What the engine learned about a service (the time of one Dataverse ``$batch`` write
operation), kept between runs.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

from alembic import op

from bcdv.state.schema import service_facts

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the table (revision 0001 builds the tables from the current schema module, so
    a new database has it already)."""
    service_facts.create(op.get_bind(), checkfirst=True)


def downgrade() -> None:
    """Drop it (a run without it probes the service again)."""
    service_facts.drop(op.get_bind(), checkfirst=True)
