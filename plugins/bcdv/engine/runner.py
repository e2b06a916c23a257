"""Run passes end to end in one process (the CLI and tests; Airflow runs the stages as tasks)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime

from bcdv.engine.apply import commit, load
from bcdv.engine.context import SyncContext
from bcdv.engine.coupling import match_columns, match_couple
from bcdv.engine.extract import PreRead, extract, extract_window, pass_directory, pre_read
from bcdv.engine.plan import plan, planned_actions
from bcdv.engine.report import PassReport
from bcdv.errors import error_text
from bcdv.mapping.model import Direction, TableMapping


def run_pass(ctx: SyncContext, mapping: TableMapping, direction: Direction, *,
             mode: str = "modified", dry_run: bool = False, run_id: str | None = None,
             assumed_pairs: list[list[str]] | None = None,
             record_ids: list[str] | None = None,
             window: tuple[datetime, datetime] | None = None,
             progress: Callable[[int, int], None] | None = None,
             preread: PreRead | None = None) -> PassReport:
    """Extract, plan, load and commit one pass (``progress(done, total)`` while loading).

    ``window=(since, until)`` re-synchronises the records modified in it (a backfill: the
    watermark is left alone). ``preread``: a full pass's source records, already read.
    """
    rid = run_id or _run_id()
    if not mapping.direction.includes(direction):
        return _not_configured(ctx, mapping, direction, mode, rid, dry_run)
    with failing_job(ctx, mapping.name, direction.value, rid):
        if window is not None:
            state = extract_window(ctx, mapping, direction, since=window[0], until=window[1],
                                   run_id=rid, dry_run=dry_run)
        else:
            state = extract(ctx, mapping, direction, mode=mode, run_id=rid, dry_run=dry_run,
                            assumed_pairs=assumed_pairs, record_ids=record_ids,
                            preread=preread)
        if dry_run:
            plan(ctx, mapping, state)
        else:
            # One chunk is planned while the one before it is written (the plan file is
            # written as before, for the record and a rerun of load).
            load(ctx, mapping, state, progress=progress,
                 actions=planned_actions(ctx, mapping, state))
        return commit(ctx, mapping, state)


@contextmanager
def failing_job(ctx: SyncContext, mapping: str, direction: str, run_id: str,
                job_id: str | None = None) -> Iterator[None]:
    """A pass's block: if it raises, the pass's job (``job_id``, else this run's running
    jobs of the mapping and direction, as extract opens the job itself) is finished as
    failed with the error text and a finish time, then the error propagates."""
    try:
        yield
    except BaseException as exc:
        try:
            ids = [job_id] if job_id else [j["id"] for j in ctx.state.running_jobs(
                mapping, run_id) if j.get("direction") == direction]
            ctx.state.close_jobs(ids, status="failed", message=error_text(exc))
        except Exception:  # the store itself failed: the original error matters more
            logging.getLogger(__name__).exception("could not close the failed job")
        raise


def sync_mapping(ctx: SyncContext, mapping: TableMapping, *, mode: str = "modified",
                 dry_run: bool = False, run_id: str | None = None,
                 couple_first: bool = True, lock_wait: float = 0,
                 window: tuple[datetime, datetime] | None = None) -> list[PassReport]:
    """Every pass of a mapping in BC's order (to Dataverse first, then back).

    A full synchronisation first couples matching records (match-based coupling), so records
    present on both sides are updated rather than duplicated.
    """
    rid = run_id or _run_id()
    # One run per mapping at a time: a second one refuses (or waits up to lock_wait seconds)
    # rather than writing the same records twice. Re-entrant for the same run id.
    with ctx.state.mapping_lock(mapping.name, rid, wait_seconds=lock_wait):
        assumed: list[list[str]] = []
        shared: PreRead | None = None
        ctx.reference_tables = {}  # read once for both passes (engine/lookups.py)
        try:
            if mode == "full" and couple_first:
                shared = _shared_read(ctx, mapping, window, rid)
                coupling = match_couple(ctx, mapping, run_id=rid, dry_run=dry_run,
                                        bc_rows=shared.rows() if shared is not None else None)
                assumed = [list(p) for p in coupling.pairs] if dry_run else []
                del coupling  # its pairs and unmatched ids are not kept through the passes
            return [run_pass(ctx, mapping, d, mode=mode, dry_run=dry_run, run_id=rid,
                             assumed_pairs=assumed, window=window,
                             preread=shared if d is Direction.TO_DATAVERSE else None)
                    for d in mapping.passes()]
        finally:
            ctx.reference_tables = None
            if shared is not None:
                shared.discard()


def _shared_read(ctx: SyncContext, mapping: TableMapping,
                 window: tuple[datetime, datetime] | None, run_id: str) -> PreRead | None:
    """A full synchronisation whose first pass reads Business Central reads it once, for
    match-based coupling and that pass (with the pass's signpost taken before the read),
    into a file in that pass's staging directory."""
    if (window is not None or not mapping.match_groups()
            or not mapping.direction.includes(Direction.TO_DATAVERSE)
            or mapping.passes()[0] is not Direction.TO_DATAVERSE):
        return None
    directory = pass_directory(ctx.staging, mapping.name, run_id, Direction.TO_DATAVERSE)
    return pre_read(ctx, mapping, Direction.TO_DATAVERSE,
                    [mapping.business_central.key, *match_columns(mapping)],
                    file=directory / "preread.jsonl")


def _not_configured(ctx: SyncContext, mapping: TableMapping, direction: Direction, mode: str,
                    run_id: str, dry_run: bool) -> PassReport:
    """BC finishes such a job at once with a message; so do we (no record is touched)."""
    job_id = ctx.state.start_job(mapping.name, direction.value, mode=mode, run_id=run_id,
                                 dry_run=dry_run)
    message = (f"The integration table mapping {mapping.name} is not configured for "
               f"{direction.value} synchronization (its direction is "
               f"{mapping.direction.value}).")
    ctx.state.finish_job(job_id, status="not_configured", message=message)
    return PassReport(mapping.name, direction.value, mode, dry_run, job_id, 0, note=message)


def _run_id() -> str:
    return f"manual__{uuid.uuid4().hex[:12]}"
