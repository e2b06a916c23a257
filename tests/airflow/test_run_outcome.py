"""A run in which records failed is a failed DAG run (its last task, check_failed_records,
fails after every commit), alerts exactly once, and a dry run never does; the job log
closes jobs a killed run left running. ``dag.test()`` against the emulators."""

from __future__ import annotations

from typing import Any

import requests

from bcdv.state.store import StateStore

CHECK = "check_failed_records"
# Dataverse refuses to create or update the account "Trey Research" (a CUSTOMER record).
REFUSE_TREY = {"rules": [
    {"entity": "accounts", "match": {"name": "Trey Research"}, "status": 400,
     "code": "0x80040203", "message": "Invalid argument: refused by the test.",
     "methods": ["POST", "PATCH"]}]}


def _refuse_trey_research(endpoints: dict[str, Any],
                          message: str = "Invalid argument: refused by the test.") -> None:
    rules = {"rules": [{**REFUSE_TREY["rules"][0], "message": message}]}
    resp = requests.put(f"{endpoints['dataverse']['base_url']}/_emulator/faults",
                        json=rules, verify=endpoints["ca_bundle"], timeout=30)
    resp.raise_for_status()


def _body(mail: Any) -> str:
    return mail.get_payload(decode=True).decode() if not mail.is_multipart() else \
        mail.get_payload(0).get_payload(decode=True).decode()


def _jobs(store: StateStore, run_id: str) -> list[dict[str, Any]]:
    return [j for j in store.jobs(None, limit=500)
            if j["run_id"] == run_id and j["type"] != "coupling"]


def test_full_sync_with_failing_records_fails_after_committing_and_alerts_once(
        sync_env, inbox, af) -> None:
    _refuse_trey_research(sync_env["endpoints"])
    store = StateStore(sync_env["state_url"])
    dag = af.operation_dag("full_sync")
    assert dag.get_task(CHECK).upstream_task_ids >= {"customer.commit", "contact.commit"}
    run = dag.test(run_conf={"mappings": ["CUSTOMER"]})
    states = af.task_states(run)
    assert run.state == "failed", states
    assert states[CHECK] == "failed"
    assert states["customer.commit"] == "success" and states["release_locks"] == "success"
    assert [t for t, s in states.items() if s == "failed"] == [CHECK], states
    # Everything was committed: job log, watermarks, the lock released.
    jobs = _jobs(store, run.run_id)
    assert {j["status"] for j in jobs} <= {"success", "partial"} and jobs
    failed = sum(j["failed"] for j in jobs)
    assert failed >= 1
    for direction in ("to_dataverse", "to_business_central"):
        assert store.get_watermark("CUSTOMER", direction) is not None
    assert store.lock_holder("CUSTOMER") is None
    errors = [e for e in store.errors("CUSTOMER") if "refused by the test" in e["message"]]
    assert errors
    # One message per channel for the run, naming the mapping, counts and the errors.
    assert len(inbox.mails) == 1 and len(inbox.posts) == 1, (inbox.mails, inbox.posts)
    subject = str(inbox.mails[0]["Subject"]).replace("\r\n", "")
    noun = "record" if failed == 1 else "records"
    assert subject.endswith(f"failed: records failed in this run: CUSTOMER: {failed} "
                            f"failed {noun} (threshold: any failure)"), subject
    for content in (_body(inbox.mails[0]), inbox.posts[0]["text"]):
        assert "bcdv errors list -m CUSTOMER" in content
        assert "refused by the test" in content  # the first record error


def test_dry_run_with_the_same_failures_succeeds_and_sends_nothing(sync_env, inbox,
                                                                   af) -> None:
    _refuse_trey_research(sync_env["endpoints"])
    run = af.mapping_dag("customer").test(run_conf={"full": True, "dry_run": True})
    states = af.task_states(run)
    assert run.state == "success", states
    assert states[CHECK] == "success"
    assert inbox.mails == [] and inbox.posts == []


def test_mapping_dag_fails_its_check_unless_under_the_threshold(sync_env, inbox, af,
                                                                monkeypatch) -> None:
    endpoints = sync_env["endpoints"]
    _refuse_trey_research(endpoints)
    store = StateStore(sync_env["state_url"])
    dag = af.mapping_dag("customer")
    assert dag.get_task(CHECK).upstream_task_ids == {"commit"}
    # A threshold above the run's failures (the Variable) keeps the run green.
    monkeypatch.setenv("AIRFLOW_VAR_BCDV_FAILED_RECORDS_THRESHOLD", "1000")
    tolerated = dag.test(run_conf={"full": True, "couple_first": False})
    assert tolerated.state == "success", af.task_states(tolerated)
    assert sum(j["failed"] for j in _jobs(store, tolerated.run_id)) >= 1
    assert inbox.mails == [] and inbox.posts == []

    # Default (any new failure): the record fails anew (another error) -> a failed run.
    monkeypatch.delenv("AIRFLOW_VAR_BCDV_FAILED_RECORDS_THRESHOLD")
    _refuse_trey_research(endpoints, "Invalid argument: refused again, differently.")
    run = dag.test(run_conf={"full": True, "couple_first": False})
    states = af.task_states(run)
    assert (run.state, states[CHECK], states["commit"]) == ("failed", "failed", "success")
    assert sum(j["failed"] for j in _jobs(store, run.run_id)) >= 1
    assert len(inbox.mails) == 1 and len(inbox.posts) == 1
    assert store.lock_holder("CUSTOMER") is None


def _edit_trey_research_in_bc(endpoints: dict[str, Any]) -> None:
    from bcdv.clients.business_central import BusinessCentralClient
    from bcdv.settings import endpoints_from_dict

    bc = BusinessCentralClient(endpoints_from_dict(endpoints).business_central)
    try:
        [row] = bc.list("customers", filter="displayName eq 'Trey Research'")
        bc.update("customers", row["id"], {"phoneNumber": "+1 425 555 0199"},
                  etag=row["@odata.etag"])
    finally:
        bc.close()


def test_sync_all_modified_with_failing_records_fails_once(sync_env, inbox, af) -> None:
    endpoints = sync_env["endpoints"]
    first = af.mapping_dag("customer").test(run_conf={"full": True})  # couples the demo
    sent = len(inbox.mails), len(inbox.posts)
    assert sent == ((0, 0) if first.state == "success" else (1, 1))
    _refuse_trey_research(endpoints)
    _edit_trey_research_in_bc(endpoints)  # its update to Dataverse will be refused
    run = af.operation_dag("sync_all_modified").test()
    states = af.task_states(run)
    assert run.state == "failed", states
    assert [t for t, s in states.items() if s == "failed"] == [CHECK], states
    assert states["sync_customer"] == "success"
    assert (len(inbox.mails), len(inbox.posts)) == (sent[0] + 1, sent[1] + 1)
    assert "CUSTOMER: 1 failed record" in inbox.posts[-1]["text"]


def test_the_next_run_closes_the_jobs_a_killed_run_left_running(sync_env, af) -> None:
    store = StateStore(sync_env["state_url"])
    killed = store.start_job("CUSTOMER", "to_dataverse", mode="modified",
                             run_id="scheduled__killed")
    run = af.mapping_dag("customer").test()
    job = store.job(killed)
    assert job is not None and job["status"] == "failed" and job["finished_at"] is not None
    assert job["message"] == ("the run that started this job ended without finishing it "
                              f"(killed or crashed); closed by run {run.run_id}")
    assert all(j["finished_at"] is not None for j in _jobs(store, run.run_id))
