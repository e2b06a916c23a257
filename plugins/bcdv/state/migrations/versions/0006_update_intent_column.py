"""Update intents get their own column, with a partial index: a pass finds the few
couplings with an update in flight without scanning every coupling's synced values.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

from bcdv.state.schema import UPDATE_INTENT_INDEX

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_KEY = "update_intent"  # where revisions 0005 kept an intent: first key of ``synced``


def upgrade() -> None:
    """Add the column and its index (revision 0001 builds the tables from the current schema
    module, so a new database has both), then move the intents a run left in ``synced``."""
    bind = op.get_bind()
    inspector = sa.inspect(bind)
    if not any(c["name"] == _KEY for c in inspector.get_columns("bcdv_couplings")):
        with op.batch_alter_table("bcdv_couplings") as batch:
            batch.add_column(sa.Column(_KEY, sa.Text, nullable=True))
    UPDATE_INTENT_INDEX.create(bind, checkfirst=True)
    rows = bind.execute(sa.text("SELECT id, synced FROM bcdv_couplings WHERE synced LIKE "
                                "'{\"update_intent\"%'")).all()
    for row_id, synced in rows:
        try:
            doc = json.loads(synced)
        except ValueError:
            continue
        intent = doc.pop(_KEY, None) if isinstance(doc, dict) else None
        if not isinstance(intent, dict):
            continue
        bind.execute(sa.text("UPDATE bcdv_couplings SET update_intent = :intent, "
                             "synced = :synced WHERE id = :id"),
                     {"intent": json.dumps(intent), "synced": json.dumps(doc) if doc else None,
                      "id": row_id})


def downgrade() -> None:
    """Drop the index and the column (intents in flight are forgotten)."""
    UPDATE_INTENT_INDEX.drop(op.get_bind(), checkfirst=True)
    with op.batch_alter_table("bcdv_couplings") as batch:
        batch.drop_column(_KEY)
