"""The multi-mapping DAGs: ``bcdv_full_sync``, ``bcdv_sync_record``, ``bcdv_sync_all_modified``.

``bcdv_full_sync`` and ``bcdv_sync_all_modified`` are built from bcdv's operators
(:mod:`bcdv.airflow.operators`: the stage operators, ``BcdvSyncOperator``) and end with
``check_failed_records``, which fails the run (after every commit) when records failed beyond
a mapping's threshold.

Built from the lenient catalog of include/mappings (names, dependencies, directions): no
network or database access at parse time, and a broken mapping file fails only its own tasks.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import DAG, Param, TaskGroup, get_current_context, task

from bcdv.airflow import catalog, operations, tasks
from bcdv.airflow.dag_factory import (
    DRY_RUN,
    START_DATE,
    default_args,
    failure_callbacks,
    guarded,
    outcome_check,
)
from bcdv.airflow.operators import (
    BcdvCommitOperator,
    BcdvCoupleOperator,
    BcdvExtractOperator,
    BcdvLoadOperator,
    BcdvLockOperator,
    BcdvSplitOperator,
    BcdvSyncOperator,
    BcdvTransformOperator,
    BcdvUnlockOperator,
)
from bcdv.settings import load_settings


def _catalog(dag_file: str | None) -> tuple[dict[str, catalog.MappingEntry], list[list[str]]]:
    entries = catalog.scan(tasks.mappings_dir(dag_file))
    return entries, catalog.waves(entries)


def _thresholds(entries: dict[str, catalog.MappingEntry]) -> dict[str, int | None]:
    return {n: e.threshold for n, e in entries.items()}


def full_sync_dag(dag_file: str | None = None) -> DAG:
    """``bcdv_full_sync``: every selected mapping in full mode, dependency wave by wave."""
    entries, waves = _catalog(dag_file)
    names = list(entries)
    parallel = load_settings().max_parallel_loads

    with DAG(
        dag_id="bcdv_full_sync",
        description="Full synchronisation of the selected mappings, in dependency order",
        schedule=None,
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        default_args=default_args(),
        tags=["bcdv", "full-sync"],
        params={
            "mappings": Param(names, type="array", title="Mappings",
                              items={"type": "string", "enum": names}, examples=names,
                              description="Which mappings to synchronise (default: all)."),
            "dry_run": Param(False, type="boolean", title="Dry run",
                             description="Plan only; write nothing."),
            "couple_first": Param(True, type="boolean", title="Couple first",
                                  description="Couple records that match on each mapping's "
                                  "match criteria before creating the unmatched ones; off = "
                                  "create every uncoupled record."),
            "chunk_size": Param(5000, type="integer", minimum=1, title="Chunk size",
                                description="Planned records per parallel load task."),
            "batch_size": Param(None, type=["null", "integer"], minimum=1,
                                title="Batch size",
                                description="Records per page read (default: 1,000 from "
                                "Business Central, 5,000 from Dataverse)."),
            "lock_wait_seconds": Param(0, type="integer", minimum=0,
                                       title="Wait for the locks (s)",
                                       description="How long to wait for running syncs of "
                                       "the selected mappings to finish before failing."),
        },
        render_template_as_native_obj=True,
        **failure_callbacks(names, _thresholds(entries)),
        doc_md="Full synchronisation (BC's 'Run Full Synch.') of the selected mappings, "
               "dependency wave by wave. Holds the run lock of every selected mapping for the "
               "whole run, so scheduled runs of those mappings' DAGs skip meanwhile; the "
               "watermarks it commits are where the scheduled runs continue.",
    ) as dag:
        locked = BcdvLockOperator(task_id="lock_mappings", mappings="{{ params.mappings }}",
                                  known=names, lock_wait="{{ params.lock_wait_seconds }}")
        previous: list[Any] = [locked]
        last: list[Any] = []
        commits: list[Any] = []
        for wave in waves:
            current = []
            for name in wave:
                entry = entries[name]
                common: dict[str, Any] = {"mapping": name,
                                          "mappings_dir": str(entry.path.parent)}
                chosen = f"{{{{ {name!r} in params.mappings }}}}"
                with TaskGroup(group_id=entry.slug) as group:
                    step: Any = BcdvCoupleOperator(
                        task_id="couple", mode="full", dry_run=DRY_RUN, lock=False,
                        couple_first="{{ params.couple_first }}", enabled=chosen, **common)
                    directories = []
                    for direction in entry.passes:
                        with TaskGroup(group_id=direction):
                            extracted = BcdvExtractOperator(
                                task_id="extract", direction=direction, mode="full",
                                dry_run=DRY_RUN, batch_size="{{ params.batch_size }}",
                                enabled=chosen, **common)
                            step >> extracted
                            planned = BcdvTransformOperator(
                                task_id="transform", staged=extracted.output, **common)
                            chunks = BcdvSplitOperator(task_id="split", staged=planned.output,
                                                       chunk_size="{{ params.chunk_size }}")
                            loaded = BcdvLoadOperator.partial(
                                task_id="load", max_active_tis_per_dagrun=parallel, **common
                            ).expand(staged=chunks.output)
                        step = loaded
                        directories.append(planned.output)
                    committed = BcdvCommitOperator(task_id="commit", staged=directories,
                                                   chunked=True, release_lock=False, **common)
                    step >> committed
                    commits.append(committed.output)
                for up in previous:
                    up >> group
                current.append(group)
            previous, last = current, current
        release = BcdvUnlockOperator(task_id="release_locks", locked=locked.output)
        for group in last or [locked]:
            group >> release
        release.as_teardown(setups=locked)
        outcome_check(_thresholds(entries), commits)
    return dag


def sync_record_dag(dag_file: str | None = None) -> DAG:
    """``bcdv_sync_record``: BC's per-record actions from a trigger form."""
    entries, _ = _catalog(dag_file)
    names = list(entries)
    files = {n: str(e.path) for n, e in entries.items()}

    @task(task_id="record_action")
    @guarded
    def record_action() -> dict[str, Any]:
        ctx = get_current_context()
        params = dict(ctx["params"])
        name = params.get("mapping")
        if name not in files:
            from airflow.sdk.exceptions import AirflowFailException

            raise AirflowFailException(f"unknown mapping {name!r}; known: {', '.join(names)}")
        return operations.record_action(files[name], params, ctx["run_id"])

    with DAG(
        dag_id="bcdv_sync_record",
        description="Synchronise, couple, uncouple or restore one record",
        schedule=None,
        start_date=START_DATE,
        catchup=False,
        default_args={**default_args(), "retries": 0},
        tags=["bcdv", "record"],
        params={
            "mapping": Param(names[0] if names else "", type="string", enum=names or [""],
                             title="Mapping"),
            "side": Param("business_central", type="string", title="Side of the record id",
                          enum=list(operations.SIDES),
                          values_display={"business_central": "Business Central",
                                          "dataverse": "Dataverse"}),
            "record_id": Param("", type="string", title="Record id",
                               description="The record's id (GUID) on that side."),
            "action": Param("sync", type="string", enum=list(operations.ACTIONS),
                            title="Action",
                            values_display={"sync": "Synchronize now",
                                            "couple": "Couple to the record below",
                                            "uncouple": "Delete coupling",
                                            "restore": "Restore (clear Skipped)"}),
            "couple_to": Param(None, type=["null", "string"], title="Couple to id",
                               description="With 'couple': the id of the record on the "
                               "other side."),
            "sync_after_couple": Param(True, type="boolean",
                                       title="Synchronize after coupling"),
            "dry_run": Param(False, type="boolean", title="Dry run (sync only)"),
            "lock_wait_seconds": Param(60, type="integer", minimum=0,
                                       title="Wait for the mapping's lock (s)"),
        },
        **failure_callbacks([], _thresholds(entries)),
        doc_md="BC's record actions: *Synchronize* (a forced single-record sync, Skipped "
               "cleared first), *Couple* to a chosen record, *Delete coupling*, *Restore*.",
    ) as dag:
        record_action()
    return dag


def sync_all_modified_dag(dag_file: str | None = None) -> DAG:
    """``bcdv_sync_all_modified``: every mapping's incremental run, in dependency order."""
    entries, waves = _catalog(dag_file)
    names = list(entries)

    def make(name: str) -> Any:
        # The Airflow run id names the jobs (the alert and the pages find them by it); a
        # mapping whose own run still holds its lock after the wait is skipped; the run's
        # outcome is judged once, in check_failed_records.
        return BcdvSyncOperator(task_id=f"sync_{entries[name].slug}", mapping=name,
                                mappings_dir=str(entries[name].path.parent), mode="modified",
                                dry_run=DRY_RUN, lock_wait="{{ params.lock_wait_seconds }}",
                                skip_when_locked=True, per_task_run_id=False,
                                fail_on_failed_records=False, trigger_rule="none_failed")

    with DAG(
        dag_id="bcdv_sync_all_modified",
        description="Synchronize modified records of every mapping, dependencies first",
        schedule=None,
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        default_args=default_args(),
        tags=["bcdv", "all-modified"],
        params={
            "dry_run": Param(False, type="boolean", title="Dry run"),
            "lock_wait_seconds": Param(300, type="integer", minimum=0,
                                       title="Wait for a mapping's lock (s)",
                                       description="A mapping whose own run is still going "
                                       "after this long is skipped."),
        },
        render_template_as_native_obj=True,
        **failure_callbacks(names, _thresholds(entries)),
        doc_md="BC's 'Synchronize Modified Records': one task per mapping, dependency wave "
               "by wave. Each mapping's task holds that mapping's run lock while it runs.",
    ) as dag:
        previous: list[Any] = []
        synced: list[Any] = []
        for wave in waves:
            current = [make(name) for name in wave]
            for up in previous:
                for down in current:
                    up >> down
            previous = current
            synced += current
        # A mapping skipped for its lock has no reports (None): the check still runs.
        outcome_check(_thresholds(entries), [t.output for t in synced],
                      trigger_rule="none_failed")
    return dag

