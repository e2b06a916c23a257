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
    for task in dag.tasks:
        assert task.retries >= 2
    assert set(dag.params.keys()) >= {"full", "dry_run"}
