"""Build the Airflow DAG of one table mapping from its YAML file (no network, no DB).

One DAG file per mapping (dags/bcdv_sync_<name>.py) calls :func:`mapping_dag`, so a broken
mapping is an import error of its own file while the other mappings' DAGs still load.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, Asset, Param, TaskGroup, get_current_context, task

from bcdv.airflow import tasks
from bcdv.mapping.loader import load_mapping_file

DEFAULT_ARGS: dict[str, Any] = {
    "owner": "bcdv",
    "retries": 2,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": timedelta(minutes=10),
}


def mapping_asset(name: str) -> Asset:
    """The Asset a mapping's DAG updates after each successful run."""
    return Asset(name=f"bcdv.{name.lower()}", uri=f"bcdv://mapping/{name.lower()}")


def mapping_dag(file_name: str, dag_file: str | None = None) -> DAG:
    """The ``bcdv_sync_<name>`` DAG of one mapping file (found beside ``dag_file``'s dags/)."""
    path = tasks.mappings_dir(dag_file) / file_name
    mapping = load_mapping_file(path).mapping
    mapping_file = str(path)

    @task(task_id="couple")
    def couple() -> dict[str, Any]:
        ctx = get_current_context()
        return tasks.couple(mapping_file, dict(ctx["params"]), ctx["run_id"])

    @task(task_id="extract")
    def extract(direction: str) -> str:
        ctx = get_current_context()
        return tasks.extract_pass(mapping_file, direction, dict(ctx["params"]), ctx["run_id"])

    @task(task_id="transform")
    def transform(directory: str) -> str:
        return tasks.plan_pass(mapping_file, directory)

    @task(task_id="load")
    def load(directory: str) -> str:
        return tasks.load_pass(mapping_file, directory)

    @task(task_id="commit", outlets=[mapping_asset(mapping.name)])
    def commit(directories: list[str]) -> list[dict[str, Any]]:
        return tasks.commit_passes(mapping_file, directories)

    with DAG(
        dag_id=mapping.dag_id,
        description=mapping.description or f"bcdv sync of {mapping.name}",
        schedule=mapping.schedule,
        start_date=datetime(2025, 1, 1, tzinfo=timezone.utc),
        catchup=False,
        max_active_runs=1,
        default_args=DEFAULT_ARGS,
        tags=["bcdv", f"mapping:{mapping.name}"],
        params={
            "full": Param(False, type="boolean", title="Full synchronisation",
                          description="BC's 'Run Full Synch.' for this mapping: process every "
                          "record, create uncoupled ones on the other side."),
            "couple_first": Param(True, type="boolean", title="Couple first",
                                  description="With a full synchronisation: couple records "
                                  "that match on the mapping's match criteria before creating "
                                  "the unmatched ones."),
            "dry_run": Param(False, type="boolean", title="Dry run",
                             description="Plan only; write nothing."),
        },
        doc_md=f"Synchronises **{mapping.name}**: {mapping.business_central.entity_set} "
               f"(Business Central) ⇄ {mapping.dataverse.entity_set} (Dataverse), "
               f"direction `{mapping.direction.value}`. Mapping file: `{path.name}`.",
    ) as dag:
        loaded = []
        previous = couple()
        for direction in mapping.passes():
            with TaskGroup(group_id=direction.value) as group:
                done = load(transform(extract(direction.value)))
            previous >> group
            previous = group
            loaded.append(done)
        commit(loaded)
    return dag
