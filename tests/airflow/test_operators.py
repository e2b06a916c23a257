"""The operators and the sensor for users' own DAGs, run with ``dag.test()`` against the
emulators; results verified over both APIs with the product's clients and in the job log."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import requests

from bcdv.clients.business_central import BusinessCentralClient
from bcdv.clients.dataverse import DataverseClient
from bcdv.settings import endpoints_from_dict
from bcdv.state.store import StateStore

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "docs" / "example_dag.py"
START = datetime(2026, 1, 1, tzinfo=timezone.utc)


@pytest.fixture
def clients(sync_env):  # type: ignore[no-untyped-def]
    ep = endpoints_from_dict(sync_env["endpoints"])
    bc, dv = BusinessCentralClient(ep.business_central), DataverseClient(ep.dataverse)
    yield bc, dv
    bc.close()
    dv.close()


DAG_FILE = """from datetime import datetime, timezone
from airflow.sdk import DAG, chain
from bcdv.airflow.operators import BcdvFullSyncOperator, BcdvSyncOperator
from bcdv.airflow.sensors import BcdvMappingSyncedSensor

with DAG({dag_id!r}, schedule=None, start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
         catchup=False) as dag:
    chain({tasks})
"""


@pytest.fixture
def dags_folder(sync_env, monkeypatch):  # type: ignore[no-untyped-def]
    """A DAGs folder of the test's own (dag.test() serialises the DAGs folder's DAGs)."""
    return _use_dags_folder(Path(sync_env["tmp"]) / "dags", monkeypatch)


def _use_dags_folder(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from airflow import settings

    folder.mkdir(exist_ok=True)
    monkeypatch.setenv("AIRFLOW__CORE__DAGS_FOLDER", str(folder))
    monkeypatch.setattr(settings, "DAGS_FOLDER", str(folder))
    return folder


def _dag(folder: Path, dag_id: str, *tasks: str) -> Any:
    """A DAG file of these operators (one after another) in the DAGs folder, parsed."""
    from airflow.dag_processing.dagbag import DagBag

    path = folder / f"{dag_id}.py"
    path.write_text(DAG_FILE.format(dag_id=dag_id, tasks=", ".join(tasks)))
    bag = DagBag(dag_folder=str(path))
    assert bag.import_errors == {}
    return bag.get_dag(dag_id)


def _op(cls: str, task_id: str, **kwargs: Any) -> str:
    return f"{cls}(task_id={task_id!r}, **{kwargs!r})"


def _xcom(run: Any, task_id: str) -> Any:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        value = session.query(XComModel.value).filter(
            XComModel.dag_id == run.dag_id, XComModel.run_id == run.run_id,
            XComModel.task_id == task_id, XComModel.key == "return_value").scalar()
    return json.loads(value) if isinstance(value, str) else value


def _jobs(store: StateStore, run_id_suffix: str) -> list[dict[str, Any]]:
    """Synchronisation jobs of one operator task (run ids end with the Airflow run id)."""
    return [j for j in reversed(store.jobs(None, limit=500))
            if (j["run_id"] or "").endswith(run_id_suffix) and j["type"] == "synchronization"]


def _fault(endpoints: dict[str, Any], rules: list[dict[str, Any]]) -> None:
    """Make the Dataverse emulator refuse matching writes (its admin API)."""
    resp = requests.put(f"{endpoints['dataverse']['base_url']}/_emulator/faults",
                        json={"rules": rules}, verify=endpoints["ca_bundle"], timeout=30)
    resp.raise_for_status()


def _sync(task_id: str, **kwargs: Any) -> str:
    return _op("BcdvSyncOperator", task_id, **kwargs)


def _full(task_id: str, **kwargs: Any) -> str:
    return _op("BcdvFullSyncOperator", task_id, **kwargs)


def _sensor(task_id: str, **kwargs: Any) -> str:
    return _op("BcdvMappingSyncedSensor", task_id, **kwargs)


# -- the example DAG ----------------------------------------------------------------------
def test_example_dag_parses_without_import_errors(airflow_db) -> None:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(EXAMPLE.parent))
    assert bag.import_errors == {}
    dag = bag.get_dag("example_bcdv_pipeline")
    assert dag is not None
    assert dag.get_task("sync_contacts").upstream_task_ids == {"wait_for_customers"}
    assert dag.get_task("contacts_report").upstream_task_ids == {"sync_contacts"}
    assert dag.get_task("wait_for_customers").mode == "reschedule"
    # Parsing a DAG file that uses them loads neither the engine (pandas) nor the store.
    probe = ("import sys, bcdv.airflow.operators, bcdv.airflow.sensors; "
             "print(sorted({'pandas', 'bcdv.engine', 'bcdv.state.store'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert out.strip() == "[]"


def test_example_dag_runs_after_the_customers_are_synced(sync_env, clients, af, dags_folder,
                                                         monkeypatch) -> None:
    from airflow.dag_processing.dagbag import DagBag

    bc, dv = clients
    store = StateStore(sync_env["state_url"])
    before = datetime.now(timezone.utc) - timedelta(seconds=1)
    # Every mapping, fully, in dependency order (what a user runs once, before the pipeline).
    full = _dag(dags_folder, "bcdv_test_full", _full("sync_all"))
    first = full.test()
    assert first.state == "success", af.task_states(first)
    summary = _xcom(first, "sync_all")
    order = list(dict.fromkeys(p["mapping"] for p in summary["passes"]))
    assert set(order) == {"CURRENCY", "SALESPEOPLE", "CUSTOMER", "VENDOR", "CONTACT"}
    assert order.index("CURRENCY") < order.index("CUSTOMER") < order.index("CONTACT")
    assert order.index("VENDOR") < order.index("CONTACT")
    assert (summary["failed"], summary["mode"], summary["dry_run"]) == (0, "full", False)
    contacts = store.couplings("CONTACT")
    assert len(contacts) > 0
    assert set(contacts["dv_id"]) <= {r["contactid"] for r in dv.list(
        "contacts", select=["contactid"])}  # the contacts arrived in Dataverse

    # A contact changes in Business Central; the user's pipeline carries it over.
    bc_id, dv_id = contacts["bc_id"].iat[0], contacts["dv_id"].iat[0]
    current = bc.get("contacts", bc_id)
    assert current is not None
    bc.update("contacts", bc_id, {"phoneNumber": "+1 425 555 0199"},
              etag=current["@odata.etag"])

    # The example runs from docs/ as its DAGs folder (its mappings: include/mappings beside).
    _use_dags_folder(EXAMPLE.parent, monkeypatch)
    monkeypatch.delenv("BCDV_MAPPINGS_DIR")
    dag = DagBag(dag_folder=str(EXAMPLE)).get_dag("example_bcdv_pipeline")
    run = dag.test(logical_date=before)
    states = af.task_states(run)
    assert run.state == "success", states
    assert states == {"wait_for_customers": "success", "sync_contacts": "success",
                      "contacts_report": "success"}

    # The sensor found the CUSTOMER jobs of the full sync, one per direction.
    customer_jobs = {j["direction"]: j["id"] for j in _jobs(store, first.run_id)
                     if j["mapping"] == "CUSTOMER"}
    assert _xcom(run, "wait_for_customers") == customer_jobs and len(customer_jobs) == 2

    # The change arrived; the summary matches the job log.
    assert dv.get("contacts", dv_id)["telephone1"] == "+1 425 555 0199"
    summary = _xcom(run, "sync_contacts")
    jobs = {j["direction"]: j for j in _jobs(store, run.run_id)}
    assert {p["direction"]: p["job_id"] for p in summary["passes"]} == {
        d: j["id"] for d, j in jobs.items()}
    for p in summary["passes"]:
        job = jobs[p["direction"]]
        assert (p["inserted"], p["modified"], p["failed"]) == (
            job["inserted"], job["modified"], job["failed"])
        assert job["status"] == "success" and not job["dry_run"] and job["mode"] == "modified"
    to_dv = next(p for p in summary["passes"] if p["direction"] == "to_dataverse")
    assert (to_dv["inserted"], to_dv["modified"], to_dv["failed"]) == (0, 1, 0)
    assert summary["run_id"] == f"example_bcdv_pipeline.sync_contacts__{run.run_id}"
    assert _xcom(run, "contacts_report") == {
        f"{p['direction']}.{c}": p[c] for p in summary["passes"]
        for c in ("inserted", "modified", "failed")}
    assert store.lock_holder("CONTACT") is None
    secret = sync_env["endpoints"]["identity"]["client_secret"]
    assert secret not in json.dumps(summary)


# -- failure semantics ----------------------------------------------------------------------
def test_failed_record_fails_the_task_after_commit(sync_env, clients, af, dags_folder,
                                                   capfd) -> None:
    bc, dv = clients
    store = StateStore(sync_env["state_url"])
    deps = _dag(dags_folder, "bcdv_test_deps",
                _full("deps", mappings=["CURRENCY", "SALESPEOPLE"]))
    assert deps.test().state == "success"
    _fault(sync_env["endpoints"], [
        {"entity": "accounts", "match": {"name": "Trey Research"}, "status": 400,
         "code": "0x80040203", "message": "Invalid argument: refused by the test.",
         "methods": ["POST", "PATCH"]}])
    dag = _dag(dags_folder, "bcdv_test_failing",
               _sync("sync_customers", mapping="CUSTOMER", mode="full",
                     direction="to_dataverse", retries=2))
    run = dag.test()
    states = af.task_states(run)
    assert run.state == "failed" and states["sync_customers"] == "failed", states
    # The task's error names the mapping, the count, the record and the API's message.
    console = "".join(capfd.readouterr())
    assert "records failed in this run: CUSTOMER: 1 failed record" in console
    assert "(Trey Research): Invalid argument: refused by the test." in console

    # Committed before failing: the job is closed, the watermark moved, the others arrived.
    (job,) = _jobs(store, run.run_id)
    assert (job["status"], job["failed"]) == ("partial", 1)
    assert job["inserted"] > 0 and job["finished_at"] is not None
    assert store.get_watermark("CUSTOMER", "to_dataverse") is not None
    couplings = store.couplings("CUSTOMER").to_dict("records")
    arrived = {bc.get("customers", c["bc_id"])["displayName"]: dv.get("accounts", c["dv_id"])
               for c in couplings}
    assert len(arrived) == job["inserted"] + job["modified"] + 1
    for name, account in arrived.items():  # every other customer's values arrived
        assert name == "Trey Research" or account["name"] == name
    summary = _xcom(run, "sync_customers")
    assert summary["failed"] == 1 and summary["failed_by_mapping"] == {"CUSTOMER": 1}
    (problem,) = [p for p in summary["problems"] if p["result"] == "failed"]
    assert problem["name"] == "Trey Research" and "refused by the test" in problem["message"]
    assert store.lock_holder("CUSTOMER") is None

    # A threshold above the failures lets the same run succeed.
    lenient = _dag(dags_folder, "bcdv_test_lenient",
                   _sync("sync_customers", mapping="CUSTOMER", mode="full",
                         direction="to_dataverse", fail_on_failed_records=5))
    assert lenient.test().state == "success"


def test_dry_run_writes_nothing_and_succeeds(sync_env, clients, af, dags_folder) -> None:
    bc, dv = clients
    store = StateStore(sync_env["state_url"])
    accounts = dv.list("accounts", select=["accountid", "name", "telephone1"])
    # The preview of a full synchronisation: what it would insert, nothing written.
    preview = _dag(dags_folder, "bcdv_test_full_preview",
                   _sync("preview", mapping="CUSTOMER", mode="full", dry_run=True))
    run = preview.test()
    assert run.state == "success", af.task_states(run)
    summary = _xcom(run, "preview")
    assert (summary["dry_run"], summary["mode"]) == (True, "full")
    assert {p["direction"] for p in summary["passes"]} == {"to_dataverse",
                                                           "to_business_central"}
    assert all(p["dry_run"] for p in summary["passes"])
    assert sum(p["inserted"] for p in summary["passes"]) > 0  # what a real run would do
    assert dv.list("accounts", select=["accountid", "name", "telephone1"]) == accounts
    assert store.couplings("CUSTOMER").empty
    assert store.get_watermark("CUSTOMER", "to_dataverse") is None

    # mode="dry_run" previews the next modified run of coupled records.
    deps = _dag(dags_folder, "bcdv_test_customers",
                _full("sync", mappings=["CUSTOMER", "CURRENCY", "SALESPEOPLE"]))
    assert deps.test().state == "success"
    pair = store.couplings("CUSTOMER")
    bc_id, dv_id = pair["bc_id"].iat[0], pair["dv_id"].iat[0]
    current = bc.get("customers", bc_id)
    assert current is not None
    bc.update("customers", bc_id, {"phoneNumber": "+1 425 555 0177"},
              etag=current["@odata.etag"])
    marks = {d: store.get_watermark("CUSTOMER", d)
             for d in ("to_dataverse", "to_business_central")}
    dry = _dag(dags_folder, "bcdv_test_dry_run",
               _sync("preview", mapping="CUSTOMER", mode="dry_run", direction="to_dataverse"))
    run = dry.test()
    assert run.state == "success", af.task_states(run)
    (p,) = _xcom(run, "preview")["passes"]
    assert (p["direction"], p["mode"], p["modified"], p["dry_run"]) == (
        "to_dataverse", "modified", 1, True)
    assert dv.get("accounts", dv_id)["telephone1"] != "+1 425 555 0177"
    assert {d: store.get_watermark("CUSTOMER", d) for d in marks} == marks


class _TaskInstance:
    """What an operator's execute reads of its task instance (run outside a DAG run)."""

    dag_id, task_id, map_index = "direct", "sync", -1

    def __init__(self) -> None:
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


def test_templated_window_lock_wait_and_a_held_lock(sync_env, clients, af,
                                                     dags_folder) -> None:
    from bcdv.airflow.operators import BcdvSyncOperator
    from bcdv.errors import SafetyStopError

    bc, dv = clients
    store = StateStore(sync_env["state_url"])
    deps = _dag(dags_folder, "bcdv_test_window_deps",
                _full("sync", mappings=["CUSTOMER", "CURRENCY", "SALESPEOPLE"]))
    assert deps.test().state == "success"
    marks = {d: store.get_watermark("CUSTOMER", d)
             for d in ("to_dataverse", "to_business_central")}
    pair = store.couplings("CUSTOMER")
    bc_id, dv_id = pair["bc_id"].iat[0], pair["dv_id"].iat[0]
    time.sleep(1.1)
    start = datetime.now(timezone.utc)
    current = bc.get("customers", bc_id)
    assert current is not None
    bc.update("customers", bc_id, {"phoneNumber": "+1 425 555 0155"},
              etag=current["@odata.etag"])
    time.sleep(1.1)
    end = datetime.now(timezone.utc)

    # since/until are rendered from the run's conf: a backfill of that window.
    window = _dag(dags_folder, "bcdv_test_window", _sync(
        "resync", mapping="CUSTOMER", direction="to_dataverse",
        since="{{ dag_run.conf['since'] }}", until="{{ dag_run.conf['until'] }}"))
    run = window.test(run_conf={"since": start.isoformat(), "until": end.isoformat()})
    assert run.state == "success", af.task_states(run)
    summary = _xcom(run, "resync")
    assert summary["window"] == {"since": start.isoformat(), "until": end.isoformat()}
    (p,) = summary["passes"]
    assert (p["modified"], p["inserted"]) == (1, 0)
    (job,) = _jobs(store, run.run_id)
    assert (job["id"], job["mode"]) == (p["job_id"], "backfill")
    assert dv.get("accounts", dv_id)["telephone1"] == "+1 425 555 0155"
    assert {d: store.get_watermark("CUSTOMER", d) for d in marks} == marks

    # Another run holds the lock: the operator fails naming it (after lock_wait).
    store.acquire_lock("CUSTOMER", "manual__someone_else")
    op = BcdvSyncOperator(task_id="sync", mapping="CUSTOMER", lock_wait=1)
    started = time.monotonic()
    with pytest.raises(SafetyStopError, match="manual__someone_else"):
        op.execute({"ti": _TaskInstance(), "run_id": "manual__direct"})
    assert time.monotonic() - started >= 1
    store.release_lock("CUSTOMER", "manual__someone_else")
    ti = _TaskInstance()
    summary = op.execute({"ti": ti, "run_id": "manual__direct"})
    assert summary["run_id"] == "direct.sync__manual__direct" and summary["failed"] == 0
    assert store.lock_holder("CUSTOMER") is None


def test_unknown_mode_and_half_window_are_refused() -> None:
    from bcdv.airflow.operators import BcdvSyncOperator, threshold_of

    with pytest.raises(ValueError, match="unknown mode"):
        BcdvSyncOperator(task_id="x", mapping="CUSTOMER", mode="fast")
    op = BcdvSyncOperator(task_id="y", mapping="CUSTOMER", since="2026-01-01T00:00:00Z")
    with pytest.raises(ValueError, match="both since and until"):
        op._window()
    # bcdv's threshold convention (0 = any failure); False: never.
    assert (threshold_of(True), threshold_of(False), threshold_of(3)) == (0, None, 3)
    with pytest.raises(ValueError):
        threshold_of(-1)


# -- the sensor ---------------------------------------------------------------------------
def test_sensor_succeeds_after_a_sync_and_times_out_clearly_without_one(sync_env, af,
                                                                        dags_folder) -> None:
    from airflow.sdk.exceptions import AirflowSensorTimeout

    from bcdv.airflow.sensors import BcdvMappingSyncedSensor

    since = datetime.now(timezone.utc).isoformat()
    # Nothing synchronised CURRENCY since then: a short timeout, in reschedule mode.
    waiting = _dag(dags_folder, "bcdv_test_sensor_timeout", _sensor(
        "wait", mapping="CURRENCY", since=since, mode="reschedule", poke_interval=1,
        timeout=3))
    started = time.monotonic()
    run = waiting.test()
    assert run.state == "failed" and af.task_states(run)["wait"] == "failed"
    assert time.monotonic() - started >= 3
    # The message says what was waited for and what was seen.
    sensor = BcdvMappingSyncedSensor(task_id="direct", mapping="currency", since=since,
                                     poke_interval=0.2, timeout=0.5)
    with pytest.raises(AirflowSensorTimeout) as caught:
        sensor.execute({"ti": None})
    text = str(caught.value)
    assert "timed out after 0.5 s waiting for mapping currency" in text
    assert "CURRENCY since" in text and "to_dataverse not yet (no job at all)" in text

    # A dry run does not count; a real run does (poke, reschedule and deferrable).
    dry = _dag(dags_folder, "bcdv_test_dry", _sync("dry", mapping="CURRENCY", mode="dry_run"))
    assert dry.test().state == "success"
    with pytest.raises(AirflowSensorTimeout, match="dry run"):
        sensor.execute({"ti": None})
    synced = _dag(dags_folder, "bcdv_test_sync", _sync("sync", mapping="CURRENCY"))
    sync_run = synced.test()
    assert sync_run.state == "success", af.task_states(sync_run)
    (job,) = _jobs(StateStore(sync_env["state_url"]), sync_run.run_id)
    assert sensor.execute({"ti": None}) == {"to_dataverse": job["id"]}
    # since="now" (the default): that job finished before this task started.
    later = BcdvMappingSyncedSensor(task_id="now", mapping="CURRENCY", poke_interval=0.2,
                                    timeout=0.5)
    with pytest.raises(AirflowSensorTimeout, match=f"last job {job['id']}: success"):
        later.execute({"ti": None})
    for mode in ("poke", "reschedule"):
        sensing = _dag(dags_folder, f"bcdv_test_sensor_{mode}", _sensor(
            "wait", mapping="CURRENCY", since=since, mode=mode, poke_interval=1, timeout=30))
        done = sensing.test()
        assert done.state == "success", af.task_states(done)
        assert _xcom(done, "wait") == {"to_dataverse": job["id"]}


def test_deferrable_sensor_waits_in_the_trigger(sync_env, af, dags_folder) -> None:
    import asyncio

    from bcdv.airflow import hooks
    from bcdv.airflow.triggers import BcdvMappingSyncedTrigger

    since = datetime.now(timezone.utc).isoformat()
    # Nothing synced: the sensor defers, the trigger (run inline by dag.test) times out.
    deferring = _dag(dags_folder, "bcdv_test_sensor_deferrable", _sensor(
        "wait", mapping="CURRENCY", since=since, deferrable=True, poke_interval=1, timeout=2))
    run = deferring.test()
    assert run.state == "failed" and af.task_states(run)["wait"] == "failed"

    synced = _dag(dags_folder, "bcdv_test_sync_for_trigger", _sync("sync", mapping="CURRENCY"))
    sync_run = synced.test()
    assert sync_run.state == "success", af.task_states(sync_run)
    (job,) = _jobs(StateStore(sync_env["state_url"]), sync_run.run_id)

    async def first_event(trigger: BcdvMappingSyncedTrigger) -> Any:
        async for event in trigger.run():
            return event.payload
        return None

    def trigger(since: str) -> BcdvMappingSyncedTrigger:
        path, kwargs = BcdvMappingSyncedTrigger(
            state_url=hooks.state_url(), mapping="CURRENCY", directions=["to_dataverse"],
            since=since, poke_interval=0.2, timeout=1).serialize()
        assert path == "bcdv.airflow.triggers.BcdvMappingSyncedTrigger"
        return BcdvMappingSyncedTrigger(**kwargs)  # as the triggerer rebuilds it

    assert asyncio.run(first_event(trigger(since))) == {
        "status": "success", "job_ids": {"to_dataverse": job["id"]}}
    later = asyncio.run(first_event(trigger(datetime.now(timezone.utc).isoformat())))
    assert later["status"] == "timeout" and "to_dataverse not yet (last job" in later["message"]
    # The deferred sensor now finds the job at once.
    done = _dag(dags_folder, "bcdv_test_sensor_deferrable_done", _sensor(
        "wait", mapping="CURRENCY", since=since, deferrable=True, poke_interval=1,
        timeout=30)).test()
    assert done.state == "success" and _xcom(done, "wait") == {"to_dataverse": job["id"]}
