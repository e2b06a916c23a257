"""Scale-out on CeleryExecutor: the shipped DAGs, unchanged, on two Celery workers.

A real Airflow 3 (API server, scheduler, DAG processor) with ``[core] executor =
CeleryExecutor``, the machine's Redis as the broker and the machine's PostgreSQL for both
Airflow's metadata (schema public) and bcdv's state store (schema ``bcdv`` of the same fresh
database). Two workers (``airflow celery worker --celery-hostname w1@... --concurrency 1``)
serve a queue of this test's own, so another test run on the same Redis never takes its
tasks. Each worker reports its own host name to Airflow (``[core] hostname_callable``), as two
machines would. Staging is a shared directory addressed as a ``file://`` URL
(``BCDV_STAGING_URL``), the form an ``s3://`` or ``abfs://`` location takes.

``bcdv_full_sync`` of CUSTOMER over 2,000 synthetic customers (and 2,000 Dataverse accounts,
about 1,150 of them customers) with ``chunk_size`` 500 splits each pass's plan into partitions
(mapped ``load`` tasks); the test asserts that partitions of both passes ran on both workers
(the task instances' ``hostname``), then reads both services over their APIs: every record of
either side exists exactly once on the other, none twice, none missing, and the state store
holds one coupling per pair.

Airflow's Celery executor and its settings (broker_url, result_backend, [operators]
default_queue, worker --queues / --celery-hostname / --concurrency):
https://airflow.apache.org/docs/apache-airflow-providers-celery/stable/celery_executor.html
https://airflow.apache.org/docs/apache-airflow-providers-celery/stable/configurations-ref.html
[core] hostname_callable:
https://airflow.apache.org/docs/apache-airflow/stable/configurations-ref.html#hostname-callable
Dynamic task mapping (the partitions):
https://airflow.apache.org/docs/apache-airflow/stable/authoring-and-scheduling/dynamic-task-mapping.html
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from test_real_airflow import Airflow  # the real-Airflow driver (same directory)

ROOT = Path(__file__).resolve().parents[2]
PG_ADMIN = os.environ.get("BCDV_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("BCDV_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
CUSTOMERS = 2000
CHUNK_SIZE = 500
WORKERS = ("bcdv-worker-1", "bcdv-worker-2")
MAPPINGS = ("CUSTOMER", "SALESPEOPLE", "CURRENCY")

pytestmark = [pytest.mark.airflow, pytest.mark.postgres]

# [core] hostname_callable for the workers: the host name each worker process was given.
HOSTNAME_MODULE = '''
import os
import socket


def hostname() -> str:
    return os.environ.get("BCDV_TEST_WORKER_HOST") or socket.getfqdn()
'''


@pytest.fixture
def database() -> Iterator[str]:
    """A fresh PostgreSQL database (Airflow in public, bcdv in schema bcdv), dropped after."""
    psycopg2 = pytest.importorskip("psycopg2")
    try:
        admin = psycopg2.connect(PG_ADMIN, connect_timeout=5)
    except psycopg2.OperationalError as exc:
        pytest.skip(f"no PostgreSQL at {PG_ADMIN}: {exc}")
    admin.autocommit = True
    name = f"bcdv_celery_{secrets.token_hex(4)}"
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN.rsplit("/", 1)[0]
    with psycopg2.connect(f"{base}/{name}") as conn, conn.cursor() as cur:
        cur.execute("CREATE SCHEMA bcdv")
    conn.close()
    try:
        yield f"{base}/{name}"
    finally:
        with admin.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
            cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.close()


@pytest.fixture
def broker_queue() -> Iterator[str]:
    """This test's Celery queue on the machine's Redis; its keys are deleted afterwards."""
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=5)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.skip(f"no Redis at {REDIS_URL}: {exc}")
    queue = f"bcdv-test-{secrets.token_hex(4)}"
    try:
        yield queue
    finally:
        keys = [queue, *client.scan_iter(f"{queue}*"), *client.scan_iter(f"*{queue}*")]
        if keys:
            client.delete(*set(keys))
        client.close()


class CeleryAirflow(Airflow):
    """The real-Airflow driver with named processes and a per-process environment."""

    def start_as(self, name: str, args: list[str], **extra_env: str) -> None:
        exe = Path(sys.executable).with_name("airflow")
        log = (self.home / f"{name}.log").open("wb")
        self.procs.append((name, subprocess.Popen(
            [str(exe), *args], env={**self.env, **extra_env}, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True)))


@pytest.fixture
def celery_airflow(database: str, broker_queue: str, tmp_path: Path
                   ) -> Iterator[tuple[CeleryAirflow, dict[str, Any]]]:
    from bcdv.airflow.connections import connection_env
    from bcdv_emulators.testing import run_emulators

    home = tmp_path / "airflow"
    home.mkdir()
    password = "bcdv-test-" + secrets.token_hex(4)
    (home / "passwords.json").write_text(json.dumps({"admin": password}))
    (tmp_path / "pylib").mkdir()
    (tmp_path / "pylib" / "bcdv_test_hostname.py").write_text(HOSTNAME_MODULE)
    shared = tmp_path / "shared-staging"  # what every worker reaches (a bucket, elsewhere)
    # The shipped bcdv_full_sync DAG file, and the shipped CUSTOMER mapping with the two it
    # depends on (the other mappings would only add tasks that do nothing here).
    dags, mappings = tmp_path / "dags", tmp_path / "mappings"
    dags.mkdir()
    mappings.mkdir()
    shutil.copy(ROOT / "dags" / "bcdv_full_sync.py", dags)
    for name in MAPPINGS:
        shutil.copy(ROOT / "include" / "mappings" / f"{name.lower()}.yaml", mappings)
    port = _free_port()
    sa_url = database.replace("postgresql://", "postgresql+psycopg2://", 1)
    with run_emulators(tmp_path / "emulators", seed=f"synthetic:{CUSTOMERS}") as endpoints:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("AIRFLOW", "BCDV_", "PYTEST_"))}
        env.update({
            "PYTHONPATH": os.pathsep.join(p for p in (str(tmp_path / "pylib"),
                                                      env.get("PYTHONPATH")) if p),
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CORE__PARALLELISM": "8",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "bcdv_test_hostname.hostname",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sa_url,
            "AIRFLOW__CELERY__BROKER_URL": REDIS_URL,
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{sa_url}",
            "AIRFLOW__OPERATORS__DEFAULT_QUEUE": broker_queue,
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
            "BCDV_STATE_URL": f"{sa_url}?options=-csearch_path%3Dbcdv",
            "BCDV_STAGING_URL": shared.as_uri(),
            "BCDV_MAPPINGS_DIR": str(mappings),
            "BCDV_TASK_RETRIES": "1",
            "BCDV_RETRY_DELAY_SECONDS": "1",
            **connection_env(endpoints),
        })
        af = CeleryAirflow(home, env, port)
        af.cli("db", "migrate")
        try:
            af.start_as("api-server", ["api-server", "--port", str(port),
                                       "--host", "127.0.0.1"])
            af.start_as("scheduler", ["scheduler"])
            af.start_as("dag-processor", ["dag-processor"])
            for worker in WORKERS:
                af.start_as(worker, ["celery", "worker", "--celery-hostname",
                                     f"{worker}@%h", "--concurrency", "1", "--queues",
                                     broker_queue, "--skip-serve-logs", "--without-gossip",
                                     "--without-mingle"],
                            BCDV_TEST_WORKER_HOST=worker)
            af.wait_until("the API server", lambda: requests.get(
                f"{af.url}/api/v2/version", timeout=5).ok, 120)
            _login(af, password)
            af.wait_until("bcdv_full_sync to be parsed", lambda: af.session.get(
                f"{af.url}/api/v2/dags/bcdv_full_sync", timeout=10).ok, 180)
            yield af, {"endpoints": endpoints, "state_url": env["BCDV_STATE_URL"],
                       "staging": shared, "database": database}
        finally:
            af.stop()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _login(af: Airflow, password: str) -> None:
    resp = af.session.post(f"{af.url}/auth/token",
                           json={"username": "admin", "password": password}, timeout=30)
    assert resp.status_code in (200, 201), resp.text
    af.session.headers["Authorization"] = f"Bearer {resp.json()['access_token']}"


def _celery_task_ids(database: str, run_id: str, task_id: str) -> dict[int, str]:
    """map index -> the Celery task id the executor sent (Airflow's external_executor_id)."""
    import psycopg2

    with psycopg2.connect(database) as conn, conn.cursor() as cur:
        cur.execute("SELECT map_index, external_executor_id FROM task_instance "
                    "WHERE dag_id = 'bcdv_full_sync' AND run_id = %s AND task_id = %s",
                    (run_id, task_id))
        rows = dict(cur.fetchall())
    conn.close()
    return rows


def _names(rows: list[dict[str, Any]], key: str) -> Counter[str]:
    return Counter(str(r[key]) for r in rows)


def test_partitioned_full_sync_runs_on_two_celery_workers(celery_airflow) -> None:
    from bcdv.clients.business_central import BusinessCentralClient
    from bcdv.clients.dataverse import DataverseClient
    from bcdv.mapping import load_mappings
    from bcdv.settings import endpoints_from_dict
    from bcdv.state.store import StateStore

    af, info = celery_airflow
    ep = endpoints_from_dict(info["endpoints"])
    bc, dv = BusinessCentralClient(ep.business_central), DataverseClient(ep.dataverse)
    customer = load_mappings(ROOT / "include" / "mappings")["CUSTOMER"]
    bc_filter, dv_filter = customer.business_central.filter, customer.dataverse.filter
    bc_before = _names(bc.list("customers", filter=bc_filter, select=["displayName"]),
                       "displayName")
    dv_before = _names(dv.list("accounts", filter=dv_filter, select=["name"]), "name")
    # The seed's names are unique on each side; the demo records present on both sides
    # share theirs (match-based coupling pairs them instead of creating them again).
    assert len(bc_before) >= CUSTOMERS and set(bc_before.values()) == {1}
    assert len(dv_before) > 2 * CHUNK_SIZE and set(dv_before.values()) == {1}
    expected = set(bc_before) | set(dv_before)

    run = af.run_dag("bcdv_full_sync", {"mappings": ["CUSTOMER"], "chunk_size": CHUNK_SIZE},
                     timeout=600)
    run_id = run["dag_run_id"]
    assert run["state"] == "success", run
    tis = af.api("GET", f"/dags/bcdv_full_sync/dagRuns/{run_id}/taskInstances",
                 params={"limit": 500})["task_instances"]

    # Partitions: the mapped load tasks of each CUSTOMER pass, and where they ran.
    for direction, records in (("to_dataverse", len(bc_before)),
                               ("to_business_central", len(expected))):
        loads = [t for t in tis if t["task_id"].startswith("customer.")
                 and t["task_id"].endswith(f"{direction}.load")]
        assert len(loads) == -(-records // CHUNK_SIZE), (direction, len(loads))
        assert {t["state"] for t in loads} == {"success"}
        assert {t["map_index"] for t in loads} == set(range(len(loads)))
        hosts = Counter(t["hostname"] for t in loads)
        assert set(hosts) == set(WORKERS), (direction, hosts)
        # And each partition's Celery task was received by the worker its hostname names.
        celery_ids = _celery_task_ids(info["database"], run_id, loads[0]["task_id"])
        for t in loads:
            log = (af.home / f"{t['hostname']}.log").read_text(errors="replace")
            assert f"execute_workload[{celery_ids[t['map_index']]}] received" in log, t
    assert {t["hostname"] for t in tis if t["state"] == "success"} <= set(WORKERS)

    # Every record once on the other side: none missing, none twice.
    bc_after = _names(bc.list("customers", filter=bc_filter, select=["displayName"]),
                      "displayName")
    dv_after = _names(dv.list("accounts", filter=dv_filter, select=["name"]), "name")
    assert bc_after == Counter(expected)
    assert dv_after == Counter(expected)

    store = StateStore(info["state_url"])
    pairs = store.couplings("CUSTOMER")
    assert len(pairs) == len(expected)
    assert pairs["bc_id"].is_unique and pairs["dv_id"].is_unique
    jobs = [j for j in store.jobs("CUSTOMER") if j["run_id"] == run_id
            and j["type"] != "coupling"]
    assert {j["direction"]: (j["inserted"], j["failed"]) for j in jobs} == {
        "to_dataverse": (len(set(bc_before) - set(dv_before)), 0),
        "to_business_central": (len(set(dv_before) - set(bc_before)), 0)}, jobs
    assert store.lock_holder("CUSTOMER") is None
    # The partitions were staged on the shared location, addressed by URL.
    staged = info["staging"] / "customer"
    chunk_dirs = sorted(staged.glob("*/*/chunks/*"))
    assert len(chunk_dirs) == sum(1 for t in tis if t["task_id"].endswith(".load")
                                  and t["task_id"].startswith("customer.")), chunk_dirs
    meta = json.loads((chunk_dirs[0] / "meta.json").read_text())
    assert meta["directory"].startswith(info["staging"].as_uri())
    bc.close()
    dv.close()

