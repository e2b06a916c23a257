"""Extract: the candidate source records of a pass, staged to a file.

Candidates are the retry set (couplings whose last sync in this direction failed and are not
skipped, plus creates that were started but never confirmed) and the records modified at or
after the watermark. The pass's signpost, the source service's clock before the first read,
caps how far the watermark may later move.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
from typing import Any

import pandas as pd

from bcdv.clients.http import PageQuery
from bcdv.clients.odata import Guid, chunks, compare, id_filter, parse_datetime
from bcdv.engine.actions import Insert, read_plan
from bcdv.engine.adapters import Adapter
from bcdv.engine.context import PassSides, SyncContext
from bcdv.engine.created import settle_frame
from bcdv.engine.lost_creates import recover_lost_bc_creates
from bcdv.engine.matches import matches
from bcdv.engine.retry_set import retry_source_ids
from bcdv.engine.staging import (
    PassState,
    SeenIds,
    StagingPath,
    location,
    read_jsonl,
    safe_name,
    write_jsonl,
)
from bcdv.engine.transform import side_fields, source_columns
from bcdv.engine.updates import settle_updates
from bcdv.engine.values import TOLERANCE, hash_frame, utc_times
from bcdv.errors import error_text
from bcdv.mapping.model import Direction, Side, TableMapping

MODES = ("modified", "full", "record")
PAGE_ROWS = 5000  # pre-read records staged (and held) at a time


def pass_directory(staging: StagingPath, mapping: str, run_id: str,
                   direction: Direction) -> StagingPath:
    """Where a pass stages its files."""
    return staging / mapping.lower() / safe_name(run_id) / direction.value


REFERENCES_FILE = "references.jsonl"


def signpost_and_references(ctx: SyncContext, mapping: TableMapping, direction: Direction,
                            source: Adapter, directory: StagingPath) -> datetime:
    """The pass's signpost, from its first request, which also reads the source system's
    reference tables the pass needs (lookups.signpost_reads): Business Central's in a JSON
    ``$batch`` of GETs, Dataverse's in a ``$batch`` with WhoAmI. The tables go to
    ``references.jsonl`` in the pass directory, where the plan stage finds them
    (:func:`staged_references`), so that a pass costs one request less. A pass with no
    such table takes its signpost as before (a cheap GET, or WhoAmI)."""
    reads = _signpost_reads(ctx, mapping, direction, source)
    signpost, tables = source.signpost_with([(k[1], list(k[2]) or None) for k in reads])
    _stage_references(directory, reads, tables)
    return signpost


def signpost_and_first_page(ctx: SyncContext, mapping: TableMapping, direction: Direction,
                            source: Adapter, directory: StagingPath, page: PageQuery
                            ) -> tuple[datetime, Iterator[list[dict[str, Any]]]]:
    """:func:`signpost_and_references` whose request also reads the first page of the
    pass's records (``page``): one request for the signpost, the reference tables and the
    first 20,000 records (Business Central) or 5,000 rows (Dataverse), so an incremental
    pass with few changes reads its source in one request. The pages after it are read as
    the caller consumes them.

    The signpost is the service's clock when it began serving that request (its Date
    header less the request's round trip) less the usual slack: the page is read while
    serving, and a record changed after its snapshot must not be older than the signpost
    (the next pass reads from there)."""
    reads = _signpost_reads(ctx, mapping, direction, source)
    signpost, tables, pages = source.first_read([(k[1], list(k[2]) or None) for k in reads],
                                                page)
    _stage_references(directory, reads, tables)
    return signpost, pages


def _signpost_reads(ctx: SyncContext, mapping: TableMapping, direction: Direction,
                    source: Adapter) -> list[tuple[str, str, tuple[str, ...]]]:
    from bcdv.engine.lookups import signpost_reads

    return signpost_reads(ctx, mapping, direction, source.system)


def _stage_references(directory: StagingPath, reads: list[tuple[str, str, tuple[str, ...]]],
                      tables: list[list[dict[str, Any]]]) -> None:
    write_jsonl(location(directory) / REFERENCES_FILE,
                [{"read": [k[0], k[1], list(k[2])], "rows": rows}
                 for k, rows in zip(reads, tables, strict=True)])


def staged_references(directory: StagingPath) -> dict[tuple[str, str, tuple[str, ...]],
                                                       list[dict[str, Any]]]:
    """The reference tables a pass read with its signpost (empty when there are none)."""
    path = location(directory) / REFERENCES_FILE
    if not path.exists():
        return {}
    return {(r["read"][0], r["read"][1], tuple(r["read"][2])): r["rows"]
            for r in read_jsonl(path)}


@dataclass(frozen=True)
class PreRead:
    """Every source record of a full pass, read once before the pass (for match-based
    coupling too) and spilled to a staging file (so no pass holds them all in memory), with
    the source's clock taken before that read (the signpost).

    The pass's own staging is done during the read, while the service makes the next page:
    ``staged`` is the pass's source file (the records once each, a page the service shifted
    returning one twice; the pass's columns), ``seen`` their ids and ``latest`` the latest
    modified-on among them. When the pass reads no column more than the pass's own, ``file``
    is that same file."""

    signpost: datetime
    file: str
    columns: list[str]
    staged: str | None = None
    seen: SeenIds | None = None
    latest: datetime | None = None

    def rows(self) -> Iterator[dict[str, Any]]:
        """The records as read, one at a time from the file."""
        return read_jsonl(self.file)

    def pages(self, size: int = PAGE_ROWS) -> Iterator[list[dict[str, Any]]]:
        """The records as the pass's own read returns them (its columns and the service's
        annotations), ``size`` at a time."""
        rows = self.rows()
        while page := list(islice(rows, size)):
            yield _only(page, self.columns)

    def discard(self) -> None:
        """Close the ids and remove the read's own file (not the pass's source file)."""
        if self.seen is not None:
            self.seen.close()
        if self.file != self.staged:
            location(self.file).unlink(missing_ok=True)


def pre_read(ctx: SyncContext, mapping: TableMapping, direction: Direction,
             extra_columns: Sequence[str] = (), *,
             file: str | os.PathLike[str] | StagingPath) -> PreRead:
    """Read a full pass's source records now (its columns plus ``extra_columns``), page by
    page into ``file``, and stage them for the pass in its directory (``source.jsonl``,
    the file's directory) as they come: see :class:`PreRead`."""
    sides = PassSides.of(mapping, direction)
    source = ctx.adapter(sides.source_system)
    path = location(file)
    columns = source_columns(mapping, direction)
    wanted = list(dict.fromkeys([*columns, *extra_columns]))
    signpost, pages = signpost_and_first_page(ctx, mapping, direction, source, path.parent,
                                              source.page_query(sides.source, None, wanted))
    staged = path.parent / "source.jsonl"
    own = set(wanted) == set(columns)  # no other column: the pass's file is the read's
    key, modified_col = sides.source.key, sides.source.modified_on
    latest: datetime | None = None
    seen = SeenIds()
    try:
        staged.unlink(missing_ok=True)
        if not own:
            path.unlink(missing_ok=True)
        for page in pages:
            if not own:
                write_jsonl(path, page, append=True)
            fresh = seen.fresh(page, key)
            latest = _latest(fresh, modified_col, latest)
            write_jsonl(staged, fresh if own else _only(fresh, columns), append=True)
    except BaseException:
        seen.close()
        raise
    return PreRead(signpost, str(staged if own else file), columns, str(staged), seen, latest)


def _latest(rows: list[dict[str, Any]], modified_col: str,
            latest: datetime | None) -> datetime | None:
    """The latest modified-on of ``rows`` and ``latest``."""
    for row in rows:
        ts = parse_datetime(row.get(modified_col))
        if ts and (latest is None or ts > latest):
            latest = ts
    return latest


def extract(
    ctx: SyncContext, mapping: TableMapping, direction: Direction, *, mode: str = "modified",
    run_id: str, dry_run: bool = False, assumed_pairs: list[list[str]] | None = None,
    record_ids: list[str] | None = None, preread: PreRead | None = None,
) -> PassState:
    """Stage the candidates of one pass; opens the pass's job-log row.

    Modes: ``modified`` (retry set + records modified since the watermark), ``full`` (every
    record in the filter), ``record`` (just ``record_ids``, forced, watermark untouched).
    A full pass given ``preread`` stages those rows instead of reading the source again.
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
    if mode != "full":
        preread = None
    since = None if mode == "full" else ctx.state.get_watermark(mapping.name, direction.value)
    columns = source_columns(mapping, direction)
    key, modified_col = sides.source.key, sides.source.modified_on
    extra = _echo_filter(mapping, direction, mode, source)
    first: Iterator[list[dict[str, Any]]] | None = None
    try:
        if preread is not None:
            signpost = preread.signpost
        elif mode == "record" or (extra is None and _needs_user(mapping, direction, mode)):
            # Records by id; or a Dataverse pass whose echo filter names the integration
            # user, not known before this request's WhoAmI answers: the read comes after.
            signpost = signpost_and_references(ctx, mapping, direction, source, state.path)
        else:
            signpost, first = signpost_and_first_page(
                ctx, mapping, direction, source, state.path,
                source.page_query(sides.source, since, columns, extra_filter=extra))
    except Exception as exc:
        # The service cannot be reached: nothing was read or written; the job says why and
        # the run fails (Airflow retries it; BC keeps its job-queue entry Ready likewise).
        ctx.state.finish_job(job_id, status="failed", message=error_text(exc))
        raise
    if not dry_run:
        # Updates whose answer was lost are stamped if they landed, before anything is
        # compared: our own write is never taken for a person's change (engine/updates.py).
        settle_updates(ctx, mapping, job_id)
    if not dry_run and direction is Direction.TO_DATAVERSE:
        # Before the records read are staged (their first page came with the signpost, the
        # others are read below): records made by creates whose answer was lost are coupled
        # to their Dataverse sources, so they are dropped as the engine's own writes, not
        # taken for new records (no duplicate).
        recover_lost_bc_creates(ctx, mapping, job_id)
    latest: datetime | None = None
    # A shared read that staged this pass's records as it read them (PreRead): its file and
    # ids are the pass's.
    adopted = preread if (preread is not None and preread.seen is not None
                          and preread.staged is not None
                          and location(preread.staged) == state.source_file) else None
    if adopted is None:
        state.source_file.unlink(missing_ok=True)
    if mode == "record":
        rows = source.fetch(sides.source, sorted(set(record_ids or [])), columns)
        write_jsonl(state.source_file, rows, append=True)
        state.extracted = len(rows)
        state.signpost = signpost.isoformat()
        state.save()
        return state
    if first is None:
        extra = _echo_filter(mapping, direction, mode, source)
    pages = (first if first is not None
             else source.iter_records(sides.source, since, columns, extra_filter=extra)
             if preread is None else preread.pages())
    drop_echoes = mode == "modified"
    # On disk: a full pass sees every id of the table.
    with (adopted.seen if adopted is not None and adopted.seen is not None
          else SeenIds()) as seen:
        if adopted is not None:
            pages, latest = iter(()), adopted.latest
        for page in pages:
            fresh = seen.fresh(page, key)
            latest = _latest(fresh, modified_col, latest)
            if drop_echoes:
                echoes = own_echoes(ctx, mapping, direction, fresh)
                state.echoes += len(echoes)
                fresh = [r for r in fresh if str(r[key]) not in echoes]
            write_jsonl(state.source_file, fresh, append=True)

        if dry_run:
            state.signpost = signpost.isoformat()
            _first_pass_creates(ctx, mapping, direction, state, seen, echo=extra is not None)

        retry = _retry_ids(ctx, mapping, sides,
                           creates=mode == "full" or not mapping.sync_only_coupled)
        retry -= seen.among(retry)
        if retry:
            rows = _fetch_in_filter(source, sides.source, sorted(retry), columns)
            write_jsonl(state.source_file, rows, append=True)
            state.retried = len(rows)
            seen.add(r[key] for r in rows)
        state.extracted = len(seen)
    state.signpost = signpost.isoformat()
    state.latest_modified = latest.isoformat() if latest else None
    state.save()
    ctx.state.update_job(job_id, signpost=signpost, latest_modified=latest)
    return state


def own_echoes(ctx: SyncContext, mapping: TableMapping, direction: Direction,
               rows: list[dict[str, Any]]) -> set[str]:
    """Ids of read records that are the last synchronisation read back: coupled (not
    pending, not skipped, not failed in this direction, no open error), the hash of their
    mapped fields equal to the one stamped, and not modified after the stamped baseline.
    The plan would find each of them unchanged with nothing to re-stamp (see
    ``inputs.flags_of``), so an incremental pass does not stage or plan them: the records
    the other pass just wrote are not planned again (issue 14)."""
    if not rows:
        return set()
    sides = PassSides.of(mapping, direction)
    key = sides.source.key
    frame = pd.DataFrame(rows)
    frame.index = frame[key].astype(str)
    coup = ctx.state.couplings(mapping.name, **{f"{sides.source_id_col}s": list(frame.index)})
    if coup.empty:
        return set()
    coup = coup[~coup["pending"].astype(bool) & ~coup["skipped"].astype(bool)
                & coup[sides.result_col].ne("failure")]
    coup.index = coup[sides.source_id_col].astype(str)
    frame = frame[frame.index.isin(coup.index)]
    if frame.empty or sides.source.modified_on not in frame:
        return set()
    coup = coup.loc[frame.index]
    fields = side_fields(mapping, sides.source_system)
    hashes = hash_frame(frame, fields)
    if sides.source_system == "dataverse":  # rows our creates made (engine/created.py)
        coup = settle_frame(coup, frame, id_col=sides.source_id_col,
                            mod_col=sides.source_mod_col, hash_col=sides.source_hash_col,
                            modified_on=sides.source.modified_on, fields=fields,
                            hashes=hashes)
    modified = utc_times(frame[sides.source.modified_on])
    echo = (hashes.eq(coup[sides.source_hash_col]) & modified.notna()
            & ((modified - coup[sides.source_mod_col]) <= TOLERANCE))
    found = set(frame.index[echo.to_numpy()])
    return found - set(ctx.state.last_errors(mapping.name, direction.value, sorted(found)))


def _only(rows: list[dict[str, Any]], columns: list[str]) -> list[dict[str, Any]]:
    """Rows read with more columns than the pass's, as the pass's own read returns them
    (its columns and the service's annotations such as ``@odata.etag``)."""
    keep = set(columns)
    return [{k: v for k, v in r.items() if k in keep or "@" in k} for r in rows]


def upper_bound_filter(system: str, modified_on: str, until: datetime) -> str:
    """``<modified_on> lt <until>`` in the precision the system's filter takes."""
    return compare(modified_on, "lt", until, milliseconds=system == "business_central")


def extract_window(ctx: SyncContext, mapping: TableMapping, direction: Direction, *,
                   since: datetime, until: datetime, run_id: str,
                   dry_run: bool = False) -> PassState:
    """Stage the records of one pass modified in [since, until) (a backfill); opens the
    job-log row (mode ``backfill``).

    The pass is planned and loaded as an incremental (``modified``) pass, which is
    idempotent (records already in sync are "unchanged"), but its candidates are only the
    records whose modified-on falls in the window, and it never moves the watermark. The
    retry set is left to the scheduled runs.
    """
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
        upper = upper_bound_filter(sides.source_system, sides.source.modified_on, until)
        signpost, pages = signpost_and_first_page(
            ctx, mapping, direction, source, state.path,
            source.page_query(sides.source, since, source_columns(mapping, direction),
                              extra_filter=upper))
        state.source_file.unlink(missing_ok=True)
        with SeenIds() as seen:
            for page in pages:
                write_jsonl(state.source_file, seen.fresh(page, sides.source.key), append=True)
            state.extracted = len(seen)
    except Exception as exc:
        ctx.state.finish_job(job_id, status="failed", message=error_text(exc))
        raise
    state.signpost = signpost.isoformat()
    state.latest_modified = None  # a backfill never moves the watermark
    state.save()
    ctx.state.update_job(job_id, signpost=signpost)
    return state


def _first_pass_creates(ctx: SyncContext, mapping: TableMapping, direction: Direction,
                        state: PassState, seen: SeenIds, *, echo: bool) -> None:
    """A dry run's second pass sees what the first pass would have written.

    In a real run the records the first pass creates exist when the pass back reads; in a
    dry run they do not, so they are staged from the first pass's plan (its insert
    payloads, with the id the create would get), unless the echo filter would hide them,
    ``PAGE_ROWS`` at a time; their ids are added to ``seen``.
    """
    passes = mapping.passes()
    if len(passes) < 2 or direction is not passes[1]:
        return
    first = pass_directory(ctx.staging, mapping.name, state.run_id, passes[0]) / "plan.jsonl"
    if not first.exists():
        return
    state.prior_plan = str(first)
    if echo:
        return
    sides = PassSides.of(mapping, direction)
    key, mod = sides.source.key, sides.source.modified_on
    rows = (_created_row(sides, action, key, mod, state.signpost)
            for action in read_plan(first) if isinstance(action, Insert) and action.target_id)
    wanted = (row for row in rows if row is not None)
    while page := list(islice(wanted, PAGE_ROWS)):
        write_jsonl(state.source_file, seen.fresh(page, key), append=True)


def _created_row(sides: PassSides, action: Insert, key: str, mod: str,
                 signpost: str | None) -> dict[str, Any] | None:
    """The record a first pass's insert would make, as the pass back would read it; None
    when the pass back's filter would not return it (a column the create does not set is
    null there; unknown filters count it in)."""
    row = {k: v for k, v in action.payload.items() if "@" not in k}
    probe = {**dict.fromkeys(_filter_columns(sides.source.filter)), **row}
    if matches(sides.source.filter, probe) is False:
        return None
    row.update({key: action.target_id, mod: signpost})
    return row


def _filter_columns(text: str | None) -> list[str]:
    """Plain column names a filter mentions (for nulls in a probe row)."""
    import re

    return re.findall(r"\b([A-Za-z_][A-Za-z0-9_]*)\s+(?:eq|ne|gt|ge|lt|le)\b", text or "")


def _echo_filter(mapping: TableMapping, direction: Direction, mode: str,
                 source: object) -> str | None:
    """BC's echo suppression: a scheduled Dataverse -> BC pass of a bidirectional mapping
    with no field mapped only towards BC skips rows last modified by the integration user
    (our own writes). Full and single-record runs see every row."""
    if not _needs_user(mapping, direction, mode):
        return None
    user_id = getattr(source, "user_id", None)
    return compare("_modifiedby_value", "ne", Guid(user_id)) if user_id else None


def _needs_user(mapping: TableMapping, direction: Direction, mode: str) -> bool:
    """Whether the pass's read has BC's echo filter (see :func:`_echo_filter`)."""
    return (direction is Direction.TO_BUSINESS_CENTRAL and mode == "modified"
            and mapping.direction is Direction.BIDIRECTIONAL
            and not any(f.enabled and f.effective_direction is Direction.TO_BUSINESS_CENTRAL
                        for f in mapping.fields))


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
    """The retry set (engine/retry_set.py); failed creates are retried only when the pass
    may create records."""
    direction = "to_dataverse" if sides.target_system == "dataverse" else "to_business_central"
    return retry_source_ids(ctx.state, mapping.name, direction, failed_creates=creates)
