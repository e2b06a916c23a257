"""Lookups by key stay lookups as a table grows (the emulators must not get slower per record
with the table's size, or a benchmark measures SQLite's planner, not the sync engine).

A filter on ids (``id eq a or id eq b ...``, as clients read records by id) must be answered
through the key's index. Without statistics SQLite walks the company index of a
company-scoped table, every row of it, for such a filter; the database takes statistics as a
table grows, and an OR of one property's equalities is compiled as ``IN``. No timing here:
the query plan SQLite chooses is the check.
"""

from __future__ import annotations

from pathlib import Path

from bcdv_emulators.bc import schema
from bcdv_emulators.db import Database
from bcdv_emulators.generate import generate
from bcdv_emulators.odata import Compiler, Dialect


def _plan(db: Database, sql: str, params: list[object]) -> str:
    rows = db.conn.execute(f"EXPLAIN QUERY PLAN {sql}", params).fetchall()
    return " | ".join(str(r[3]) for r in rows)


def test_a_filter_on_ids_uses_the_key_index_in_a_grown_company_table(tmp_path: Path) -> None:
    db = Database(tmp_path / "bc.sqlite", schema.ENTITIES, nocase=False,
                  scope_column="_company", indexes=schema.INDEXES)
    generate(db, "business_central", "customers", 5000)
    ids = [r["id"] for r in db.select("customers", limit=40)]
    company = db.select("customers", limit=1)[0]["_company"]
    customers = next(e for e in schema.ENTITIES if e.set_name == "customers")
    # Business Central's dialect, as the service compiles a $filter (bc/service.py _where).
    dialect = Dialect("Microsoft.NAV.customer", customers.by_name.get, case_insensitive=False,
                      or_same_field_only=True)
    where, params = Compiler(dialect).compile(" or ".join(f"id eq {i}" for i in ids))
    assert where.startswith('("id" IN (')  # one IN, not 40 ORs
    sql = (f'SELECT * FROM "customers" WHERE "_company" = ? AND {where} '
           'ORDER BY "id" ASC LIMIT 20001')
    plan = _plan(db, sql, [company, *params])
    assert "(id=?)" in plan, plan  # searched by key, not a scan of the company's rows
    rows = db.select("customers", f'"_company" = ? AND {where}', [company, *params])
    assert sorted(r["id"] for r in rows) == sorted(ids)


def _traced_select(db: Database, *args: object) -> tuple[list[dict[str, object]], str]:
    """Rows of ``db.select(*args)`` and the plan of the page query it ran."""
    seen: list[str] = []
    db.conn.set_trace_callback(seen.append)
    try:
        rows = db.select(*args)  # type: ignore[arg-type]
    finally:
        db.conn.set_trace_callback(None)
    page = next(s for s in reversed(seen) if s.startswith('SELECT * FROM "customers"'))
    return rows, " | ".join(str(r[3]) for r in db.conn.execute(f"EXPLAIN QUERY PLAN {page}"))


def test_a_delta_read_seeks_the_modified_on_index_and_a_full_read_keeps_the_key_order(
        tmp_path: Path) -> None:
    """A page of the records modified after a watermark (an incremental run's read) is found
    through the modified-on index, as SQL Server's histograms would choose for a small
    delta, not by walking every row in key order (SQLite's guess without histograms); a
    range that holds most of the table keeps the key order (no sort of the whole table)."""
    db = Database(tmp_path / "bc.sqlite", schema.ENTITIES, nocase=False,
                  scope_column="_company", indexes=schema.INDEXES)
    generate(db, "business_central", "customers", 5000)
    rows = db.select("customers", order='"id" ASC')
    company, newest = rows[0]["_company"], max(r["lastModifiedDateTime"] for r in rows)
    changed = sorted(str(r["id"]) for r in rows[::100])  # 50 of 5,000
    for rid in changed:
        db.update("customers", "id", rid, {"lastModifiedDateTime": newest + 60_000})
    where = '"_company" = ? AND ("blocked" = ? AND "lastModifiedDateTime" > ?)'
    delta, plan = _traced_select(db, "customers", where, [company, "_x0020_", newest],
                                 '"id" ASC', 20001)
    assert [r["id"] for r in delta] == changed  # every change, in key order
    assert "lastModifiedDateTime>?" in plan and "autoindex" not in plan, plan
    wide, plan = _traced_select(db, "customers", where, [company, "_x0020_", 0], '"id" ASC', 1000)
    assert [r["id"] for r in wide] == [r["id"] for r in rows[:1000]]
    assert "sqlite_autoindex_customers_1" in plan and "TEMP B-TREE" not in plan, plan
