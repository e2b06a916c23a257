"""The pages' lists in SQL, on SQLite and PostgreSQL: filters (mapping, status, code, date
window, search by id or name), COUNT and LIMIT/OFFSET paging, and the one coupling search
clause shared by the CLI list, the pages and ``search_couplings``."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import event, update

from bcdv.mapping import load_mappings
from bcdv.service import views
from bcdv.state import Stamp, StateStore
from bcdv.state.pages import ListFilter
from bcdv.state.schema import couplings, jobs, record_errors

M = "CUSTOMER"
TO_DV, TO_BC = "to_dataverse", "to_business_central"
DAY = datetime(2026, 3, 10, tzinfo=timezone.utc)
ROOT = Path(__file__).resolve().parents[2]


def _bc(n: int) -> str:
    return f"{n:08x}-0000-4000-8000-00000000000b"


def _dv(n: int) -> str:
    return f"{n:08x}-0000-4000-8000-00000000000d"


def _synced(n: int) -> str:
    return json.dumps({"business_central": {"displayName": f"Customer {n:03d}",
                                            "phoneNumber": "555 0100"},
                       "dataverse": {"name": f"Account {n:03d}", "telephone1": "555"}})


@pytest.fixture
def seeded(store: StateStore) -> StateStore:
    """45 couplings (every 9th failed, two of them skipped), days apart; 30 errors (a third
    without a code, five resolved); 13 jobs."""
    store.stamp_many(M, TO_DV, "job-1", [
        Stamp(_bc(n), _dv(n), DAY, DAY, "h", "h", _synced(n)) for n in range(45)])
    for n in range(0, 45, 9):
        store.stamp_failure(M, TO_DV, "job-2", bc_id=_bc(n), dv_id=_dv(n),
                            skip=n in (0, 18))
    with store.engine.begin() as conn:
        for n in range(45):
            conn.execute(update(couplings).where(couplings.c.bc_id == _bc(n)).values(
                updated_at=(DAY + timedelta(days=n % 5, minutes=n)).replace(tzinfo=None)))
    store.couple("OTHER", _bc(1), _dv(1))
    job = store.start_job(M, TO_BC, mode="modified", run_id="scheduled__x")
    for n in range(30):
        store.record_error(M, TO_BC, job, source_id=_dv(n), bc_id=None, dv_id=_dv(n),
                           name=f"Account {n:03d}", message=f"refused {n}: too long",
                           code="Internal_FieldLength" if n % 3 else None, field="city")
    store.resolve_errors(M, TO_BC, [_dv(n) for n in range(5)])
    for n in range(12):
        jid = store.start_job(M if n % 4 else "VENDOR", TO_DV, mode="modified",
                              run_id=f"scheduled__2026-03-{n + 1:02d}")
        store.finish_job(jid, status="failed" if n % 3 == 0 else "success",
                         message="boom" if n % 3 == 0 else None)
    return store


def _customer() -> object:
    return load_mappings(ROOT / "include" / "mappings")["CUSTOMER"]


def test_coupling_pages_count_and_filter(seeded: StateStore) -> None:
    mapping = _customer()
    flt = views.coupling_filter(mapping)
    first = views.coupling_page(seeded, mapping, flt, number=1, size=25)
    second = views.coupling_page(seeded, mapping, flt, number=2, size=25)
    assert (first.total, first.pages, len(first.rows), len(second.rows)) == (45, 2, 25, 20)
    assert (second.first, second.last) == (26, 45)
    ids = [r["bc_id"] for r in first.rows + second.rows]
    assert len(set(ids)) == 45  # no row on two pages
    beyond = views.coupling_page(seeded, mapping, flt, number=9, size=25)
    assert beyond.number == 2 and beyond.rows == second.rows

    def total(**kw: object) -> int:
        return views.coupling_page(seeded, mapping, views.coupling_filter(mapping, **kw)).total

    assert total(status="skipped") == 2  # n = 0, 18
    assert total(status="failed") == 3  # n = 9, 27, 36
    assert total(status="coupled") == 40
    assert total(status="nonsense") == 0
    # Names come from the synced values of either side, any case; ids match by prefix.
    assert total(search="customer 01") == 10 and total(search="ACCOUNT 012") == 1
    assert total(search=_dv(7)[:8]) == 1 and total(search="555") == 0
    assert total(search="%") == 0
    # Changed n % 5 days after DAY: a window of two days holds two fifths.
    assert total(since=DAY + timedelta(days=1), until=DAY + timedelta(days=3)) == 18
    skipped = views.list_couplings(seeded, mapping, skipped=True)
    assert {r["bc_id"] for r in skipped} == {_bc(0), _bc(18)}
    assert views.list_couplings(seeded, mapping, search="Customer 044")[0]["name"] == (
        "Customer 044")
    assert [r["bc_id"] for r in seeded.search_couplings(M, _bc(44)[:8])] == [_bc(44)]


def test_error_and_job_pages(seeded: StateStore) -> None:
    def errors(**kw: object) -> views.Page:
        return views.error_page(seeded, ListFilter(mapping=M, **kw), size=25)  # type: ignore[arg-type]

    assert errors().total == 25 and errors(status="resolved").total == 5
    assert errors(status="all").total == 30 and len(errors(status="all").rows) == 25
    assert errors(code="Internal_FieldLength").total == 20 - 3  # open ones only
    assert errors(code="(none)").total == 8
    assert errors(search="account 02").total == 10 and errors(search="refused 7:").total == 1
    assert errors(search=_dv(29)[:8]).rows[0]["name"] == "Account 029"
    assert dict(seeded.error_codes(M)) == {"Internal_FieldLength": 17, "(none)": 8}
    assert len(seeded.error_ids(ListFilter(mapping=M, code="(none)"))) == 8
    assert views.error_page(seeded, ListFilter(mapping="OTHER")).total == 0
    tomorrow = datetime.now(timezone.utc) + timedelta(days=1)
    assert errors(since=tomorrow).total == 0 and errors(until=tomorrow).total == 25

    def log(**kw: object) -> views.Page:
        return views.job_page(seeded, ListFilter(**kw), size=5)  # type: ignore[arg-type]

    assert log().total == 13 and log().pages == 3 and len(log(mapping=M).rows) == 5
    assert log(mapping=M).total == 10 and log(mapping="VENDOR").total == 3
    assert log(status="failed").total == 4 and log(status="running").total == 1
    assert log(search="2026-03-07").total == 1 and log(search="boom").total == 4
    newest = log().rows[0]
    assert newest["run_id"] == "scheduled__2026-03-12"


def test_pages_query_with_limit_and_count(seeded: StateStore) -> None:
    """The database gets LIMIT/OFFSET and COUNT; no query reads a whole table."""
    statements: list[str] = []

    def record(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement.upper())

    event.listen(seeded.engine, "before_cursor_execute", record)
    try:
        mapping = _customer()
        views.coupling_page(seeded, mapping, views.coupling_filter(mapping, search="cust"),
                            number=2, size=25)
        views.error_page(seeded, ListFilter(mapping=M), number=1, size=25)
        views.job_page(seeded, ListFilter(), number=1, size=25)
    finally:
        event.remove(seeded.engine, "before_cursor_execute", record)
    tables = (couplings.name, record_errors.name, jobs.name)
    reads = [s for s in statements if any(t.upper() in s for t in tables)]
    assert reads and all("COUNT(" in s or ("LIMIT" in s and "OFFSET" in s) for s in reads)
    assert sum("COUNT(" in s for s in reads) == 3
