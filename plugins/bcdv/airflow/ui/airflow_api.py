"""Calls to Airflow's own REST API (``/api/v2``) on behalf of the signed-in user.

The pages run inside the API server; triggering ``bcdv_sync_record`` goes through the public
API with the user's own token, so Airflow applies its own permission checks, audit log and
run creation exactly as for a trigger from its UI. The run page reads any DAG's run and task
instances the same way, so a user sees only the runs Airflow lets them read.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

import requests
from fastapi import Request

from bcdv.airflow.ui.security import RECORD_DAG_ID

TIMEOUT = 30
TASK_LIMIT = 1000  # a full sync of five mappings maps a few hundred load tasks at most


class AirflowApiError(RuntimeError):
    """Airflow refused or failed a call; the message is Airflow's, ``status`` its HTTP status
    (0: Airflow not reached)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


def _root(request: Request) -> str:
    """The API server's own base URL (this app is mounted below it)."""
    base = str(request.base_url).rstrip("/")
    prefix = request.scope.get("root_path", "").rstrip("/")
    mount = request.app.state.url_prefix.rstrip("/")
    if mount and base.endswith(mount):
        base = base[: -len(mount)]
    elif prefix and base.endswith(prefix):
        base = base[: -len(prefix)]
    return base


def _call(request: Request, token: str, method: str, path: str,
          body: dict[str, Any] | None = None) -> dict[str, Any]:
    url = f"{_root(request)}/api/v2{path}"
    try:
        resp = requests.request(method, url, json=body, timeout=TIMEOUT,
                                headers={"Authorization": f"Bearer {token}"})
    except requests.RequestException as exc:
        raise AirflowApiError(f"Airflow API not reachable: {type(exc).__name__}") from None
    if resp.status_code >= 400:
        try:
            detail = resp.json().get("detail")
        except ValueError:
            detail = resp.text[:300]
        raise AirflowApiError(f"Airflow answered {resp.status_code}: {detail}",
                              resp.status_code)
    return dict(resp.json()) if resp.content else {}


def trigger_record_sync(request: Request, token: str, conf: dict[str, Any]) -> str:
    """Trigger a ``bcdv_sync_record`` run with ``conf``; returns the new run id."""
    run = _call(request, token, "POST", f"/dags/{RECORD_DAG_ID}/dagRuns",
                {"logical_date": None, "conf": conf,
                 "note": f"bcdv UI: {conf.get('action')} {conf.get('mapping')} "
                         f"{conf.get('record_id')}"})
    return str(run["dag_run_id"])


def dag_run(request: Request, token: str, dag_id: str, run_id: str) -> dict[str, Any]:
    """One run of a DAG (state, dates, conf): ``GET /dags/{dag_id}/dagRuns/{run_id}``."""
    return _call(request, token, "GET",
                 f"/dags/{quote(dag_id, safe='')}/dagRuns/{quote(run_id, safe='')}")


def dag_run_tasks(request: Request, token: str, dag_id: str,
                  run_id: str) -> list[dict[str, Any]]:
    """The task instances of a DAG run (mapped ones each with its ``map_index``), up to
    TASK_LIMIT: Airflow answers at most ``[api] maximum_page_limit`` (100) a call, so this
    pages with ``offset``."""
    path = f"/dags/{quote(dag_id, safe='')}/dagRuns/{quote(run_id, safe='')}/taskInstances"
    out: list[dict[str, Any]] = []
    while len(out) < TASK_LIMIT:
        data = _call(request, token, "GET", f"{path}?limit=100&offset={len(out)}")
        batch = list(data.get("task_instances") or [])
        out.extend(batch)
        if not batch or len(out) >= int(data.get("total_entries") or 0):
            break
    return out[:TASK_LIMIT]


def runs_with_id(request: Request, token: str, run_id: str) -> list[dict[str, Any]]:
    """The runs of any DAG the user may read whose run id is ``run_id``: two DAGs can have
    runs with one id (``GET /dags/~/dagRuns`` with ``run_id_pattern``, a substring search,
    then the exact id)."""
    data = _call(request, token, "GET",
                 f"/dags/~/dagRuns?{urlencode({'run_id_pattern': run_id, 'limit': 50})}")
    return [r for r in data.get("dag_runs") or [] if r.get("dag_run_id") == run_id]


def dag_paused(request: Request, token: str, dag_id: str = RECORD_DAG_ID) -> bool:
    """Whether a DAG is paused (its triggered runs wait until it is unpaused)."""
    return bool(_call(request, token, "GET", f"/dags/{quote(dag_id, safe='')}")
                .get("is_paused"))


def record_run(request: Request, token: str, run_id: str) -> dict[str, Any]:
    """A ``bcdv_sync_record`` run (state, dates, conf)."""
    return dag_run(request, token, RECORD_DAG_ID, run_id)


def record_run_tasks(request: Request, token: str, run_id: str) -> list[dict[str, Any]]:
    """The task instances of a ``bcdv_sync_record`` run."""
    return dag_run_tasks(request, token, RECORD_DAG_ID, run_id)


def record_dag_paused(request: Request, token: str) -> bool:
    """Whether ``bcdv_sync_record`` is paused (its triggered runs wait until unpaused)."""
    return dag_paused(request, token, RECORD_DAG_ID)
