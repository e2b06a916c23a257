"""One mapping run split into stages that run as separate processes (the Airflow tasks):
couple -> per pass extract -> plan -> load -> commit.

The run's first stage takes the mapping's run lock with the run id as owner
(:func:`bcdv.service.locks.acquire`); every stage re-takes it and renews it while it works
(:func:`bcdv.service.locks.holding`, the heartbeat); commit releases it. Stages pass on
nothing but a staging directory.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

from bcdv.engine.apply import commit, load
from bcdv.engine.context import SyncContext
from bcdv.engine.coupling import CouplingReport, match_couple
from bcdv.engine.extract import extract, extract_window
from bcdv.engine.plan import plan
from bcdv.engine.report import PassReport
from bcdv.engine.runner import failing_job
from bcdv.engine.staging import PassState, StagingPath
from bcdv.engine.staging import prune as prune_staging
from bcdv.mapping.model import Direction, TableMapping
from bcdv.service.locks import holding
from bcdv.settings import load_settings

log = logging.getLogger(__name__)


def couple_stage(ctx: SyncContext, mapping: TableMapping, run_id: str, *,
                 dry_run: bool = False) -> CouplingReport:
    """Match-based coupling before a full synchronisation (a dry run keeps the pairs it
    would couple in staging, for the dry run's extract)."""
    with holding(ctx.state, mapping.name, run_id), \
            failing_job(ctx, mapping.name, "coupling", run_id):
        report = match_couple(ctx, mapping, run_id=run_id, dry_run=dry_run)
    log.info("%s", report.summary())
    if dry_run:
        _assumed_file(ctx.staging, mapping.name, run_id).parent.mkdir(parents=True,
                                                                      exist_ok=True)
        _assumed_file(ctx.staging, mapping.name, run_id).write_text(
            json.dumps([list(p) for p in report.pairs]))
    return report


def _assumed_file(staging: StagingPath, mapping: str, run_id: str) -> StagingPath:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in run_id)
    return staging / mapping.lower() / safe / "assumed_pairs.json"


def _assumed(staging: StagingPath, mapping: str, run_id: str) -> list[list[str]]:
    path = _assumed_file(staging, mapping, run_id)
    return json.loads(path.read_text()) if path.exists() else []


def extract_stage(ctx: SyncContext, mapping: TableMapping, direction: str | Direction, *,
                  run_id: str, full: bool = False, dry_run: bool = False,
                  window: tuple[datetime, datetime] | None = None,
                  page_size: int | None = None) -> PassState:
    """Stage one pass's candidates: the modified (or, ``full``, all) records, or those
    modified in ``window`` (a backfill; the watermark stays)."""
    direction = Direction(direction)
    if page_size:  # records per page read (default: the adapters' own)
        ctx.business_central.page_size = ctx.dataverse.page_size = int(page_size)
    with holding(ctx.state, mapping.name, run_id), \
            failing_job(ctx, mapping.name, direction.value, run_id):
        if window is not None:
            state = extract_window(ctx, mapping, direction, since=window[0], until=window[1],
                                   run_id=run_id, dry_run=dry_run)
            log.info("backfill window %s .. %s: %d %s candidates", window[0].isoformat(),
                     window[1].isoformat(), state.extracted, direction.value)
            return state
        assumed = _assumed(ctx.staging, mapping.name, run_id) if dry_run else None
        state = extract(ctx, mapping, direction, mode="full" if full else "modified",
                        run_id=run_id, dry_run=dry_run, assumed_pairs=assumed)
    log.info("extracted %d %s candidates (%d from the retry set)", state.extracted,
             direction.value, state.retried)
    return state


def plan_stage(ctx: SyncContext, mapping: TableMapping, directory: str) -> PassState:
    """Transform and plan one staged pass."""
    state = PassState.load(directory)
    with holding(ctx.state, mapping.name, state.run_id), _failing(ctx, state):
        state = plan(ctx, mapping, state)
    log.info("plan: %s", state.planned)
    return state


def load_stage(ctx: SyncContext, mapping: TableMapping, directory: str) -> PassState:
    """Apply one staged pass's plan (safe to rerun: done actions are not redone)."""
    state = PassState.load(directory)
    with holding(ctx.state, mapping.name, state.run_id), _failing(ctx, state):
        load(ctx, mapping, state)
    return state


def commit_stage(ctx: SyncContext, mapping: TableMapping, directories: list[str], run_id: str,
                 *, release: bool = True) -> list[PassReport]:
    """Commit every staged pass (job log, watermarks), then release the run lock unless
    ``release`` is off, and prune old staged runs."""
    with holding(ctx.state, mapping.name, run_id):
        reports = [_commit(ctx, mapping, PassState.load(d)) for d in directories if d]
    if release:
        ctx.state.release_lock(mapping.name, run_id)
    days = load_settings().staging_retention_days
    pruned = prune_staging(ctx.staging, days)
    if pruned:
        log.info("removed %d staged run directories older than %s days", pruned, days)
    return reports


def _failing(ctx: SyncContext, state: PassState) -> Any:
    """The pass's job is finished as failed if the stage raises (a retry of the stage and
    the commit that follows it close the job again with the pass's outcome)."""
    return failing_job(ctx, state.mapping, state.direction, state.run_id, state.job_id)


def _commit(ctx: SyncContext, mapping: TableMapping, state: PassState) -> PassReport:
    with _failing(ctx, state):
        return commit(ctx, mapping, state)


def payload(report: PassReport, records: int = 10) -> dict[str, Any]:
    """A pass's counters and its first problem records (small enough for XCom)."""
    from bcdv.state.jsonsafe import json_safe

    data = report.to_dict()
    data["records"] = data["records"][:records]
    return json_safe(data)
