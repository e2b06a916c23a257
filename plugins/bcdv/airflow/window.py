"""Extract of a time window (backfill): the records modified in [since, until).

A thin wrapper over the engine's adapters, so the engine stays untouched: the pass is planned
and loaded as an incremental (``modified``) pass, which is idempotent (records already in
sync are "unchanged"), but its candidates are only the records whose modified-on falls in the
window, and it never moves the watermark (``latest_modified`` stays unset; commit only
advances watermarks from it). The retry set is left to the scheduled runs.
"""

from __future__ import annotations

from datetime import datetime

from bcdv.clients.odata import compare
from bcdv.engine.context import PassSides, SyncContext
from bcdv.engine.extract import pass_directory
from bcdv.engine.staging import PassState, write_jsonl
from bcdv.engine.transform import source_columns
from bcdv.mapping.model import Direction, TableMapping


def upper_bound_filter(system: str, modified_on: str, until: datetime) -> str:
    """``<modified_on> lt <until>`` in the precision the system's filter takes."""
    return compare(modified_on, "lt", until, milliseconds=system == "business_central")


def extract_window(ctx: SyncContext, mapping: TableMapping, direction: Direction, *,
                   since: datetime, until: datetime, run_id: str,
                   dry_run: bool = False) -> PassState:
    """Stage the records of one pass modified in [since, until); opens the job-log row
    (mode ``backfill``)."""
    if until <= since:
        raise ValueError(f"empty window: {since.isoformat()} .. {until.isoformat()}")
    sides = PassSides.of(mapping, direction)
    source = ctx.adapter(sides.source_system)
    job_id = ctx.state.start_job(mapping.name, direction.value, mode="backfill",
                                 run_id=run_id, dry_run=dry_run)
    state = PassState(mapping=mapping.name, direction=direction.value, mode="modified",
                      dry_run=dry_run, job_id=job_id, run_id=run_id,
                      directory=str(pass_directory(ctx.staging, mapping.name, run_id, direction)))
    try:
        signpost = source.signpost()
        state.source_file.unlink(missing_ok=True)
        key = sides.source.key
        seen: set[str] = set()
        upper = upper_bound_filter(sides.source_system, sides.source.modified_on, until)
        for page in source.iter_records(sides.source, since, source_columns(mapping, direction),
                                        extra_filter=upper):
            fresh = [r for r in page if r[key] not in seen]
            seen.update(r[key] for r in fresh)
            write_jsonl(state.source_file, fresh, append=True)
    except Exception as exc:
        ctx.state.finish_job(job_id, status="failed", message=str(exc)[:2000])
        raise
    state.extracted = len(seen)
    state.signpost = signpost.isoformat()
    state.latest_modified = None  # a backfill never moves the watermark
    state.save()
    ctx.state.update_job(job_id, signpost=signpost)
    return state
