"""Extract: the candidate source records of a pass, staged to a file.

Candidates are the retry set (couplings whose last sync in this direction failed and are not
skipped, plus creates that were started but never confirmed) and the records modified at or
after the watermark. The pass's signpost, the source service's clock before the first read,
caps how far the watermark may later move.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from bcdv.clients.odata import Guid, chunks, compare, id_filter, parse_datetime
from bcdv.engine.adapters import Adapter
from bcdv.engine.context import PassSides, SyncContext
from bcdv.engine.staging import PassState, write_jsonl
from bcdv.engine.transform import source_columns
from bcdv.mapping.model import Direction, Side, TableMapping

MODES = ("modified", "full", "record")


def pass_directory(staging: Path, mapping: str, run_id: str, direction: Direction) -> Path:
    """Where a pass stages its files."""
    safe_run = "".join(c if c.isalnum() or c in "-_." else "_" for c in run_id)
    return staging / mapping.lower() / safe_run / direction.value


def extract(
    ctx: SyncContext, mapping: TableMapping, direction: Direction, *, mode: str = "modified",
    run_id: str, dry_run: bool = False, assumed_pairs: list[list[str]] | None = None,
    record_ids: list[str] | None = None,
) -> PassState:
    """Stage the candidates of one pass; opens the pass's job-log row.

    Modes: ``modified`` (retry set + records modified since the watermark), ``full`` (every
    record in the filter), ``record`` (just ``record_ids``, forced, watermark untouched).
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; allowed: {', '.join(MODES)}")
    sides = PassSides.of(mapping, direction)
    source = ctx.adapter(sides.source_system)
    job_id = ctx.state.start_job(mapping.name, direction.value, mode=mode, run_id=run_id,
                                 dry_run=dry_run)
    state = PassState(mapping=mapping.name, direction=direction.value, mode=mode,
                      dry_run=dry_run, job_id=job_id, run_id=run_id,
                      directory=str(pass_directory(ctx.staging, mapping.name, run_id, direction)),
                      assumed_pairs=[list(p) for p in assumed_pairs or []])
    try:
        signpost = source.signpost()
    except Exception as exc:
        # The service cannot be reached: nothing was read or written; the job says why and
        # the run fails (Airflow retries it; BC keeps its job-queue entry Ready likewise).
        ctx.state.finish_job(job_id, status="failed", message=str(exc)[:2000])
        raise
    since = None if mode == "full" else ctx.state.get_watermark(mapping.name, direction.value)
    columns = source_columns(mapping, direction)
    key, modified_col = sides.source.key, sides.source.modified_on

    seen: set[str] = set()
    latest: datetime | None = None
    state.source_file.unlink(missing_ok=True)
    if mode == "record":
        rows = source.fetch(sides.source, sorted(set(record_ids or [])), columns)
        write_jsonl(state.source_file, rows, append=True)
        state.extracted = len(rows)
        state.signpost = signpost.isoformat()
        state.save()
        return state
    extra = _echo_filter(mapping, direction, mode, source)
    for page in source.iter_records(sides.source, since, columns, extra_filter=extra):
        fresh = [r for r in page if r[key] not in seen]
        seen.update(r[key] for r in fresh)
        for row in fresh:
            ts = parse_datetime(row.get(modified_col))
            if ts and (latest is None or ts > latest):
                latest = ts
        write_jsonl(state.source_file, fresh, append=True)

    retry = _retry_ids(ctx, mapping, sides, creates=mode == "full" or not mapping.sync_only_coupled)
    retry -= seen
    if retry:
        rows = _fetch_in_filter(source, sides.source, sorted(retry), columns)
        write_jsonl(state.source_file, rows, append=True)
        state.retried = len(rows)
        seen.update(r[key] for r in rows)
    state.extracted = len(seen)
    state.signpost = signpost.isoformat()
    state.latest_modified = latest.isoformat() if latest else None
    state.save()
    ctx.state.update_job(job_id, signpost=signpost, latest_modified=latest)
    return state


def _echo_filter(mapping: TableMapping, direction: Direction, mode: str,
                 source: object) -> str | None:
    """BC's echo suppression: a scheduled Dataverse -> BC pass of a bidirectional mapping
    with no field mapped only towards BC skips rows last modified by the integration user
    (our own writes). Full and single-record runs see every row."""
    if (direction is not Direction.TO_BUSINESS_CENTRAL or mode != "modified"
            or mapping.direction is not Direction.BIDIRECTIONAL):
        return None
    if any(f.enabled and f.effective_direction is Direction.TO_BUSINESS_CENTRAL
           for f in mapping.fields):
        return None
    user_id = getattr(source, "user_id", None)
    return compare("_modifiedby_value", "ne", Guid(user_id)) if user_id else None


def _fetch_in_filter(source: Adapter, side: Side, ids: list[str],
                     columns: Sequence[str]) -> list[dict[str, Any]]:
    """Retry-set records by id that still match the side's filter: a failed record changed
    so that it left the mapping's filter is not retried (nor its error counted again)."""
    rows: list[dict[str, Any]] = []
    for group in chunks(ids, 40):
        for page in source.iter_records(side, None, columns,
                                        extra_filter=id_filter(side.key, group)):
            rows.extend(page)
    return rows


def _retry_ids(ctx: SyncContext, mapping: TableMapping, sides: PassSides, *,
               creates: bool) -> set[str]:
    """The retry set (see StateStore.retry_source_ids); failed creates are retried only when
    the pass may create records (BC would wait for them to change again; we retry, so no
    change is left behind)."""
    direction = "to_dataverse" if sides.target_system == "dataverse" else "to_business_central"
    return ctx.state.retry_source_ids(mapping.name, direction, failed_creates=creates)
