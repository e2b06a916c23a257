"""Calls to Airflow's own REST API (``/api/v2``) on behalf of the signed-in user.

The pages run inside the API server; triggering ``bcdv_sync_record`` goes through the public
API with the user's own token, so Airflow applies its own permission checks, audit log and
run creation exactly as for a trigger from its UI.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import requests
from fastapi import Request

from bcdv.airflow.ui.security import RECORD_DAG_ID

TIMEOUT = 30


class AirflowApiError(RuntimeError):
    """Airflow refused or failed a call; the message is Airflow's."""


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
        raise AirflowApiError(f"Airflow answered {resp.status_code}: {detail}")
    return dict(resp.json()) if resp.content else {}


def trigger_record_sync(request: Request, token: str, conf: dict[str, Any]) -> str:
    """Trigger a ``bcdv_sync_record`` run with ``conf``; returns the new run id."""
    run = _call(request, token, "POST", f"/dags/{RECORD_DAG_ID}/dagRuns",
                {"logical_date": None, "conf": conf,
                 "note": f"bcdv UI: {conf.get('action')} {conf.get('mapping')} "
                         f"{conf.get('record_id')}"})
    return str(run["dag_run_id"])


def record_run(request: Request, token: str, run_id: str) -> dict[str, Any]:
    """A ``bcdv_sync_record`` run (state, dates, conf)."""
    return _call(request, token, "GET", f"/dags/{RECORD_DAG_ID}/dagRuns/{quote(run_id, safe='')}")


def record_run_tasks(request: Request, token: str, run_id: str) -> list[dict[str, Any]]:
    """The task instances of a ``bcdv_sync_record`` run."""
    data = _call(request, token, "GET",
                 f"/dags/{RECORD_DAG_ID}/dagRuns/{quote(run_id, safe='')}/taskInstances")
    return list(data.get("task_instances") or [])


def record_dag_paused(request: Request, token: str) -> bool:
    """Whether ``bcdv_sync_record`` is paused (its triggered runs wait until unpaused)."""
    return bool(_call(request, token, "GET", f"/dags/{RECORD_DAG_ID}").get("is_paused"))
