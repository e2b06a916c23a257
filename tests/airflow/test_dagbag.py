"""The DAG folder parses without import errors, and the mapping DAGs have the right shape."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dagbag():  # type: ignore[no-untyped-def]
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "dags"))


def test_no_import_errors(dagbag) -> None:
    assert dagbag.import_errors == {}


def test_customer_dag_shape(dagbag) -> None:
    dag = dagbag.dags.get("bcdv_sync_customer")
    assert dag is not None
    assert dag.max_active_runs == 1
    assert dag.catchup is False
    ids = set(dag.task_ids)
    assert {"to_dataverse.extract", "to_dataverse.transform", "to_dataverse.load",
            "to_business_central.extract", "to_business_central.load", "commit"} <= ids
    # BC's order: the pass to Dataverse completes before the pass back starts.
    upstream = dag.get_task("to_business_central.extract").upstream_task_ids
    assert "to_dataverse.load" in upstream
    for task in dag.tasks:  # the outcome check is not retried: it would fail again
        assert task.retries >= 2 or task.task_id == "check_failed_records"
    # The run's last task judges its failed records once everything is committed.
    assert dag.get_task("check_failed_records").upstream_task_ids == {"commit"}
    assert dag.get_task("check_failed_records").retries == 0
    assert set(dag.params.keys()) >= {"full", "dry_run"}


def test_customer_dag_schedule_asset_and_alerts(dagbag) -> None:
    from airflow.sdk import CronDataIntervalTimetable

    from bcdv.airflow.notifiers import BcdvAlertNotifier

    dag = dagbag.dags["bcdv_sync_customer"]
    # The mapping's cron schedule as data intervals (what a backfill re-synchronises).
    assert isinstance(dag.timetable, CronDataIntervalTimetable)
    assert dag.timetable.expression == "*/30 * * * *"
    outlets = dag.get_task("commit").outlets
    assert [a.name for a in outlets] == ["bcdv.customer"]
    failure = dag.on_failure_callback
    assert any(isinstance(cb, BcdvAlertNotifier) and cb.kind == "failure" for cb in failure)
    # A run failed by its records fails check_failed_records: no second alert on success.
    assert not dag.on_success_callback
    # No task-level failure callbacks: one message per failed run, not per try.
    assert all(not t.on_failure_callback for t in dag.tasks)
    assert dag.default_args["retry_exponential_backoff"] == 2.0
    assert set(dag.params.keys()) >= {"resync_from", "resync_until", "lock_wait_seconds"}


def test_full_sync_dag_shape(dagbag) -> None:
    dag = dagbag.dags["bcdv_full_sync"]
    assert dag.schedule is None
    assert dag.max_active_runs == 1
    assert set(dag.params.keys()) >= {"mappings", "dry_run", "couple_first", "chunk_size",
                                      "batch_size"}
    assert dag.params["mappings"] == ["CONTACT", "CURRENCY", "CUSTOMER", "SALESPEOPLE",
                                      "VENDOR"]
    load = dag.get_task("customer.to_dataverse.load")
    assert load.max_active_tis_per_dagrun >= 1
    # Dependency waves: CUSTOMER waits for CURRENCY and SALESPEOPLE; CONTACT for CUSTOMER.
    assert "currency.commit" in dag.get_task("customer.couple").upstream_task_ids
    assert "customer.commit" in dag.get_task("contact.couple").upstream_task_ids
    release = dag.get_task("release_locks")
    assert release.is_teardown


def test_record_and_all_modified_dags(dagbag) -> None:
    record = dagbag.dags["bcdv_sync_record"]
    assert record.schedule is None
    assert set(record.params.keys()) >= {"mapping", "side", "record_id", "action", "couple_to"}
    assert record.params.get_param("action").schema["enum"] == ["sync", "couple", "uncouple",
                                                                "restore"]
    everything = dagbag.dags["bcdv_sync_all_modified"]
    syncs = {"sync_contact", "sync_currency", "sync_customer", "sync_salespeople",
             "sync_vendor"}
    assert {t.task_id for t in everything.tasks} == {*syncs, "check_failed_records"}
    check = everything.get_task("check_failed_records")
    assert check.upstream_task_ids == syncs and check.trigger_rule == "none_failed"
    assert "sync_vendor" in everything.get_task("sync_contact").upstream_task_ids


def test_shipped_dags_are_built_from_the_operators(dagbag) -> None:
    """The shipped DAGs run bcdv's operators (docs/operators.md), driven by the trigger form
    through their templated arguments, not task functions of their own."""
    from bcdv.airflow import operators as ops

    customer = dagbag.dags["bcdv_sync_customer"]
    kinds = {t.task_id: type(t).__name__ for t in customer.tasks}
    assert kinds == {
        "couple": "BcdvCoupleOperator", "commit": "BcdvCommitOperator",
        "check_failed_records": "BcdvCheckOperator",
        **{f"{d}.{s}": f"Bcdv{s.title()}Operator" for d in ("to_dataverse",
                                                             "to_business_central")
           for s in ("extract", "transform", "load")}}
    extract = customer.get_task("to_dataverse.extract")
    assert (extract.mode, extract.dry_run_arg, extract.since) == (
        "{{ 'full' if params.full else 'modified' }}", "{{ params.dry_run }}",
        "{{ params.resync_from }}")
    assert customer.render_template_as_native_obj
    full = dagbag.dags["bcdv_full_sync"]
    assert isinstance(full.get_task("lock_mappings"), ops.BcdvLockOperator)
    assert isinstance(full.get_task("release_locks"), ops.BcdvUnlockOperator)
    assert full.get_task("customer.to_dataverse.load").operator_class is ops.BcdvLoadOperator
    assert full.get_task("contact.couple").enabled == "{{ 'CONTACT' in params.mappings }}"
    everything = dagbag.dags["bcdv_sync_all_modified"]
    sync = everything.get_task("sync_customer")
    assert isinstance(sync, ops.BcdvSyncOperator) and sync.skip_when_locked
    assert not sync.per_task_run_id  # jobs carry the Airflow run id, as the alert expects
