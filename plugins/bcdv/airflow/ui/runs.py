"""The run page's data: which Airflow DAG run a run id names, its state and tasks (Airflow's
REST API, as the signed-in user), its jobs (passes) and the per-record outcomes of one job,
filtered by action and paged in SQL.

A run id reaches the page in one of three shapes: an Airflow run id of a bcdv DAG (the jobs
carry it as it is), an operator's job run id in a user's DAG (``<dag_id>.<task_id>__<Airflow
run id>``, :func:`bcdv.airflow.operators.run_lock_owner`), or a run id that is no Airflow
run (the CLI's, a page action's). The DAG comes from ``dag_id`` when given, else from the
jobs, else from Airflow (the runs of any readable DAG with that id).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from bcdv.airflow.ui import airflow_api
from bcdv.service import views

TERMINAL = {"success", "failed"}
ERRORS_SHOWN = 20  # per job; the job's "fail" records list them all


@dataclass
class RunView:
    """What the run page shows."""

    run_id: str
    dag_id: str | None
    run: dict[str, Any]
    tasks: list[dict[str, Any]] = field(default_factory=list)
    jobs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def airflow_run_id(self) -> str:
        """The Airflow run id (the page's run id when Airflow does not know it)."""
        return str(self.run.get("dag_run_id") or self.run_id)

    @property
    def done(self) -> bool:
        """Whether the run has ended (or is not one Airflow knows): the page stops
        refreshing."""
        return self.run.get("state") in TERMINAL or self.run.get("state") == "unknown"


def locate(request: Request, token: str, store: Any, run_id: str, dag_id: str | None,
           mapping_dags: dict[str, str]) -> RunView:
    """The DAG run ``run_id`` names (see the module's docstring), its tasks and jobs."""
    readings: list[tuple[str, str]] = []
    if dag_id:
        readings = [*views.task_run_splits(run_id, dag_id), (dag_id, run_id)]
    else:
        readings = views.task_run_splits(run_id)
        for job in views.jobs_of_run(store, run_id):
            dag = views.dag_of_job(job, mapping_dags)
            if dag and (dag, run_id) not in readings:
                readings.append((dag, run_id))
    run: dict[str, Any] | None = None
    error: str | None = None
    try:
        for dag, airflow_run_id in readings:
            run = _get(request, token, dag, airflow_run_id)
            if run is not None:
                break
        if run is None and not dag_id:
            run = _search(request, token, store, run_id, mapping_dags)
    except airflow_api.AirflowApiError as exc:
        run, error = None, str(exc)
    if run is None:
        return _not_in_airflow(store, run_id, dag_id, error)
    dag = str(run.get("dag_id") or dag_id or "")
    view = RunView(run_id, dag, run, jobs=views.jobs_of_dag_run(
        store, dag, str(run["dag_run_id"]), mapping_dags=mapping_dags, also=run_id))
    try:
        view.tasks = airflow_api.dag_run_tasks(request, token, dag, str(run["dag_run_id"]))
        if run.get("state") == "queued" and airflow_api.dag_paused(request, token, dag):
            run["error"] = f"{dag} is paused in Airflow: the run starts when the DAG is unpaused."
    except airflow_api.AirflowApiError as exc:
        run["error"] = str(exc)
    return view


def _get(request: Request, token: str, dag_id: str, run_id: str) -> dict[str, Any] | None:
    """One DAG run, or None when Airflow has no such DAG or run (404)."""
    try:
        return airflow_api.dag_run(request, token, dag_id, run_id)
    except airflow_api.AirflowApiError as exc:
        if exc.status == 404:
            return None
        raise


def _search(request: Request, token: str, store: Any, run_id: str,
            mapping_dags: dict[str, str]) -> dict[str, Any] | None:
    """The run with this id of any DAG the user may read; when several DAGs have one (two
    mapping DAGs scheduled at the same time), the one of the jobs' mapping."""
    found = airflow_api.runs_with_id(request, token, run_id)
    if len(found) > 1:
        mine = {mapping_dags.get(j["mapping"]) for j in views.jobs_of_run(store, run_id)}
        found = [r for r in found if r.get("dag_id") in mine] or found
    return found[0] if found else None


def _not_in_airflow(store: Any, run_id: str, dag_id: str | None,
                    error: str | None) -> RunView:
    jobs = views.jobs_of_run(store, run_id)
    note = error or ("Airflow has no run with this id"
                     + (f" of {dag_id}" if dag_id else "")
                     + (": it ran outside Airflow (the CLI or a page action)." if jobs
                        else "."))
    return RunView(run_id, dag_id, {"dag_run_id": run_id, "state": "unknown", "error": note},
                   jobs=jobs)


def with_details(store: Any, view: RunView) -> list[dict[str, Any]]:
    """The run's jobs, each with its first errors, its error count and its record count."""
    ids = [j["id"] for j in view.jobs]
    counts = views.error_counts_of_jobs(store, ids)
    return [{**j, "errors": views.errors_of_job(store, j["id"], limit=ERRORS_SHOWN),
             "error_count": counts.get(j["id"], 0)} for j in view.jobs]


def chosen_job(store: Any, jobs: list[dict[str, Any]], wanted: str) -> dict[str, Any] | None:
    """The job whose records the page lists: ``wanted`` when it is one of the run's, else
    the first that lists records, else the first."""
    for job in jobs:
        if job["id"] == wanted:
            return job
    for job in jobs:
        if views.count_records_of_job(store, job["id"]):
            return job
    return jobs[0] if jobs else None
