"""Task bodies of the sync DAGs: each is a few lines that call one core function.

Run locks: every DAG run that writes a mapping holds that mapping's run lock (owner = the
Airflow run id) from its first task to its last. The first task takes it; every later task
re-takes it (re-entrant, which renews it, and fails if another run has taken it over); the
commit task and a teardown task release it. A run of a mapping DAG that finds the lock held
by another run (a full sync, a record action, an earlier run) *skips* when it was scheduled
or backfilled, and *fails* when it was triggered by hand.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from bcdv.airflow.connections import endpoints_from_connections, staging_dir, state_url
from bcdv.engine.apply import commit, load
from bcdv.engine.context import SyncContext
from bcdv.engine.extract import extract
from bcdv.engine.plan import plan
from bcdv.engine.report import PassReport
from bcdv.engine.staging import PassState
from bcdv.engine.staging import prune as prune_staging
from bcdv.errors import SafetyStopError
from bcdv.mapping.loader import load_mapping_file
from bcdv.mapping.model import Direction, TableMapping
from bcdv.state import locks
from bcdv.state.jsonsafe import json_safe

log = logging.getLogger(__name__)
AUTOMATIC_RUN_TYPES = ("scheduled", "backfill", "asset_triggered", "asset_materialization")


def mappings_dir(dag_file: str | Path | None = None) -> Path:
    """The effective mappings: ``BCDV_MAPPINGS_DIR``, else include/mappings beside dags/."""
    env = os.environ.get("BCDV_MAPPINGS_DIR")
    if env:
        return Path(env)
    dags = Path(dag_file).resolve().parent if dag_file else Path.cwd() / "dags"
    return dags.parent / "include" / "mappings"


def _mapping(path: str) -> TableMapping:
    return load_mapping_file(path).mapping


def lock_stale_seconds() -> float:
    """A lock not renewed for this long is taken over (``BCDV_LOCK_STALE_SECONDS``, default
    180: every task renews its run's lock every ``BCDV_LOCK_HEARTBEAT_SECONDS`` while it
    runs; between two tasks of a run the scheduler must start the next one within it)."""
    return locks.lock_stale_seconds()


@contextmanager
def sync_context(mapping_file: str | None = None) -> Iterator[SyncContext]:
    """A SyncContext from the Airflow connections; closed afterwards."""
    from bcdv.mapping.loader import load_mappings

    mappings = load_mappings(Path(mapping_file).parent) if mapping_file else {}
    ctx = SyncContext.create(endpoints_from_connections(), state_url(), staging_dir(),
                             mappings)
    try:
        yield ctx
    finally:
        ctx.close()


def _run_type(run_type: Any) -> str:
    return str(getattr(run_type, "value", run_type) or "manual")


# -- run locks ----------------------------------------------------------------------------
def acquire_lock(mapping: str, run_id: str, run_type: Any, *, wait_seconds: float = 0) -> str:
    """First task of a run: take the mapping's run lock for this run.

    Raises AirflowSkipException (automatic runs) or AirflowFailException (manual runs) when
    another run holds it, with a message naming the holder.
    """
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    from bcdv.state.store import StateStore

    store = StateStore(state_url())
    try:
        store.acquire_lock(mapping, run_id, wait_seconds=wait_seconds,
                           stale_after_seconds=lock_stale_seconds())
    except SafetyStopError as exc:
        if _run_type(run_type) in AUTOMATIC_RUN_TYPES:
            raise AirflowSkipException(f"skipped: {exc}") from None
        raise AirflowFailException(str(exc)) from None
    log.info("run lock of %s held by %s", mapping, run_id)
    return run_id


def renew_lock(ctx: SyncContext, mapping: str, run_id: str) -> None:
    """Re-take the run lock (renews it); fails if another run has taken it over."""
    ctx.state.acquire_lock(mapping, run_id, stale_after_seconds=lock_stale_seconds())


@contextmanager
def holding_lock(ctx: SyncContext, mapping: str, run_id: str) -> Iterator[None]:
    """A task body of a locked run: re-take the run lock, then renew it in the background
    while the body runs (its heartbeat), so a live run never looks stale."""
    renew_lock(ctx, mapping, run_id)
    with ctx.state.heartbeat(mapping, run_id):
        yield


def release_lock(mapping: str, run_id: str) -> bool:
    """Release the mapping's run lock if this run holds it (teardown; idempotent)."""
    from bcdv.state.store import StateStore

    store = StateStore(state_url())
    holder = store.lock_holder(mapping)
    if holder is None or holder.owner != run_id:
        return False
    return store.release_lock(mapping, run_id)


# -- the stages of a mapping run ------------------------------------------------------------
def backfill_window(params: dict[str, Any], run_type: Any, interval: tuple[Any, Any]
                    ) -> tuple[datetime, datetime] | None:
    """The [since, until) window a run re-synchronises, or None for a watermark run.

    A backfill run uses its data interval; any run can be given ``resync_from`` /
    ``resync_until`` in its params (the trigger form) for the same effect.
    """
    from bcdv.clients.odata import parse_datetime

    start, end = params.get("resync_from"), params.get("resync_until")
    if start or end:
        since, until = parse_datetime(start), parse_datetime(end)
        if since is None or until is None:
            raise ValueError("give both resync_from and resync_until (ISO 8601 date-times)")
        return since, until
    if _run_type(run_type) == "backfill":
        if interval[0] is None or interval[1] is None or interval[0] >= interval[1]:
            raise ValueError(f"this backfill run has an empty data interval {interval}: the "
                             "mapping's schedule must be a cron expression")
        return interval[0], interval[1]
    return None


def couple(mapping_file: str, params: dict[str, Any], run_id: str) -> dict[str, Any]:
    """Match-based coupling before a full synchronisation (a no-op otherwise)."""
    if not params.get("full") or not params.get("couple_first", True):
        return {"coupled": 0, "skipped": True}
    from bcdv.engine.coupling import match_couple

    with sync_context(mapping_file) as ctx:
        mapping = _mapping(mapping_file)
        dry = bool(params.get("dry_run"))
        with holding_lock(ctx, mapping.name, run_id):
            report = match_couple(ctx, mapping, run_id=run_id, dry_run=dry)
        log.info("%s", report.summary())
        if dry:
            _save_assumed(ctx.staging, mapping.name, run_id, report.pairs)
        return {"coupled": report.coupled, "unmatched": report.unmatched}


def _assumed_file(staging: Path, mapping: str, run_id: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in run_id)
    return staging / mapping.lower() / safe / "assumed_pairs.json"


def _save_assumed(staging: Path, mapping: str, run_id: str, pairs: list[Any]) -> None:
    path = _assumed_file(staging, mapping, run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([list(p) for p in pairs]))


def _load_assumed(staging: Path, mapping: str, run_id: str) -> list[list[str]]:
    path = _assumed_file(staging, mapping, run_id)
    return json.loads(path.read_text()) if path.exists() else []


def extract_pass(mapping_file: str, direction: str, params: dict[str, Any], run_id: str,
                 window: tuple[datetime, datetime] | None = None) -> str:
    """Extract one pass; returns its staging directory (the only thing passed on)."""
    with sync_context(mapping_file) as ctx:
        mapping = _mapping(mapping_file)
        with holding_lock(ctx, mapping.name, run_id):
            return _extract(ctx, mapping, direction, params, run_id, window)


def _extract(ctx: SyncContext, mapping: TableMapping, direction: str, params: dict[str, Any],
             run_id: str, window: tuple[datetime, datetime] | None) -> str:
    dry = bool(params.get("dry_run"))
    if params.get("batch_size"):  # records per page read (default: the adapters' own)
        ctx.business_central.page_size = ctx.dataverse.page_size = int(params["batch_size"])
    if window is not None:
        from bcdv.engine.extract import extract_window

        state = extract_window(ctx, mapping, Direction(direction), since=window[0],
                               until=window[1], run_id=run_id, dry_run=dry)
        log.info("backfill window %s .. %s: %d %s candidates", window[0].isoformat(),
                 window[1].isoformat(), state.extracted, direction)
        return state.directory
    mode = "full" if params.get("full") else "modified"
    assumed = _load_assumed(ctx.staging, mapping.name, run_id) if dry else None
    state = extract(ctx, mapping, Direction(direction), mode=mode, run_id=run_id,
                    dry_run=dry, assumed_pairs=assumed)
    log.info("extracted %d %s candidates (%d from the retry set)", state.extracted,
             direction, state.retried)
    return state.directory


def plan_pass(mapping_file: str, directory: str) -> str:
    """Transform and plan one pass."""
    with sync_context(mapping_file) as ctx:
        mapping, state = _mapping(mapping_file), PassState.load(directory)
        with ctx.state.heartbeat(mapping.name, state.run_id):
            state = plan(ctx, mapping, state)
        log.info("plan: %s", state.planned)
        return directory


def load_pass(mapping_file: str, directory: str, try_number: int = 1) -> str:
    """Apply one pass's plan (safe to retry: done actions are not redone)."""
    with sync_context(mapping_file) as ctx:
        mapping, state = _mapping(mapping_file), PassState.load(directory)
        with holding_lock(ctx, mapping.name, state.run_id), _kill_switch(try_number):
            load(ctx, mapping, state)
        return directory


@contextmanager
def _kill_switch(try_number: int) -> Iterator[None]:
    """Test-only fault injection: with ``BCDV_TEST_KILL_LOAD_AFTER_WRITES=N``, the first try
    of a load task SIGKILLs its own process right after its N-th write (before the write's
    coupling is committed), as a crashed worker would."""
    limit = int(os.environ.get("BCDV_TEST_KILL_LOAD_AFTER_WRITES") or 0)
    if not limit or try_number > 1:
        yield
        return
    import signal

    from bcdv.engine import apply

    writes = {"n": 0}

    def hook(action: dict[str, Any]) -> None:
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
        mapping = _mapping(mapping_file)
        with holding_lock(ctx, mapping.name, run_id):
            reports = [commit(ctx, mapping, PassState.load(d)) for d in directories if d]
        log_reports(reports)
        if release:
            ctx.state.release_lock(mapping.name, run_id)
        days = float(os.environ.get("BCDV_STAGING_RETENTION_DAYS", "7"))
        pruned = prune_staging(ctx.staging, days)
        if pruned:
            log.info("removed %d staged run directories older than %s days", pruned, days)
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
    data = report.to_dict()
    data["records"] = data["records"][:10]
    return json_safe(data)  # type: ignore[no-any-return]
