"""Secrets drill, the Airflow way: DAG runs under ``dag.test()`` with every logger at DEBUG,
a token-endpoint outage and a record the API refuses; then the task logs (log records, the
console, any task log files), the XComs of the runs, the staged files, the state store and
the bcdv pages are searched for the client secret and for any bearer token (JWT)."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*")


def leaks(text: str, secret: str) -> list[str]:
    found = [m.group(0)[:24] + "..." for m in JWT.finditer(text)]
    for needle in {secret, secret.split("~", 1)[-1]}:
        if needle and needle in text:
            found.append("client secret")
    return found


def _admin(endpoints: dict[str, Any], service: str, path: str, body: Any) -> None:
    base = {"bc": endpoints["business_central"]["base_url"].split("/v2.0")[0],
            "dv": endpoints["dataverse"]["base_url"],
            "id": endpoints["identity"]["authority"].rsplit("/", 1)[0]}[service]
    resp = requests.put(f"{base}/_emulator/{path}", json=body, verify=endpoints["ca_bundle"],
                        timeout=30)
    resp.raise_for_status()


def _xcoms(run_ids: list[str]) -> str:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(XComModel.dag_id, XComModel.task_id, XComModel.value).filter(
            XComModel.run_id.in_(run_ids)).all()
    assert rows, "the runs pushed no XCom"
    return "\n".join(f"{d}.{t}: {v}" for d, t, v in rows)


def _pages(monkeypatch: pytest.MonkeyPatch, run_ids: list[str]) -> dict[str, str]:
    from fastapi.testclient import TestClient

    from bcdv.airflow.ui import app as ui_app
    from bcdv.airflow.ui import security

    viewer = security.Viewer(user=SimpleNamespace(get_id=lambda: "1"), name="admin",
                             token="t", can_trigger=True, nonce="n", new_nonce=False)

    async def authenticate(request: Any) -> Any:
        return viewer

    monkeypatch.setattr(security, "authenticate", authenticate)
    monkeypatch.setattr(security, "is_authorized", lambda *a, **k: True)
    client = TestClient(ui_app.create_app())
    pages = {}
    paths = ["/", "/mappings/CUSTOMER", "/couplings?mapping=CUSTOMER", "/errors", "/log",
             *(f"/runs/{r}" for r in run_ids)]
    for path in paths:
        resp = client.get(path)
        assert resp.status_code in (200, 404), (path, resp.status_code)
        pages[f"page {path}"] = resp.text
    return pages


def _airflow_dags_test(dag_id: str, conf: dict[str, Any] | None, out: Path,
                       failed_records: bool = False) -> str:
    """``airflow dags test`` as a user runs it, with Airflow's logging level at DEBUG; a run
    with ``failed_records`` fails in its check_failed_records task, and in no other."""
    exe = Path(sys.executable).with_name("airflow")
    env = {**os.environ, "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
           "AIRFLOW__LOGGING__LOGGING_LEVEL": "DEBUG", "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    argv = [str(exe), "dags", "test", dag_id, *(["-c", json.dumps(conf)] if conf else [])]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    text = proc.stdout + proc.stderr
    out.write_text(text)
    if failed_records:
        assert proc.returncode == 1 and "DagRun failed" in text, text[-4000:]
        assert "records failed in this run" in text, text[-4000:]
        return text
    assert proc.returncode == 0, text[-4000:]
    return text


def _run_ids(dag_ids: list[str]) -> list[str]:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        return [r.run_id for r in session.query(DagRun).filter(DagRun.dag_id.in_(dag_ids))]


def test_dag_runs_at_debug_leave_no_secret_or_token_anywhere(
        sync_env: dict[str, Any], debug_everything: list[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    endpoints = sync_env["endpoints"]
    secret = endpoints["identity"]["client_secret"]
    started = time.time()
    _admin(endpoints, "id", "token-faults", {"status": 503, "count": 1, "retry_after": 0})
    # One record refused by the API (an error row carries the API's message).
    _admin(endpoints, "dv", "faults", {"rules": [
        {"entity": "accounts", "match": {"name": "Trey Research"}, "status": 400,
         "code": "0x80040203", "message": "Invalid argument: refused by the drill.",
         "methods": ["POST", "PATCH"]}]})
    tmp = Path(sync_env["tmp"])
    scanned = {
        "airflow dags test bcdv_full_sync": _airflow_dags_test(
            "bcdv_full_sync", {"mappings": ["CUSTOMER"]}, tmp / "full.log",
            failed_records=True),
        "airflow dags test bcdv_sync_customer": _airflow_dags_test(
            "bcdv_sync_customer", None, tmp / "customer.log", failed_records=True),
    }
    console = "\n".join(scanned.values())
    # The task logs did run at DEBUG: the HTTP and token traffic of the tasks was logged.
    assert re.search(r"\[debug\s*\].*(urllib3|msal)", console), "no DEBUG task log lines"
    assert "bcdv" in console
    run_ids = _run_ids(["bcdv_full_sync", "bcdv_sync_customer"])
    scanned["xcom"] = _xcoms(run_ids)
    logs_dir = Path(os.environ["AIRFLOW_HOME"]) / "logs"
    for path in logs_dir.rglob("*") if logs_dir.exists() else []:
        if path.is_file() and path.stat().st_mtime >= started:
            scanned[f"task log {path.name}"] = path.read_text(errors="replace")
    for path in (tmp / "staging").rglob("*"):
        if path.is_file():
            scanned[f"staged {path.name}"] = path.read_text(errors="replace")
    with sqlite3.connect(sync_env["state_url"].removeprefix("sqlite:///")) as conn:
        dump = "\n".join(conn.iterdump())
    scanned["state store"] = dump
    scanned["log records of this process"] = "\n".join(debug_everything)
    scanned.update(_pages(monkeypatch, run_ids))
    assert "refused by the drill" in dump, "the drill's API error never happened"
    found = {where: leaks(text, secret) for where, text in scanned.items()}
    found = {k: v for k, v in found.items() if v}
    size = sum(len(t) for t in scanned.values())
    print(f"\nSECRETS (DAG runs) scanned={len(scanned)} sources, {size} characters; "
          f"leaks={found}")
    assert found == {}
