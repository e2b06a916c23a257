"""The run page's reads, in SQL on SQLite and PostgreSQL: a job's per-record outcomes paged
with LIMIT/OFFSET and counted with COUNT, per action and for the failed ones; the jobs of
one Airflow DAG run (a bcdv DAG's run id as it is, an operator's ``<dag>.<task>__<run id>``,
two mapping DAGs scheduled at the same time); and which DAG a job's run id names.

Airflow run ids start with the run type (``manual__``, ``scheduled__``, ``backfill__``:
https://airflow.apache.org/docs/apache-airflow/stable/core-concepts/dag-run.html); DAG and
task ids may hold dots and underscores
(https://airflow.apache.org/docs/apache-airflow/stable/core-concepts/dags.html).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event

from bcdv.service import views
from bcdv.state import StateStore

M = "CUSTOMER"
TO_DV = "to_dataverse"
ACTIONS = ("insert", "update", "update", "skip", "fail")  # 5 per cycle


def _bc(n: int) -> str:
    return f"{n:08x}-0000-4000-8000-00000000000b"


def _dv(n: int) -> str:
    return f"{n:08x}-0000-4000-8000-00000000000d"


def _outcomes(count: int) -> list[dict[str, Any]]:
    rows = []
    for n in range(count):
        action = ACTIONS[n % len(ACTIONS)]
        refused = action == "update" and n % 10 == 2  # an update the API refused
        rows.append({
            "source_id": _bc(n), "target_id": _dv(n) if action != "insert" else None,
            "name": f"Customer {n:03d}", "action": action,
            "result": "failed" if refused or action == "fail" else {
                "insert": "inserted", "update": "modified", "skip": "skipped"}.get(action),
            "message": "refused: too long" if refused or action == "fail" else None,
            "changes": {"phoneNumber": [f"555 {n:04d}", f"556 {n:04d}"]}
            if action == "update" else {}})
    return rows


def test_records_of_a_job_are_paged_and_counted_in_sql(store: StateStore) -> None:
    job = store.start_job(M, TO_DV, mode="full", run_id="manual__2026-03-10T10:00:00+00:00")
    other = store.start_job(M, TO_DV, mode="full", run_id="manual__other")
    store.record_job_records(job, M, TO_DV, _outcomes(230))
    store.record_job_records(other, M, TO_DV, _outcomes(7))

    assert views.count_records_of_job(store, job) == 230
    assert views.record_actions_of_job(store, job) == {
        "fail": 46, "insert": 46, "skip": 46, "update": 92}
    # failed: the 46 planned failures and the 23 updates the API refused
    assert views.count_records_of_job(store, job, failed=True) == 46 + 23

    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(store.engine, "before_cursor_execute", record)
    try:
        pages = [views.record_page(store, job, action="update", number=n, size=25)
                 for n in (1, 2, 3, 4)]
    finally:
        event.remove(store.engine, "before_cursor_execute", record)
    assert [len(p.rows) for p in pages] == [25, 25, 25, 17]
    assert {p.total for p in pages} == {92} and pages[3].pages == 4
    assert (pages[3].first, pages[3].last) == (76, 92)
    names = [r["name"] for p in pages for r in p.rows]
    assert len(set(names)) == 92  # no record on two pages
    assert names == sorted(names)  # plan order
    assert {r["action"] for p in pages for r in p.rows} == {"update"}
    # Paged in the database: every read has LIMIT (and OFFSET past page 1), plus a COUNT.
    reads = [s for s in statements if "bcdv_job_records" in s]
    assert sum("count(" in s.lower() for s in reads) == 4
    assert sum("LIMIT" in s for s in reads) == 4
    assert sum("OFFSET" in s for s in reads) >= 3  # SQLite writes OFFSET 0 too

    first = pages[0].rows[0]
    assert first["changes"] == {"phoneNumber": ["555 0001", "556 0001"]}
    assert (first["bc_id"], first["dv_id"]) == (_bc(1), _dv(1))

    failed = views.record_page(store, job, failed=True, number=3, size=25)
    assert (failed.total, len(failed.rows)) == (69, 19)
    assert all(r["result"] == "failed" and r["message"] for r in failed.rows)

    past = views.record_page(store, job, action="skip", number=99, size=25)
    assert (past.number, len(past.rows), past.total) == (2, 21, 46)  # the last page
    assert views.record_page(store, job, action="uncouple").total == 0


def test_jobs_of_a_dag_run(store: StateStore) -> None:
    tick = "scheduled__2026-03-10T10:00:00+00:00"
    customer = store.start_job(M, TO_DV, mode="modified", run_id=tick)
    vendor = store.start_job("VENDOR", TO_DV, mode="modified", run_id=tick)
    mine = store.start_job(M, TO_DV, mode="modified",
                           run_id=f"my_dag.sync_customer__{tick}")
    store.start_job(M, TO_DV, mode="modified", run_id=f"my_dag_2.sync_customer__{tick}")
    store.start_job(M, TO_DV, mode="modified", run_id=f"my%dag.sync__{tick}")
    dags = {M: "bcdv_sync_customer", "VENDOR": "bcdv_sync_vendor"}

    ids = [j["id"] for j in views.jobs_of_dag_run(store, "bcdv_sync_customer", tick,
                                                  mapping_dags=dags)]
    assert ids == [customer]  # not the vendor DAG's run with the same id
    # A user's DAG: its operators' jobs, and none of my_dag_2's; the "_" of the DAG id is
    # no LIKE wildcard (my%dag's job is not taken).
    assert [j["id"] for j in views.jobs_of_dag_run(store, "my_dag", tick,
                                                   mapping_dags=dags)] == [customer, vendor,
                                                                           mine]
    # A run id the page was given is included as it is.
    assert [j["id"] for j in views.jobs_of_dag_run(
        store, None, "manual__none", also=f"my_dag.sync_customer__{tick}")] == [mine]


def test_which_dag_a_job_run_id_names() -> None:
    dags = {M: "bcdv_sync_customer"}
    assert views.task_run_splits("team.sync.load__manual__2026-03-10") == [
        ("team", "manual__2026-03-10"), ("team", "2026-03-10"),
        ("team.sync", "manual__2026-03-10"),
        ("team.sync", "2026-03-10")]
    assert views.task_run_splits("team.sync.load__manual__x", "team.sync") == [
        ("team.sync", "manual__x"), ("team.sync", "x")]
    assert views.task_run_splits("manual__2026-03-10T10:00:00.5+00:00") == []
    assert views.task_run_splits("cli__abc") == []

    def job(run_id: str, mode: str = "modified") -> dict[str, Any]:
        return {"run_id": run_id, "mode": mode, "mapping": M}

    assert views.dag_of_job(job("manual__x", "record"), dags) == "bcdv_sync_record"
    assert views.dag_of_job(job("scheduled__2026-03-10"), dags) == "bcdv_sync_customer"
    assert views.dag_of_job(job("my_dag.sync__manual__x"), dags) == "my_dag"
    assert views.dag_of_job(job("manual__x"), dags) is None  # the mapping's, full or all
    assert views.dag_of_job(job("a.b.c__manual__x"), dags) is None  # a or a.b
    assert views.dag_of_job(job(""), dags) is None
