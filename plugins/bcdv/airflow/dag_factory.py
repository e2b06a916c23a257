"""Build the Airflow DAG of one table mapping from its YAML file (no network, no DB).

One DAG file per mapping (dags/bcdv_sync_<name>.py) calls :func:`mapping_dag`, so a broken
mapping is an import error of its own file while the other mappings' DAGs still load.

Built from bcdv's stage operators (:mod:`bcdv.airflow.operators`, the ones users' DAGs can
use): ``couple`` (:class:`~bcdv.airflow.operators.BcdvCoupleOperator`: takes the mapping's
run lock, then match-based coupling for a full sync) -> per pass a task group ``extract ->
transform -> load`` (staged files under ``BCDV_STAGING_DIR`` passed by reference) ->
``commit`` (job log, watermarks, releases the lock, updates the mapping's Asset) ->
``check_failed_records`` (:class:`~bcdv.airflow.operators.BcdvCheckOperator`: fails the run
when records failed beyond the mapping's threshold). The trigger form's params drive the
operators' templated ``mode``/``dry_run``/window (the DAG renders templates as native
objects). A failed run releases its lock in the DAG's failure callback, which also sends the
one alert of the run.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from functools import wraps
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, Asset, Param, TaskGroup, get_current_context

from bcdv.airflow import tasks
from bcdv.airflow.notifiers import BcdvAlertNotifier, record_task_error
from bcdv.airflow.operators import (
    BcdvCheckOperator,
    BcdvCommitOperator,
    BcdvCoupleOperator,
    BcdvExtractOperator,
    BcdvLoadOperator,
    BcdvTransformOperator,
)
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


def outcome_check(thresholds: dict[str, int | None], results: list[Any],
                  trigger_rule: str = "all_success") -> BcdvCheckOperator:
    """The run's last task, ``check_failed_records``: fails (no retry) when records failed
    beyond a mapping's threshold (``thresholds``: per mapping, None = the
    ``bcdv_failed_records_threshold`` setting, default 0 = any new failure). It runs after
    every commit (``results``: their outputs), so watermarks and retries are those of the
    committed passes; a dry run never fails it."""
    return BcdvCheckOperator(task_id=tasks.CHECK_TASK, results=results, thresholds=thresholds,
                             dry_run="{{ params.dry_run }}", trigger_rule=trigger_rule)


# The trigger form's choices as the operators' templated arguments.
RUN_MODE = "{{ 'full' if params.full else 'modified' }}"
DRY_RUN = "{{ params.dry_run }}"


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
    name = mapping.name
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
        render_template_as_native_obj=True,
        **failure_callbacks([name], thresholds),
        doc_md=f"Synchronises **{name}**: {mapping.business_central.entity_set} "
               f"(Business Central) ⇄ {mapping.dataverse.entity_set} (Dataverse), "
               f"direction `{mapping.direction.value}`. Mapping file: `{Path(path).name}`.\n\n"
               "A backfill run re-synchronises the records modified in its data interval "
               "without moving the watermark. A run that finds the mapping locked by another "
               "run (e.g. `bcdv_full_sync`) skips when scheduled and fails when manual.",
    ) as dag:
        common: dict[str, Any] = {"mapping": name, "mappings_dir": str(Path(path).parent)}
        previous: Any = BcdvCoupleOperator(
            task_id="couple", mode=RUN_MODE, dry_run=DRY_RUN,
            couple_first="{{ params.couple_first }}",
            lock_wait="{{ params.lock_wait_seconds }}", **common)
        loaded = []
        for direction in mapping.passes():
            with TaskGroup(group_id=direction.value) as group:
                extracted = BcdvExtractOperator(
                    task_id="extract", direction=direction.value, mode=RUN_MODE,
                    dry_run=DRY_RUN, since="{{ params.resync_from }}",
                    until="{{ params.resync_until }}", **common)
                planned = BcdvTransformOperator(task_id="transform", staged=extracted.output,
                                                **common)
                done = BcdvLoadOperator(task_id="load", staged=planned.output, **common)
            previous >> group
            previous = group
            loaded.append(done.output)
        committed = BcdvCommitOperator(task_id="commit", staged=loaded,
                                       outlets=[mapping_asset(name)], **common)
        outcome_check(thresholds, [committed.output])
    return dag
