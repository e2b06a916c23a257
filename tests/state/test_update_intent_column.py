"""Update intents live in their own column with a partial index (revision 0006): a pass finds
the couplings with an update in flight without reading every coupling's synced values, and
a database upgraded with intents left in ``synced`` (revisions before 0006) keeps them."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from alembic import command
from alembic.config import Config
from sqlalchemy import insert, select, text

from bcdv.state import StateStore
from bcdv.state.db import forget_engine, write_transaction
from bcdv.state.migrate import MIGRATIONS
from bcdv.state.schema import couplings
from bcdv.state.store import Stamp

NOW = datetime(2026, 12, 1, tzinfo=timezone.utc)


def _to(url: str, revision: str) -> None:
    from sqlalchemy import create_engine

    engine = create_engine(url)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with write_transaction(engine) as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
    engine.dispose()


def test_an_intent_left_in_synced_before_0006_is_moved_to_its_column(backend_url: str) -> None:
    _to(backend_url, "0005")
    intent = {"direction": "to_dataverse", "sent": {"name": "Ours"}, "slack_ms": 0,
              "source": {"values": {"displayName": "ours"}, "modified": None, "hash": "h"}}
    from sqlalchemy import create_engine

    engine = create_engine(backend_url)
    with engine.begin() as conn:
        if conn.dialect.name == "sqlite":  # as a database made before 0006 was
            conn.execute(text("DROP INDEX IF EXISTS ix_bcdv_couplings_update_intent"))
            conn.execute(text("ALTER TABLE bcdv_couplings DROP COLUMN update_intent"))
        conn.execute(text(
            "INSERT INTO bcdv_couplings (mapping, bc_id, dv_id, synced, to_dv_result, "
            "to_bc_result, skipped, pending, created_at, updated_at) VALUES ('CUSTOMER', "
            "'b1', 'd1', :synced, 'success', '', false, false, :now, :now)"),
            {"synced": json.dumps({"update_intent": intent,
                                   "dataverse": {"name": "before"}}), "now": NOW})
    engine.dispose()
    forget_engine(backend_url)
    store = StateStore(backend_url)  # migrates to head
    [found] = store.update_intents("CUSTOMER")
    assert found["intent"] == intent
    assert found["synced"] == {"dataverse": {"name": "before"}}


def test_a_stamp_clears_the_intent_and_a_drop_forgets_it(store: StateStore) -> None:
    with store.engine.begin() as conn:
        for n in (1, 2):
            conn.execute(insert(couplings).values(
                mapping="CUSTOMER", bc_id=f"b{n}", dv_id=f"d{n}", to_dv_result="success",
                to_bc_result="", skipped=False, pending=False, created_at=NOW,
                updated_at=NOW))
    sent = {"direction": "to_dataverse", "sent": {"name": "x"}}
    store.record_update_intents("CUSTOMER", "bc_id", {"b1": sent, "b2": sent})
    assert sorted(r["bc_id"] for r in store.update_intents("CUSTOMER")) == ["b1", "b2"]
    assert store.update_intents("VENDOR") == []
    store.stamp_many("CUSTOMER", "to_dataverse", "job", [
        Stamp("b1", "d1", NOW, NOW, "h1", "h2", json.dumps({"dataverse": {"name": "x"}}))])
    [left] = store.update_intents("CUSTOMER")
    assert left["bc_id"] == "b2"
    store.drop_update_intents("CUSTOMER", [int(left["id"])])
    assert store.update_intents("CUSTOMER") == []
    with store.engine.connect() as conn:
        synced = dict(conn.execute(select(couplings.c.bc_id, couplings.c.synced)).all())
    assert json.loads(synced["b1"]) == {"dataverse": {"name": "x"}}  # the intent never there
    assert synced["b2"] is None


def test_the_retry_set_is_read_through_its_partial_index(tmp_path) -> None:
    """The retry set's query states its partial index's condition (schema.RETRY_CANDIDATES),
    so SQLite reads the few candidates through the index instead of every coupling (0.15 s
    at 100,000 couplings, a seventh of an incremental run, before revision 0007)."""
    from bcdv.engine import retry_set

    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    with store.engine.begin() as conn:
        conn.execute(insert(couplings), [
            {"mapping": "CUSTOMER", "bc_id": f"b{n}", "dv_id": f"d{n}", "bc_hash": "h",
             "dv_hash": None if n == 2 else "h", "to_dv_result": "failure" if n == 1
             else "success", "to_bc_result": "success", "skipped": False,
             "pending": n == 3, "created_at": NOW, "updated_at": NOW} for n in range(5)])
    assert retry_set.retry_source_ids(store, "CUSTOMER", "to_dataverse",
                                      failed_creates=False) == {"b1", "b3"}
    assert retry_set.retry_source_ids(store, "CUSTOMER", "to_business_central",
                                      failed_creates=False) == {"d2", "d3"}
    for direction, index in (("to_dataverse", "ix_bcdv_couplings_retry_dv"),
                             ("to_business_central", "ix_bcdv_couplings_retry_bc")):
        query = retry_set.candidates_query("CUSTOMER", direction)
        compiled = query.compile(store.engine)
        with store.engine.connect() as conn:
            plan = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + compiled.string,
                                        tuple(compiled.params[k] for k in
                                              compiled.positiontup or ())).all()
        assert any(f"USING INDEX {index}" in str(row[-1]) for row in plan), plan
