"""Every DAG run with ``dag.test()`` against the emulators (real HTTPS, real state store)."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

import pytest

from bcdv.clients.business_central import BusinessCentralClient
from bcdv.clients.dataverse import DataverseClient
from bcdv.settings import endpoints_from_dict
from bcdv.state.store import StateStore

ADMIN_OBJECT_ID = "0d5a7c3e-9b1f-4e2d-8c6a-5f4e3d2c1b0a"  # the emulated org's admin
MAPPINGS = ["CONTACT", "CURRENCY", "CUSTOMER", "SALESPEOPLE", "VENDOR"]


class Systems:
    """Both emulated systems, through the product's own clients."""

    def __init__(self, endpoints: dict[str, Any]) -> None:
        ep = endpoints_from_dict(endpoints)
        self.bc = BusinessCentralClient(ep.business_central)
        self.dv = DataverseClient(ep.dataverse)

    def bc_edit(self, record_id: str, **fields: Any) -> None:
        current = self.bc.get("customers", record_id)
        assert current is not None
        self.bc.update("customers", record_id, fields, etag=current["@odata.etag"])

    def dv_edit_as_person(self, record_id: str, **cols: Any) -> None:
        """As the org admin (impersonated): not an echo of the integration user's writes."""
        resp = self.dv.http.request("PATCH", self.dv.url("accounts", record_id), json=cols,
                                    headers={"Content-Type": "application/json",
                                             "CallerObjectId": ADMIN_OBJECT_ID,
                                             "If-Match": "*"})
        assert resp.status_code in (200, 204), resp.text

    def close(self) -> None:
        self.bc.close()
        self.dv.close()


@pytest.fixture
def systems(sync_env):  # type: ignore[no-untyped-def]
    s = Systems(sync_env["endpoints"])
    yield s
    s.close()


def _jobs(store: StateStore, run_id: str) -> dict[tuple[str, str], dict[str, Any]]:
    return {(j["mapping"], j["direction"]): j for j in store.jobs(None, limit=500)
            if j["run_id"] == run_id and j["type"] != "coupling"}


def test_full_sync_then_bidirectional_incremental_run(sync_env, systems, af) -> None:
    store = StateStore(sync_env["state_url"])
    full = af.operation_dag("full_sync").test(run_conf={"chunk_size": 2})
    states = af.task_states(full)
    # Every task succeeded; the last one, check_failed_records, fails the run exactly when
    # records failed (the demo data's own failures: see test_run_outcome.py).
    failed = sum(j["failed"] for j in _jobs(store, full.run_id).values())
    assert {t: s for t, s in states.items() if s != "success"} == (
        {"check_failed_records": "failed"} if failed else {}), states
    assert full.state == ("failed" if failed else "success")
    # Large passes were split into chunks that loaded as parallel mapped task instances.
    assert states.get("customer.to_dataverse.load[1]") == "success", states
    assert states["release_locks"] == "success"
    jobs = _jobs(store, full.run_id)
    assert {m for m, _ in jobs} == set(MAPPINGS)
    assert all(j["mode"] == "full" for j in jobs.values())
    assert jobs[("CUSTOMER", "to_dataverse")]["inserted"] > 0
    for name in MAPPINGS:
        assert store.lock_holder(name) is None  # the teardown released every lock
    # The per-mapping DAGs continue from the watermarks the full passes set.
    for direction in ("to_dataverse", "to_business_central"):
        assert store.get_watermark("CUSTOMER", direction) is not None

    couplings = store.couplings("CUSTOMER")
    couplings = couplings[~couplings["pending"].astype(bool)]
    assert len(couplings) >= 2
    bc_id, dv_other = couplings["bc_id"].iat[0], couplings["dv_id"].iat[1]
    bc_other = couplings["bc_id"].iat[1]
    dv_of_bc = couplings["dv_id"].iat[0]
    systems.bc_edit(bc_id, phoneNumber="+1 425 555 0111")
    systems.dv_edit_as_person(dv_other, telephone1="+1 425 555 0222")

    run = af.mapping_dag("customer").test()
    assert run.state == "success", af.task_states(run)
    jobs = _jobs(store, run.run_id)
    assert (jobs[("CUSTOMER", "to_dataverse")]["inserted"],
            jobs[("CUSTOMER", "to_dataverse")]["modified"]) == (0, 1)
    assert (jobs[("CUSTOMER", "to_business_central")]["inserted"],
            jobs[("CUSTOMER", "to_business_central")]["modified"]) == (0, 1)
    assert systems.dv.get("accounts", dv_of_bc)["telephone1"] == "+1 425 555 0111"
    assert systems.bc.get("customers", bc_other)["phoneNumber"] == "+1 425 555 0222"
    assert store.lock_holder("CUSTOMER") is None


def test_scheduled_run_skips_and_manual_run_fails_while_the_mapping_is_locked(
        sync_env, af) -> None:
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    from bcdv.airflow import tasks

    store = StateStore(sync_env["state_url"])
    store.acquire_lock("CUSTOMER", "manual__full_sync_in_progress")
    with pytest.raises(AirflowSkipException, match="locked by another run"):
        tasks.acquire_lock("CUSTOMER", "scheduled__x", "scheduled")
    with pytest.raises(AirflowFailException, match="manual__full_sync_in_progress"):
        tasks.acquire_lock("CUSTOMER", "manual__y", "manual")

    run = af.mapping_dag("customer").test()
    states = af.task_states(run)
    assert run.state == "failed" and states["couple"] == "failed", states
    assert states["commit"] == "upstream_failed"
    # The failed run released nothing it did not hold.
    assert store.lock_holder("CUSTOMER").owner == "manual__full_sync_in_progress"
    assert not [j for j in store.jobs("CUSTOMER") if j["run_id"] == run.run_id]


def test_resync_window_touches_only_records_modified_in_it_and_keeps_the_watermark(
        sync_env, systems, af) -> None:
    from bcdv.airflow.tasks import backfill_window

    store = StateStore(sync_env["state_url"])
    first = af.mapping_dag("customer").test(run_conf={"full": True})
    assert first.state == "success", af.task_states(first)
    couplings = store.couplings("CUSTOMER")
    ids = list(couplings.loc[~couplings["pending"].astype(bool), "bc_id"][:2])
    marks = {d: store.get_watermark("CUSTOMER", d)
             for d in ("to_dataverse", "to_business_central")}

    time.sleep(1.2)
    start = datetime.now(timezone.utc)
    systems.bc_edit(ids[0], phoneNumber="+1 425 555 0301")
    time.sleep(1.2)
    end = datetime.now(timezone.utc)
    time.sleep(1.2)
    systems.bc_edit(ids[1], phoneNumber="+1 425 555 0302")

    conf = {"resync_from": start.isoformat(), "resync_until": end.isoformat()}
    run = af.mapping_dag("customer").test(run_conf=conf)
    assert run.state == "success", af.task_states(run)
    job = _jobs(store, run.run_id)[("CUSTOMER", "to_dataverse")]
    assert (job["mode"], job["modified"], job["inserted"]) == ("backfill", 1, 0)
    dv = {r["bc_id"]: r["dv_id"] for r in store.couplings("CUSTOMER").to_dict("records")}
    assert systems.dv.get("accounts", dv[ids[0]])["telephone1"] == "+1 425 555 0301"
    assert systems.dv.get("accounts", dv[ids[1]])["telephone1"] != "+1 425 555 0302"
    assert {d: store.get_watermark("CUSTOMER", d) for d in marks} == marks

    again = af.mapping_dag("customer").test(run_conf=conf)  # idempotent
    job = _jobs(store, again.run_id)[("CUSTOMER", "to_dataverse")]
    assert (job["modified"], job["inserted"], job["unchanged"]) == (0, 0, 1)

    # A backfill run uses its data interval; other runs their watermarks.
    assert backfill_window({}, "backfill", (start, end)) == (start, end)
    assert backfill_window({}, "scheduled", (start, end)) is None
    with pytest.raises(ValueError, match="empty data interval"):
        backfill_window({}, "backfill", (start, start))


def test_sync_record_actions(sync_env, systems, af) -> None:
    store = StateStore(sync_env["state_url"])
    created = systems.bc.create("customers", {"displayName": "Record Action Ltd",
                                              "phoneNumber": "+1 206 555 0400"})
    dag = af.operation_dag("sync_record")

    def run(**conf: Any) -> Any:
        dr = dag.test(run_conf={"mapping": "CUSTOMER", "side": "business_central",
                                "record_id": created["id"], **conf})
        assert dr.state == "success", af.task_states(dr)
        return dr

    run(action="sync")
    pair = store.couplings("CUSTOMER", bc_ids=[created["id"]])
    assert len(pair) == 1
    dv_id = pair["dv_id"].iat[0]
    assert systems.dv.get("accounts", dv_id)["name"] == "Record Action Ltd"

    run(action="uncouple")
    assert store.couplings("CUSTOMER", bc_ids=[created["id"]]).empty
    run(action="couple", couple_to=dv_id)
    assert store.couplings("CUSTOMER", bc_ids=[created["id"]])["dv_id"].iat[0] == dv_id
    run(action="restore")
    assert store.lock_holder("CUSTOMER") is None

    bad = dag.test(run_conf={"mapping": "CUSTOMER", "side": "business_central",
                             "record_id": created["id"], "action": "couple"})
    assert bad.state == "failed"  # couple needs couple_to


def test_sync_all_modified_runs_every_mapping_in_dependency_order(sync_env, af) -> None:
    store = StateStore(sync_env["state_url"])
    dag = af.operation_dag("sync_all_modified")
    assert dag.get_task("sync_customer").upstream_task_ids >= {"sync_currency",
                                                                "sync_salespeople"}
    run = dag.test()
    assert run.state == "success", af.task_states(run)
    jobs = [j for j in reversed(store.jobs(None, limit=500)) if j["run_id"] == run.run_id]
    order = list(dict.fromkeys(j["mapping"] for j in jobs))
    assert set(order) == set(MAPPINGS)
    assert order.index("CURRENCY") < order.index("CUSTOMER") < order.index("CONTACT")
    assert all(j["mode"] == "modified" for j in jobs)


def test_load_crash_after_a_write_is_retried_without_duplicates(sync_env, systems, af,
                                                                 monkeypatch) -> None:
    """A load that dies right after a Dataverse create (before its coupling is committed)
    is retried by Airflow; the retry finds the write and makes no second row."""
    from bcdv.engine import apply

    calls = {"n": 0}

    def crash(action: dict[str, Any]) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("injected crash after a write")

    before = len(systems.dv.list("accounts", select=["accountid"]))
    monkeypatch.setattr(apply, "after_write_hook", crash)
    run = af.mapping_dag("customer").test(run_conf={"full": True, "couple_first": False})
    states = af.task_states(run)
    assert run.state == "success", states
    store = StateStore(sync_env["state_url"])
    job = _jobs(store, run.run_id)[("CUSTOMER", "to_dataverse")]
    assert job["inserted"] > 1 and calls["n"] > 2
    after = len(systems.dv.list("accounts", select=["accountid"]))
    assert after == before + job["inserted"]  # the interrupted create made one row, not two
    dv_ids = list(store.couplings("CUSTOMER")["dv_id"])
    assert len(dv_ids) == len(set(dv_ids))


def test_full_sync_dry_run_of_selected_mappings_writes_nothing(sync_env, af) -> None:
    store = StateStore(sync_env["state_url"])
    run = af.operation_dag("full_sync").test(run_conf={"mappings": ["CURRENCY", "CUSTOMER"],
                                                       "dry_run": True})
    states = af.task_states(run)
    assert run.state == "success", states
    jobs = [j for j in store.jobs(None, limit=500) if j["run_id"] == run.run_id]
    assert {j["mapping"] for j in jobs} == {"CURRENCY", "CUSTOMER"}
    assert all(j["dry_run"] for j in jobs)
    planned = [j for j in jobs if j["mapping"] == "CUSTOMER" and j["direction"] == "to_dataverse"]
    assert planned and planned[0]["inserted"] > 0  # what a real run would create
    assert store.couplings("CUSTOMER").empty and store.couplings("CURRENCY").empty
    assert store.get_watermark("CUSTOMER", "to_dataverse") is None
    assert all(store.lock_holder(n) is None for n in MAPPINGS)
