"""Task bodies of the sync DAGs: each turns task context into one call of the service layer
(:mod:`bcdv.service.stages`, :mod:`bcdv.service.locks`).

Run locks: every DAG run that writes a mapping holds that mapping's run lock (owner = the
Airflow run id) from its first task to its last. The first task takes it; every later task
re-takes it (re-entrant, which renews it, and fails if another run has taken it over) and
renews it while it runs; the commit task and a teardown task release it. A run of a mapping
DAG that finds the lock held by another run (a full sync, a record action, an earlier run)
*skips* when it was scheduled or backfilled, and *fails* when it was triggered by hand.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from bcdv.airflow import hooks
from bcdv.engine.context import SyncContext
from bcdv.engine.report import PassReport
from bcdv.errors import SafetyStopError
from bcdv.mapping.loader import load_mapping_file
from bcdv.mapping.model import TableMapping
from bcdv.service import locks, outcome, stages
from bcdv.settings import load_settings
from bcdv.state.store import StateStore

log = logging.getLogger(__name__)
AUTOMATIC_RUN_TYPES = ("scheduled", "backfill", "asset_triggered", "asset_materialization")
CHECK_TASK = "check_failed_records"


def mappings_dir(dag_file: str | Path | None = None) -> Path:
    """The effective mappings: ``BCDV_MAPPINGS_DIR``, else include/mappings beside the DAGs
    folder of ``dag_file``, else the settings' default."""
    settings = load_settings()
    if settings.explicit_mappings_dir is not None or not dag_file:
        return settings.mappings_dir
    return Path(dag_file).resolve().parent.parent / "include" / "mappings"


def _mapping(path: str) -> TableMapping:
    return load_mapping_file(path).mapping


def state_store() -> StateStore:
    """The state store of the connections (through the hooks)."""
    return StateStore(hooks.state_url())


@contextmanager
def sync_context(mapping_file: str | None = None) -> Iterator[SyncContext]:
    """A SyncContext from the Airflow connections (through the hooks); closed afterwards."""
    from bcdv.mapping.loader import load_mappings

    ctx = hooks.sync_context(load_mappings(Path(mapping_file).parent) if mapping_file else {})
    try:
        yield ctx
    finally:
        ctx.close()


def _run_type(run_type: Any) -> str:
    return str(getattr(run_type, "value", run_type) or "manual")


def refused(exc: SafetyStopError, run_type: Any) -> Exception:
    """A run refused by a lock: skipped when automatic, failed when triggered by hand."""
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    if _run_type(run_type) in AUTOMATIC_RUN_TYPES:
        return AirflowSkipException(f"skipped: {exc}")
    return AirflowFailException(str(exc))


# -- run locks ----------------------------------------------------------------------------
def acquire_lock(mapping: str, run_id: str, run_type: Any, *, wait_seconds: float = 0) -> str:
    """First task of a run: take the mapping's run lock for this run.

    Raises AirflowSkipException (automatic runs) or AirflowFailException (manual runs) when
    another run holds it, with a message naming the holder.
    """
    try:
        locks.acquire(state_store(), mapping, run_id, wait_seconds=wait_seconds)
    except SafetyStopError as exc:
        raise refused(exc, run_type) from None
    return run_id


def release_lock(mapping: str, run_id: str) -> bool:
    """Release the mapping's run lock if this run holds it (teardown; idempotent)."""
    return locks.release(state_store(), mapping, run_id)


# -- the stages of a mapping run ------------------------------------------------------------
def backfill_window(params: dict[str, Any], run_type: Any, interval: tuple[Any, Any]
                    ) -> tuple[datetime, datetime] | None:
    """The [since, until) window a run re-synchronises, or None for a watermark run.

    A backfill run uses its data interval; any run can be given ``resync_from`` /
    ``resync_until`` in its params (the trigger form) for the same effect.
    """
    from bcdv.service.validate import window

    start, end = params.get("resync_from"), params.get("resync_until")
    if start or end:
        if not (start and end):
            raise ValueError("give both resync_from and resync_until (ISO 8601 date-times)")
        return window(start, end)
    if _run_type(run_type) == "backfill":
        if interval[0] is None or interval[1] is None or interval[0] >= interval[1]:
            raise ValueError(f"this backfill run has an empty data interval {interval}: the "
                             "mapping's schedule must be a cron expression")
        return window(interval[0], interval[1])
    return None


def couple(mapping_file: str, params: dict[str, Any], run_id: str) -> dict[str, Any]:
    """Match-based coupling before a full synchronisation (a no-op otherwise)."""
    if not params.get("full") or not params.get("couple_first", True):
        return {"coupled": 0, "skipped": True}
    with sync_context(mapping_file) as ctx:
        report = stages.couple_stage(ctx, _mapping(mapping_file), run_id,
                                     dry_run=bool(params.get("dry_run")))
        return {"coupled": report.coupled, "unmatched": report.unmatched}


def extract_pass(mapping_file: str, direction: str, params: dict[str, Any], run_id: str,
                 window: tuple[datetime, datetime] | None = None) -> str:
    """Extract one pass; returns its staging directory (the only thing passed on)."""
    with sync_context(mapping_file) as ctx:
        state = stages.extract_stage(ctx, _mapping(mapping_file), direction, run_id=run_id,
                                     full=bool(params.get("full")),
                                     dry_run=bool(params.get("dry_run")), window=window,
                                     page_size=params.get("batch_size"))
        return state.directory


def plan_pass(mapping_file: str, directory: str) -> str:
    """Transform and plan one pass."""
    with sync_context(mapping_file) as ctx:
        stages.plan_stage(ctx, _mapping(mapping_file), directory)
        return directory


def load_pass(mapping_file: str, directory: str, try_number: int = 1) -> str:
    """Apply one pass's plan (safe to retry: done actions are not redone)."""
    with sync_context(mapping_file) as ctx, _kill_switch(try_number):
        stages.load_stage(ctx, _mapping(mapping_file), directory)
        return directory


@contextmanager
def _kill_switch(try_number: int) -> Iterator[None]:
    """Test-only fault injection: with ``BCDV_TEST_KILL_LOAD_AFTER_WRITES=N``, the first try
    of a load task SIGKILLs its own process right after its N-th write (before the write's
    coupling is committed), as a crashed worker would."""
    limit = load_settings().test_kill_load_after_writes
    if not limit or try_number > 1:
        yield
        return
    import signal

    from bcdv.engine import apply

    writes = {"n": 0}

    def hook(action: Any) -> None:
        writes["n"] += 1
        if writes["n"] >= limit:
            log.warning("fault injection: killing the load task after %d writes", writes["n"])
            os.kill(os.getpid(), signal.SIGKILL)

    previous, apply.after_write_hook = apply.after_write_hook, hook
    try:
        yield
    finally:
        apply.after_write_hook = previous


def commit_passes(mapping_file: str, directories: list[str], run_id: str,
                  release: bool = True) -> list[dict[str, Any]]:
    """Commit every pass (job log, watermarks), release the run lock; small reports (XCom)."""
    with sync_context(mapping_file) as ctx:
        reports = stages.commit_stage(ctx, _mapping(mapping_file), directories, run_id,
                                      release=release)
        log_reports(reports)
        return [small_report(r) for r in reports]


def log_reports(reports: list[PassReport]) -> None:
    """Each pass's summary and its first problem records, in the task log."""
    for r in reports:
        log.info("%s", r.summary())
        for rec in r.records[:20]:
            log.info("  %s %s (%s): %s", rec.result or rec.action, rec.source_id, rec.name,
                     rec.message)


def small_report(report: PassReport) -> dict[str, Any]:
    """The counters of a pass (XCom stays small; records stay in the state store)."""
    return stages.payload(report)


# -- the run's outcome ------------------------------------------------------------------------
def default_threshold() -> int:
    """The failed-records threshold of mappings without their own: the Airflow Variable
    ``bcdv_failed_records_threshold``, else ``BCDV_FAILED_RECORDS_THRESHOLD``, else 0 (any
    new failure fails the run)."""
    from bcdv.airflow.notifiers import setting

    raw = setting("bcdv_failed_records_threshold")
    try:
        return max(int(raw), 0) if raw not in (None, "") else 0
    except ValueError:
        log.warning("bcdv_failed_records_threshold=%r is not a whole number: using 0 (any "
                    "failure)", raw)
        return 0


def check_outcome(results: list[Any], thresholds: dict[str, int | None],
                  dry_run: bool) -> dict[str, Any]:
    """The last task of a run: fail it (no retry) when records failed beyond a mapping's
    threshold, after everything is committed; the DAG's failure callback sends the alert.

    ``results``: the commit tasks' return values (lists of pass reports; None for a skipped
    task).
    """
    reports = [r for result in results if result for r in result]
    verdict = outcome.run_verdict(reports, thresholds, dry_run, default=default_threshold())
    log.info("%s", verdict.message)
    if not verdict.ok:
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(verdict.message)
    return {"ok": True, "dry_run": verdict.dry_run, "message": verdict.message}
