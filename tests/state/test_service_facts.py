"""What the engine learned about a service is kept between runs (revision 0008): the time of
one Dataverse ``$batch`` write operation, so a new run sizes its parallel update requests at
once instead of probing first (engine/adapters.py ``_batch_parts``)."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, text

from bcdv.state import StateStore
from bcdv.state.db import forget_engine, write_transaction
from bcdv.state.migrate import MIGRATIONS

SERVICE = "dataverse https://org.crm.dynamics.com/api/data/v9.2"


def test_the_last_measure_is_kept_per_service(store: StateStore) -> None:
    assert store.op_seconds(SERVICE) is None
    store.keep_op_seconds(SERVICE, 0.004)
    store.keep_op_seconds(SERVICE, 0.012)  # the last run's measure replaces the one before
    store.keep_op_seconds("dataverse https://other.crm4.dynamics.com/api/data/v9.2", 0.5)
    store.keep_op_seconds(SERVICE, 0.0)  # nothing measured: nothing kept
    assert store.op_seconds(SERVICE) == 0.012


def test_a_database_from_before_0008_gets_the_table(backend_url: str) -> None:
    engine = create_engine(backend_url)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with write_transaction(engine) as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0007")
    with engine.begin() as conn:  # as a database made before 0008 was
        conn.execute(text("DROP TABLE IF EXISTS bcdv_service_facts"))
    engine.dispose()
    forget_engine(backend_url)
    store = StateStore(backend_url)  # migrates to head
    store.keep_op_seconds(SERVICE, 0.003)
    assert store.op_seconds(SERVICE) == 0.003
