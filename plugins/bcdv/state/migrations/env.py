"""Alembic environment: runs the bcdv state-store migrations on the given connection."""

from __future__ import annotations

from alembic import context

from bcdv.state.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only via the alembic CLI
    from sqlalchemy import create_engine

    from bcdv.state.db import normalise_url

    url = normalise_url(context.config.get_main_option("sqlalchemy.url") or "")
    connection = create_engine(url).connect()

context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table="bcdv_alembic_version",
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
