"""Bring a state-store database to the newest schema with Alembic.

Several processes may start on an empty database at once (the Airflow scheduler, a DAG
processor and a few task processes): migrations are serialised, with a transaction-scoped
advisory lock on PostgreSQL and the database write lock (BEGIN IMMEDIATE) on SQLite, so the
second process waits, then finds the schema at head and does nothing.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import Engine

from bcdv.state.db import write_transaction

MIGRATIONS = Path(__file__).parent / "migrations"
# Scoped by schema, so separate bcdv schemas of one database migrate independently.
_PG_LOCK = text("SELECT pg_advisory_xact_lock("
                "hashtext('bcdv-migrate:' || coalesce(current_schema(), '')))")


def upgrade(engine: Engine) -> None:
    """Run every pending migration (idempotent; safe to call on each start)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with write_transaction(engine) as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(_PG_LOCK)
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
