"""A real Airflow API server (and, on demand, a scheduler) for the browser tests.

Airflow runs from a temporary AIRFLOW_HOME on a SQLite metadata database (``airflow db
migrate``), with the simple auth manager and two known users: ``admin`` (role admin) and
``viewer`` (role viewer: may read, may not trigger DAGs). The project's plugins folder is
loaded, so the bcdv pages are mounted at /bcdv. The state store holds demo data produced by
a real full sync of CUSTOMER against the emulators (plus a second run, which marks the
records that failed twice with the same error as Skipped).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[2]
USERS = {"admin": ("admin", "admin-pass-1"), "viewer": ("viewer", "viewer-pass-1"),
         "operator": ("user", "operator-pass-1")}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def airflow_env(home: Path, port: int, endpoints: dict[str, Any], state_url: str,
                dags: Path) -> dict[str, str]:
    """Environment of every airflow process of the stack."""
    from bcdv.airflow.connections import connection_env

    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AIRFLOW_", "AIRFLOW__", "BCDV_"))}
    base = f"http://127.0.0.1:{port}"
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base}/execution/",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__API__BASE_URL": base,
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__SECRET_KEY": "bcdv-browser-tests-secret",
        "AIRFLOW__API_AUTH__JWT_SECRET": "bcdv-browser-tests-jwt-secret-0123456789",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(
            f"{u}:{role}" for u, (role, _) in USERS.items()),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL": "5",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "BCDV_STATE_URL": state_url,
        "BCDV_STAGING_DIR": str(home / "staging"),
        "BCDV_MAPPINGS_DIR": str(ROOT / "include" / "mappings"),
        "PYTHONPATH": str(ROOT / "plugins"),
    })
    env.update(connection_env(endpoints))
    return env


def airflow(env: dict[str, str], *args: str, log: Path, timeout: float = 300) -> None:
    exe = Path(sys.executable).with_name("airflow")
    with log.open("a") as fh:
        proc = subprocess.run([str(exe), *args], env=env, stdout=fh, stderr=subprocess.STDOUT,
                              timeout=timeout, check=False)
    if proc.returncode:
        raise RuntimeError(f"airflow {' '.join(args)} failed; log {log}:\n"
                           + "\n".join(log.read_text().splitlines()[-30:]))


@contextmanager
def process(env: dict[str, str], log: Path, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """An airflow component in the background, stopped (its process group) on exit."""
    exe = Path(sys.executable).with_name("airflow")
    with log.open("a") as fh:
        proc = subprocess.Popen([str(exe), *args], env=env, stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        yield proc
    finally:
        try:
            os.killpg(proc.pid, 15)
            proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 9)


def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the server exited; log {log}:\n"
                               + "\n".join(log.read_text().splitlines()[-40:]))
        try:
            if requests.get(url, timeout=2).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer within {timeout} s; log {log}")


def demo_state(endpoints: dict[str, Any], state_url: str, staging: Path) -> dict[str, str]:
    """Demo data from real syncs: a full CUSTOMER sync; then one coupled account is deleted
    in Dataverse and its customer changed in Business Central, so the next two scheduled
    runs fail on it with the same deletion conflict, which marks it Skipped (BC's rule).
    Returns the skipped pair (bc_id, dv_id, name)."""
    from bcdv.engine import SyncContext, sync_mapping
    from bcdv.mapping import load_mappings
    from bcdv.settings import endpoints_from_dict

    mappings = load_mappings(ROOT / "include" / "mappings")
    ctx = SyncContext.create(endpoints_from_dict(endpoints), state_url, staging, mappings)
    try:
        sync_mapping(ctx, mappings["CUSTOMER"], mode="full", run_id="demo__full")
        frame = ctx.state.couplings("CUSTOMER")
        frame = frame[frame["to_dv_result"] == "success"].sort_values("bc_id")
        victim = frame.iloc[0]
        bc, dv = ctx.business_central.client, ctx.dataverse.client
        customer = bc.get("customers", victim["bc_id"])
        dv.delete("accounts", victim["dv_id"])
        bc.update("customers", victim["bc_id"], {"phoneNumber": "+1 425 555 0142"},
                  etag=customer["@odata.etag"])
        for n in (1, 2):
            sync_mapping(ctx, mappings["CUSTOMER"], run_id=f"demo__scheduled_{n}")
        return {"bc_id": str(victim["bc_id"]), "dv_id": str(victim["dv_id"]),
                "name": str(customer.get("displayName", ""))}
    finally:
        ctx.close()


def token(base: str, user: str) -> str:
    """A JWT for a known user, from Airflow's own token endpoint."""
    resp = requests.post(f"{base}/auth/token", json={"username": user,
                                                      "password": USERS[user][1]}, timeout=30)
    resp.raise_for_status()
    return str(resp.json()["access_token"])


def write_passwords(home: Path) -> None:
    (home / "passwords.json").write_text(json.dumps({u: p for u, (_, p) in USERS.items()}))


@contextmanager
def api_server(home: Path, endpoints: dict[str, Any], state_url: str,
               extra_env: dict[str, str] | None = None
               ) -> Iterator[tuple[str, dict[str, str]]]:
    """A migrated Airflow home with this project's DAGs (paused at creation) and its
    api-server up: yields (base URL, environment) for the caller's scheduler and others."""
    port = free_port()
    env = airflow_env(home, port, endpoints, state_url, ROOT / "dags")
    env["AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION"] = "True"
    env.update(extra_env or {})
    write_passwords(home)
    airflow(env, "db", "migrate", log=home / "airflow-setup.log")
    airflow(env, "dags", "reserialize", log=home / "airflow-setup.log")
    base = f"http://127.0.0.1:{port}"
    with process(env, home / "api-server.log", "api-server", "--host", "127.0.0.1",
                 "--port", str(port)) as api:
        wait_http(f"{base}/api/v2/monitor/health", api, home / "api-server.log")
        yield base, env


@contextmanager
def signed_in_tab(browser: Any, base: str, user: str = "admin",
                  width: int = 1280) -> Iterator[Any]:
    """A browser tab signed in as ``user`` (Airflow's token cookie), ``width`` px wide."""
    context = browser.new_context(viewport={"width": width, "height": 900})
    context.add_cookies([{"name": "_token", "value": token(base, user), "url": base}])
    tab = context.new_page()
    tab.set_default_timeout(60_000)
    try:
        yield tab
    finally:
        context.close()
