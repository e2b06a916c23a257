"""Build the Airflow DAG of one table mapping from its YAML file (no network, no DB).

One DAG file per mapping (dags/bcdv_sync_<name>.py) calls :func:`mapping_dag`, so a broken
mapping is an import error of its own file while the other mappings' DAGs still load.

Shape: ``couple`` (takes the mapping's run lock, then match-based coupling for a full sync)
-> per pass a task group ``extract -> transform -> load`` (staged files under
``BCDV_STAGING_DIR`` passed by reference) -> ``commit`` (job log, watermarks, releases the
lock, updates the mapping's Asset) -> ``check_failed_records`` (fails the run when records
failed beyond the mapping's threshold). A failed run releases its lock in the DAG's failure
callback, which also sends the one alert of the run.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from functools import wraps
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, Asset, Param, TaskGroup, get_current_context, task

from bcdv.airflow import tasks
from bcdv.airflow.notifiers import BcdvAlertNotifier, record_task_error
from bcdv.mapping.loader import load_mapping_file
from bcdv.settings import load_settings

START_DATE = datetime(2025, 1, 1, tzinfo=timezone.utc)


def default_args() -> dict[str, Any]:
    """Retries with exponential backoff; ``BCDV_TASK_RETRIES`` and
    ``BCDV_RETRY_DELAY_SECONDS`` (read at parse time) override the defaults 2 and 30 s."""
    settings = load_settings()
    return {
        "owner": "bcdv",
        "retries": settings.task_retries,
        "retry_delay": timedelta(seconds=settings.retry_delay_seconds),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(minutes=10),
    }


DEFAULT_ARGS: dict[str, Any] = default_args()


def mapping_schedule(schedule: str | None) -> Any:
    """A cron schedule as data intervals ([previous tick, this tick)), so a backfill over a
    date range covers it with contiguous windows; other schedules are passed as given."""
    if not schedule or schedule in ("@once", "@continuous") or not (
            schedule.startswith("@") or len(schedule.split()) in (5, 6)):
        return schedule
    from airflow.sdk import CronDataIntervalTimetable

    return CronDataIntervalTimetable(schedule, timezone="UTC")


def mapping_asset(name: str) -> Asset:
    """The Asset a mapping's DAG updates after each successful run."""
    return Asset(name=f"bcdv.{name.lower()}", uri=f"bcdv://mapping/{name.lower()}")


def guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Keep a failing task's error (masked) for the run's alert, then re-raise."""
    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            from airflow.sdk.exceptions import AirflowSkipException

            if not isinstance(exc, AirflowSkipException):
                ctx = get_current_context()
                record_task_error(ctx["dag"].dag_id, ctx["run_id"], ctx["ti"].task_id, exc)
            raise
    return wrapper


class ReleaseLocks:
    """DAG failure callback: release the run locks this run still holds (idempotent)."""

    def __init__(self, mappings: list[str]) -> None:
        self.mappings = list(mappings)

    def __call__(self, context: Any) -> None:
        run_id = str(context.get("run_id") or getattr(context.get("dag_run"), "run_id", ""))
        for name in self.mappings:
            try:
                tasks.release_lock(name, run_id)
            except Exception:  # the alert must still go out
                import logging

                logging.getLogger(__name__).exception("could not release the lock of %s", name)


def failure_callbacks(mappings: list[str], thresholds: dict[str, int | None]) -> dict[str, Any]:
    """DAG keyword arguments: release locks + one alert when the run fails.

    A run whose records failed beyond a threshold fails in its last task
    (:func:`outcome_check`), so that alert is the only one: no second alert on success.
    """
    return {
        "on_failure_callback": [ReleaseLocks(mappings),
                                BcdvAlertNotifier("failure", mappings, thresholds)],
    }


def outcome_check(thresholds: dict[str, int | None],
                  trigger_rule: str = "all_success") -> Callable[..., Any]:
    """The run's last task: fails (no retry) when records failed beyond a mapping's
    threshold (``thresholds``: per mapping, None = the ``bcdv_failed_records_threshold``
    setting, default 0 = any new failure). It runs after every commit, so watermarks and
    retries are those of the committed passes; a dry run never fails it."""
    @task(task_id=tasks.CHECK_TASK, retries=0, trigger_rule=trigger_rule,
          doc_md="Fails when records failed in this run beyond the mapping's threshold "
                 "(see `bcdv errors list -m NAME` or the bcdv Errors page).")
    @guarded
    def check_failed_records(results: list[Any]) -> dict[str, Any]:
        ctx = get_current_context()
        return tasks.check_outcome(list(results or []), thresholds,
                                   bool(ctx["params"].get("dry_run")))
    return check_failed_records


def sync_params() -> dict[str, Param]:
    """The trigger form of a mapping DAG."""
    return {
        "full": Param(False, type="boolean", title="Full synchronisation",
                      description="BC's 'Run Full Synch.' for this mapping: process every "
                      "record, create uncoupled ones on the other side."),
        "couple_first": Param(True, type="boolean", title="Couple first",
                              description="With a full synchronisation: couple records "
                              "that match on the mapping's match criteria before creating "
                              "the unmatched ones."),
        "dry_run": Param(False, type="boolean", title="Dry run",
                         description="Plan only; write nothing."),
        "resync_from": Param(None, type=["null", "string"], format="date-time",
                             title="Re-synchronise from",
                             description="With 'until': re-synchronise the records modified "
                             "in this window (as a backfill run does with its data interval); "
                             "the watermark does not move."),
        "resync_until": Param(None, type=["null", "string"], format="date-time",
                              title="Re-synchronise until (exclusive)"),
        "lock_wait_seconds": Param(0, type="integer", minimum=0, title="Wait for the lock (s)",
                                   description="How long to wait when another run holds the "
                                   "mapping's run lock before skipping (scheduled/backfill "
                                   "runs) or failing (manual runs)."),
    }


def mapping_dag(file_name: str, dag_file: str | None = None) -> DAG:
    """The ``bcdv_sync_<name>`` DAG of one mapping file (found beside ``dag_file``'s dags/)."""
    path = tasks.mappings_dir(dag_file) / file_name
    mapping = load_mapping_file(path).mapping
    mapping_file = str(path)
    name = mapping.name

    @task(task_id="couple")
    @guarded
    def couple() -> dict[str, Any]:
        ctx = get_current_context()
        params = dict(ctx["params"])
        tasks.acquire_lock(name, ctx["run_id"], ctx["dag_run"].run_type,
                           wait_seconds=float(params.get("lock_wait_seconds") or 0))
        return tasks.couple(mapping_file, params, ctx["run_id"])

    @task(task_id="extract")
    @guarded
    def extract(direction: str) -> str:
        ctx = get_current_context()
        params = dict(ctx["params"])
        window = tasks.backfill_window(params, ctx["dag_run"].run_type,
                                       (ctx.get("data_interval_start"),
                                        ctx.get("data_interval_end")))
        return tasks.extract_pass(mapping_file, direction, params, ctx["run_id"], window)

    @task(task_id="transform")
    @guarded
    def transform(directory: str) -> str:
        return tasks.plan_pass(mapping_file, directory)

    @task(task_id="load")
    @guarded
    def load(directory: str) -> str:
        return tasks.load_pass(mapping_file, directory,
                               get_current_context()["ti"].try_number)

    @task(task_id="commit", outlets=[mapping_asset(name)])
    @guarded
    def commit(directories: list[str]) -> list[dict[str, Any]]:
        return tasks.commit_passes(mapping_file, directories, get_current_context()["run_id"])

    thresholds = {name: mapping.alerts.failed_records_threshold}
    with DAG(
        dag_id=mapping.dag_id,
        description=mapping.description or f"bcdv sync of {name}",
        schedule=mapping_schedule(mapping.schedule),
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        default_args=default_args(),
        tags=["bcdv", f"mapping:{name}"],
        params=sync_params(),
        **failure_callbacks([name], thresholds),
        doc_md=f"Synchronises **{name}**: {mapping.business_central.entity_set} "
               f"(Business Central) ⇄ {mapping.dataverse.entity_set} (Dataverse), "
               f"direction `{mapping.direction.value}`. Mapping file: `{Path(path).name}`.\n\n"
               "A backfill run re-synchronises the records modified in its data interval "
               "without moving the watermark. A run that finds the mapping locked by another "
               "run (e.g. `bcdv_full_sync`) skips when scheduled and fails when manual.",
    ) as dag:
        loaded = []
        previous = couple()
        for direction in mapping.passes():
            with TaskGroup(group_id=direction.value) as group:
                done = load(transform(extract(direction.value)))
            previous >> group
            previous = group
            loaded.append(done)
        outcome_check(thresholds)([commit(loaded)])
    return dag
