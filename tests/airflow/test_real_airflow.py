"""A real Airflow: API server, scheduler and DAG processor (LocalExecutor) on a fresh
PostgreSQL metadata database, driven through the REST API.

bcdv_full_sync runs every mapping with every load task's first try SIGKILLed after its second
write (the workers die mid-write; Airflow retries them); then bcdv_sync_customer carries one
change each way; an Airflow backfill of it re-synchronises a past interval. The emulators
run in this process; the Airflow workers reach them over HTTPS with the CA bundle named in
the connections' extra.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
PG_ADMIN = os.environ.get("BCDV_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")
ADMIN_OBJECT_ID = "0d5a7c3e-9b1f-4e2d-8c6a-5f4e3d2c1b0a"
PASSWORD = "bcdv-test-" + secrets.token_hex(4)

pytestmark = [pytest.mark.airflow, pytest.mark.postgres]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def metadata_db() -> Iterator[str]:
    """A dedicated PostgreSQL database for this Airflow, dropped afterwards."""
    psycopg2 = pytest.importorskip("psycopg2")
    try:
        admin = psycopg2.connect(PG_ADMIN, connect_timeout=5)
    except psycopg2.OperationalError as exc:
        pytest.skip(f"no PostgreSQL at {PG_ADMIN}: {exc}")
    admin.autocommit = True
    name = f"airflow_test_{secrets.token_hex(4)}"
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg2://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        with admin.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
            cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.close()


class Airflow:
    """The running components and a REST client for /api/v2."""

    def __init__(self, home: Path, env: dict[str, str], port: int) -> None:
        self.home, self.env, self.port = home, env, port
        self.url = f"http://127.0.0.1:{port}"
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.session = requests.Session()

    def cli(self, *args: str, timeout: float = 300) -> None:
        exe = Path(sys.executable).with_name("airflow")
        proc = subprocess.run([str(exe), *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    def start(self, *args: str) -> None:
        exe = Path(sys.executable).with_name("airflow")
        log = (self.home / f"{args[0]}.log").open("wb")
        self.procs.append((args[0], subprocess.Popen(
            [str(exe), *args], env=self.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)))

    def stop(self) -> None:
        for _, proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for _, proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)

    def logs(self) -> str:
        out = []
        for name, _ in self.procs:
            text = (self.home / f"{name}.log").read_text(errors="replace")
            out.append(f"--- {name} ---\n{text[-4000:]}")
        return "\n".join(out)

    def wait_until(self, what: str, check: Any, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in self.procs:
                assert proc.poll() is None, f"airflow {name} exited\n{self.logs()}"
            try:
                value = check()
            except requests.RequestException:
                value = None
            if value:
                return value
            time.sleep(1)
        try:
            runs = {d: [(r["dag_run_id"], r["state"]) for r in
                        self.api("GET", f"/dags/{d}/dagRuns")["dag_runs"]]
                    for d in ("bcdv_full_sync", "bcdv_sync_customer")}
        except Exception as exc:
            runs = {"error": str(exc)}
        raise AssertionError(f"timed out waiting for {what}; runs: {runs}\n{self.logs()}")

    def login(self) -> None:
        resp = self.session.post(f"{self.url}/auth/token",
                                 json={"username": "admin", "password": PASSWORD}, timeout=30)
        assert resp.status_code in (200, 201), resp.text
        self.session.headers["Authorization"] = f"Bearer {resp.json()['access_token']}"

    def api(self, method: str, path: str, **kw: Any) -> Any:
        resp = self.session.request(method, f"{self.url}/api/v2{path}", timeout=30, **kw)
        assert resp.status_code < 300, f"{method} {path}: {resp.status_code} {resp.text}"
        return resp.json()

    def unpause(self, dag_id: str) -> None:
        self.api("PATCH", f"/dags/{dag_id}", json={"is_paused": False})

    def idle(self, dag_id: str, timeout: float) -> None:
        """Wait until no run of the DAG is queued or running."""
        def none_active() -> bool:
            runs = self.api("GET", f"/dags/{dag_id}/dagRuns")["dag_runs"]
            return all(r["state"] in ("success", "failed") for r in runs)

        self.wait_until(f"{dag_id} to be idle", none_active, timeout)

    def run_dag(self, dag_id: str, conf: dict[str, Any], timeout: float) -> dict[str, Any]:
        self.unpause(dag_id)
        run = self.api("POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": None,
                                                                "conf": conf})
        run_id = run["dag_run_id"]

        def finished() -> dict[str, Any] | None:
            got = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}")
            return got if got["state"] in ("success", "failed") else None

        done = self.wait_until(f"{dag_id} run {run_id}", finished, timeout)
        if done["state"] != "success":
            tis = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")
            states = {t["task_id"]: t["state"] for t in tis["task_instances"]}
            # Every task succeeded and records failed (the demo data's own): the run's last
            # task fails it, as it should (tests/airflow/test_run_outcome.py).
            if {t: s for t, s in states.items() if s != "success"} == {
                    "check_failed_records": "failed"}:
                return done
            raise AssertionError(f"{dag_id} {done['state']}: {states}\n{self.logs()}")
        return done


@pytest.fixture
def airflow(metadata_db: str, tmp_path: Path) -> Iterator[tuple[Airflow, dict[str, Any]]]:
    from bcdv.airflow.connections import connection_env
    from bcdv_emulators.testing import run_emulators

    home = tmp_path / "airflow"
    home.mkdir()
    (home / "passwords.json").write_text(json.dumps({"admin": PASSWORD}))
    port = _free_port()
    with run_emulators(tmp_path / "emulators", seed="demo") as endpoints:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("AIRFLOW", "BCDV_", "PYTEST_"))}
        env.update({
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_db,
            "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple."
                                           "simple_auth_manager.SimpleAuthManager",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
            "AIRFLOW__API__SECRET_KEY": secrets.token_hex(16),
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "BCDV_STATE_URL": f"sqlite:///{tmp_path / 'state.db'}",
            "BCDV_STAGING_DIR": str(tmp_path / "staging"),
            "BCDV_MAPPINGS_DIR": str(ROOT / "include" / "mappings"),
            "BCDV_TASK_RETRIES": "2",
            "BCDV_RETRY_DELAY_SECONDS": "1",
            # Every load task's first try dies (SIGKILL) right after its second write.
            "BCDV_TEST_KILL_LOAD_AFTER_WRITES": "2",
            **connection_env(endpoints),
        })
        af = Airflow(home, env, port)
        af.cli("db", "migrate")
        try:
            af.start("api-server", "--port", str(port), "--host", "127.0.0.1")
            af.start("scheduler")
            af.start("dag-processor")
            af.wait_until("the API server", lambda: requests.get(
                f"{af.url}/api/v2/version", timeout=5).ok, 120)
            af.login()
            af.wait_until("the DAGs to be parsed", lambda: all(
                af.session.get(f"{af.url}/api/v2/dags/{d}", timeout=10).ok
                for d in ("bcdv_full_sync", "bcdv_sync_customer")), 180)
            yield af, {"endpoints": endpoints, "state_url": env["BCDV_STATE_URL"]}
        finally:
            af.stop()


def _count(client: Any, entity_set: str, filter: str | None = None) -> int:
    return sum(len(page) for page in client.iter_pages(entity_set, select=[], filter=filter))


def _bc_count(bc: Any, entity_set: str) -> int:
    # Business Central makes a company contact for every customer or vendor it creates (the
    # Contact Business Relation): those are BC's own, not the sync's; persons are.
    return _count(bc, entity_set, "type eq 'Person'" if entity_set == "contacts" else None)


def test_full_sync_then_customer_sync_on_a_real_airflow(airflow) -> None:
    from bcdv.clients.business_central import BusinessCentralClient
    from bcdv.clients.dataverse import DataverseClient
    from bcdv.mapping import load_mappings
    from bcdv.settings import endpoints_from_dict
    from bcdv.state.store import StateStore

    af, info = airflow
    ep = endpoints_from_dict(info["endpoints"])
    bc, dv = BusinessCentralClient(ep.business_central), DataverseClient(ep.dataverse)
    mappings = load_mappings(ROOT / "include" / "mappings")
    dv_sets = sorted({m.dataverse.entity_set for m in mappings.values()})
    bc_sets = sorted({m.business_central.entity_set for m in mappings.values()})
    before = {s: _count(dv, s) for s in dv_sets}
    bc_before = {s: _bc_count(bc, s) for s in bc_sets}

    # Unpaused first, bcdv_sync_customer starts a scheduled run at once: whichever of it and
    # the full sync takes the CUSTOMER lock first, the other waits (full sync) or skips.
    af.unpause("bcdv_sync_customer")
    full = af.run_dag("bcdv_full_sync", {"chunk_size": 4, "lock_wait_seconds": 180},
                      timeout=420)
    af.idle("bcdv_sync_customer", timeout=120)
    store = StateStore(info["state_url"])
    jobs = [j for j in store.jobs(None, limit=500) if j["run_id"] == full["dag_run_id"]]
    assert {j["mapping"] for j in jobs} == set(mappings)
    tis = af.api("GET", f"/dags/bcdv_full_sync/dagRuns/{full['dag_run_id']}/taskInstances",
                 params={"limit": 200})["task_instances"]
    retried = [t for t in tis if t["task_id"].endswith(".load") and t["try_number"] > 1]
    assert retried, "no load task was killed and retried"
    # No duplicate in Dataverse: each entity set grew by exactly the creates reported.
    inserted: dict[str, int] = {}
    for j in jobs:
        if j["direction"] == "to_dataverse" and j["type"] != "coupling":
            s = mappings[j["mapping"]].dataverse.entity_set
            inserted[s] = inserted.get(s, 0) + j["inserted"]
    assert inserted.get("accounts", 0) > 0
    assert {s: _count(dv, s) for s in dv_sets} == {s: before[s] + inserted.get(s, 0)
                                                   for s in dv_sets}
    # Nor in Business Central: a retried load resumes its creates, it never sends them again
    # (tests/regressions/test_retried_load_after_kill.py).
    bc_inserted: dict[str, int] = {}
    for j in jobs:
        if j["direction"] == "to_business_central" and j["type"] != "coupling":
            s = mappings[j["mapping"]].business_central.entity_set
            bc_inserted[s] = bc_inserted.get(s, 0) + j["inserted"]
    assert {s: _bc_count(bc, s) for s in bc_sets} == {s: bc_before[s] + bc_inserted.get(s, 0)
                                                   for s in bc_sets}
    for name in mappings:
        assert store.lock_holder(name) is None

    pairs = store.couplings("CUSTOMER")
    pairs = pairs[~pairs["pending"].astype(bool)].reset_index(drop=True)
    (bc_a, dv_a), (bc_b, dv_b) = (pairs.loc[i, ["bc_id", "dv_id"]] for i in (0, 1))
    edited = datetime.now(timezone.utc)
    current = bc.get("customers", bc_a)
    bc.update("customers", bc_a, {"phoneNumber": "+1 425 555 0700"},
              etag=current["@odata.etag"])
    resp = dv.http.request("PATCH", dv.url("accounts", dv_b),
                           json={"telephone1": "+1 425 555 0800"},
                           headers={"Content-Type": "application/json", "If-Match": "*",
                                    "CallerObjectId": ADMIN_OBJECT_ID})
    assert resp.status_code in (200, 204), resp.text

    run = af.run_dag("bcdv_sync_customer", {}, timeout=240)
    assert dv.get("accounts", dv_a)["telephone1"] == "+1 425 555 0700"
    assert bc.get("customers", bc_b)["phoneNumber"] == "+1 425 555 0800"
    # Exactly one update each way (by this run, or by a scheduled run that came first).
    after = [j for j in store.jobs("CUSTOMER") if j["started_at"] >= edited
             and j["type"] != "coupling"]
    assert run["dag_run_id"] in {j["run_id"] for j in after}
    for direction in ("to_dataverse", "to_business_central"):
        assert sum(j["modified"] for j in after if j["direction"] == direction) == 1, (
            direction, [(j["run_id"], j["direction"], j["status"], j["modified"], j["failed"],
                         j["unchanged"], j["message"]) for j in after],
            [(e["direction"], e.get("name"), e["message"][:150]) for e in
             store.errors("CUSTOMER")])
        assert sum(j["inserted"] for j in after if j["direction"] == direction) == 0

    # An Airflow backfill of the mapping's DAG over a past */30 data interval (older than
    # the scheduled runs' intervals) re-synchronises the records modified in it; the
    # watermarks stay put.
    marks = {d: store.get_watermark("CUSTOMER", d) for d in ("to_dataverse",
                                                             "to_business_central")}
    now = datetime.now(timezone.utc)
    tick = now.replace(minute=now.minute // 30 * 30, second=0, microsecond=0)
    af.api("POST", "/backfills", json={
        "dag_id": "bcdv_sync_customer", "from_date": (tick - timedelta(minutes=90)).isoformat(),
        "to_date": (tick - timedelta(minutes=61)).isoformat(), "max_active_runs": 1,
        "reprocess_behavior": "completed", "run_backwards": False, "dag_run_conf": {}})

    def backfilled() -> list[dict[str, Any]] | None:
        runs = [r for r in af.api("GET", "/dags/bcdv_sync_customer/dagRuns")["dag_runs"]
                if r["run_type"] == "backfill"]
        return runs if len(runs) == 1 and all(
            r["state"] in ("success", "failed") for r in runs) else None

    runs = af.wait_until("the backfill run", backfilled, 300)
    assert {r["state"] for r in runs} == {"success"}, runs
    for r in runs:
        jobs = [j for j in store.jobs("CUSTOMER") if j["run_id"] == r["dag_run_id"]
                and j["type"] != "coupling"]
        assert {j["mode"] for j in jobs} == {"backfill"}, jobs
        assert sum(j["inserted"] + j["failed"] for j in jobs) == 0
    assert {d: store.get_watermark("CUSTOMER", d) for d in marks} == marks
    bc.close()
    dv.close()
