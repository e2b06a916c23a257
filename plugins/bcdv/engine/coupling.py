"""Match-based coupling: couple uncoupled records that match on chosen fields.

As Business Central does it: criteria are grouped by priority and tried in ascending order;
within a group every field must be equal (case-insensitive unless the group says otherwise,
text trimmed); a blank value adds no condition; a record couples only on exactly one match,
and a Dataverse row can be taken by one record only. Unmatched records are left for the
create step of a full synchronisation (or counted failed when the mapping does not create).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

import numpy as np
import pandas as pd

from bcdv.engine.context import SyncContext
from bcdv.engine.lookups import keep_for_run, run_reads
from bcdv.engine.staging import (
    StagingPath,
    read_jsonl,
    replace_jsonl,
    safe_name,
    write_jsonl,
)
from bcdv.engine.values import canon_frame
from bcdv.mapping.model import Direction, TableMapping

PAGE_ROWS = 5000  # Business Central records looked at (and coupled ids looked up) at a time


@dataclass
class CouplingReport:
    """What match-based coupling did."""

    mapping: str
    job_id: str
    coupled: int = 0
    unmatched: int = 0
    pairs: list[tuple[str, str]] = field(default_factory=list)
    # The unmatched Business Central ids are staged (one per line) rather than held: on a
    # first full synchronisation every record of the table is one.
    unmatched_file: str | None = None

    @property
    def unmatched_ids(self) -> list[str]:
        """The Business Central ids left without a match (read from the staged file)."""
        if self.unmatched_file is None:
            return []
        return [str(r["bc_id"]) for r in read_jsonl(self.unmatched_file)]

    def summary(self) -> str:
        """One line for humans."""
        return (f"{self.mapping} match-based coupling: coupled {self.coupled} | "
                f"no unique match {self.unmatched}")


def _frame(rows: Iterable[dict[str, Any]], key: str, columns: list[str]) -> pd.DataFrame:
    """The key and match columns of ``rows``, built column by column as the rows come (the
    rows themselves, with every other column, are never all held)."""
    cols = list(dict.fromkeys([key, *columns]))
    values: dict[str, list[Any]] = {c: [] for c in cols}
    for row in rows:
        for c in cols:
            values[c].append(row.get(c))
    frame = pd.DataFrame(values, columns=cols)
    frame.index = frame[key].astype(str)
    return frame


def _keys(frame: pd.DataFrame, columns: list[str], case_sensitive: bool) -> pd.DataFrame:
    keys = canon_frame(frame[columns])
    if not case_sensitive:
        keys = keys.apply(lambda col: col.str.lower())
    return keys


def _unique_matches(left: pd.DataFrame, right: pd.DataFrame) -> list[tuple[str, str]]:
    """(source, target) pairs where the source has exactly one match, first claim wins.

    Rows are grouped by which of their values are non-blank, so each group is one merge on
    exactly the columns that carry a condition.
    """
    cols = list(left.columns)
    pattern = left.ne("").apply(lambda row: tuple(c for c in cols if row[c]), axis=1)
    candidates: list[tuple[int, str, str]] = []
    order = {sid: i for i, sid in enumerate(left.index)}
    for on, members in left.groupby(pattern, sort=False):
        if not on:
            continue
        merged = members[list(on)].reset_index(names="_sid").merge(
            right[list(on)].reset_index(names="_tid"), on=list(on), how="inner")
        counts = merged.groupby("_sid")["_tid"].transform("count")
        for sid, tid in merged.loc[counts == 1, ["_sid", "_tid"]].itertuples(index=False):
            candidates.append((order[sid], str(sid), str(tid)))
    taken: set[str] = set()
    out: list[tuple[str, str]] = []
    for _, sid, tid in sorted(candidates):
        if tid not in taken:
            taken.add(tid)
            out.append((sid, tid))
    return out


def match_couple(ctx: SyncContext, mapping: TableMapping, *, run_id: str | None = None,
                 dry_run: bool = False,
                 bc_rows: Iterable[dict[str, Any]] | None = None) -> CouplingReport:
    """Couple the uncoupled Business Central records of a mapping to matching Dataverse rows.

    ``bc_rows``: every Business Central record of the mapping's filter, already read with
    (at least) the match columns (the full pass's own read, so it is read once); consumed
    once, ``PAGE_ROWS`` at a time. Memory is bounded by the uncoupled Dataverse rows and the
    Business Central records that could match one of them, not by the table: the others are
    only counted and staged as unmatched (``<staging>/<mapping>/<run>/coupling``)."""
    job_id = ctx.state.start_job(mapping.name, "coupling", mode="match", run_id=run_id,
                                 dry_run=dry_run, job_type="coupling")
    report = CouplingReport(mapping.name, job_id)
    groups = mapping.match_groups()
    if groups:
        directory = ctx.staging / mapping.name.lower() / safe_name(run_id or job_id)
        unmatched = directory / "coupling" / "unmatched.jsonl"
        report.unmatched_file = str(unmatched)
        _match(ctx, mapping, groups, report, dry_run, bc_rows, unmatched)
    ctx.state.update_job(job_id, coupled=report.coupled, failed=0)
    ctx.state.finish_job(job_id, status="success",
                         message=None if groups else "no match-based coupling criteria")
    return report


def match_columns(mapping: TableMapping) -> list[str]:
    """The Business Central columns match-based coupling compares."""
    return sorted({b for _, pairs in mapping.match_groups() for b, _ in pairs})


def _pages(rows: Iterable[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    pending = iter(rows)
    while page := list(islice(pending, PAGE_ROWS)):
        yield page


def _uncoupled(ctx: SyncContext, mapping: TableMapping, frame: pd.DataFrame,
               column: str) -> pd.DataFrame:
    """The rows of ``frame`` (indexed by id) with no coupling (pending intents aside) by
    ``column`` (``bc_id`` or ``dv_id``)."""
    if frame.empty:
        return frame
    found = ctx.state.couplings(mapping.name, **{f"{column}s": list(frame.index)})
    done = found.loc[~found["pending"].astype(bool), column].dropna().astype(str)
    return frame[~frame.index.isin(done)]


def _could_match(bc: pd.DataFrame, groups: list, dv_values: list[dict[str, set[str]]]
                 ) -> pd.Series:
    """Whether each record could match some Dataverse row in some group: every one of the
    group's non-blank values (at least one) is among the Dataverse column's values. A
    record that fails this for every group has no match whatever the rest of the rows."""
    out = pd.Series(False, index=bc.index)
    for (group, pairs), values in zip(groups, dv_values, strict=True):
        left = _keys(bc, [b for b, _ in pairs], group.case_sensitive)
        filled = left.ne("")
        found = pd.DataFrame({b: left[b].isin(values[b]) for b, _ in pairs}, index=bc.index)
        out |= filled.any(axis=1) & (found | ~filled).all(axis=1)
    return out


def _match(ctx: SyncContext, mapping: TableMapping, groups: list, report: CouplingReport,
           dry_run: bool, bc_rows: Iterable[dict[str, Any]] | None,
           unmatched: StagingPath) -> None:
    bc_side, dv_side = mapping.business_central, mapping.dataverse
    bc_cols = match_columns(mapping)
    dv_cols = sorted({d for _, pairs in groups for _, d in pairs})
    # Coupled records are looked up page by page, and not at all before the first coupling.
    any_coupled = ctx.state.coupling_count(mapping.name) > 0

    def free(frame: pd.DataFrame, column: str) -> pd.DataFrame:
        return _uncoupled(ctx, mapping, frame, column) if any_coupled else frame

    dv_query = ctx.dataverse.page_query(dv_side, None, [dv_side.key, *dv_cols])
    # The Dataverse reference tables the pass to Dataverse needs come with the first page
    # (one request less; the run keeps them for the pass).
    reads = (run_reads(ctx, mapping, Direction.TO_DATAVERSE, "dataverse")
             if mapping.direction.includes(Direction.TO_DATAVERSE) else [])
    if reads:
        _, tables, dv_pages = ctx.dataverse.first_read(
            [(k[1], list(k[2]) or None) for k in reads], dv_query)
        keep_for_run(ctx, reads, tables)
    else:
        dv_pages = ctx.dataverse.iter_records(dv_side, None, dv_query.select or [])
    dv = pd.concat([free(_frame(page, dv_side.key, dv_cols), "dv_id") for page in dv_pages]
                   or [_frame([], dv_side.key, dv_cols)])
    dv_values = [{b: set(_keys(dv, [d], group.case_sensitive)[d]) for b, d in pairs}
                 for group, pairs in groups] if not dv.empty else []
    if bc_rows is None:
        bc_rows = (r for page in ctx.business_central.iter_records(
            bc_side, None, [bc_side.key, *bc_cols]) for r in page)
    # Records that cannot match any uncoupled Dataverse row (all of them when there is none:
    # a first full synchronisation into an empty table) are staged as unmatched as they are
    # read; only the others are kept, with their match columns, for the groups below.
    kept: list[pd.DataFrame] = []

    def hopeless() -> Iterator[dict[str, str]]:
        for page in _pages(bc_rows):
            frame = free(_frame(page, bc_side.key, bc_cols), "bc_id")
            hopeful = (_could_match(frame, groups, dv_values).to_numpy() if not dv.empty
                       else np.zeros(len(frame), dtype=bool))
            if hopeful.any():
                kept.append(frame[hopeful])
            yield from ({"bc_id": str(i)} for i in frame.index[~hopeful])

    report.unmatched = replace_jsonl(unmatched, hopeless())
    bc = pd.concat(kept) if kept else _frame([], bc_side.key, bc_cols)
    for group, pairs in groups:
        if bc.empty or dv.empty:
            break
        left = _keys(bc, [b for b, _ in pairs], group.case_sensitive)
        right = _keys(dv, [d for _, d in pairs], group.case_sensitive)
        right.columns = left.columns
        found = _unique_matches(left, right)
        for sid, tid in found:
            if dry_run or ctx.state.couple(mapping.name, sid, tid):
                report.pairs.append((sid, tid))
        dv = dv[~dv.index.isin([t for _, t in found])]
        bc = bc[~bc.index.isin([p[0] for p in report.pairs])]
    report.coupled = len(report.pairs)
    report.unmatched += write_jsonl(unmatched, ({"bc_id": str(i)} for i in bc.index),
                                    append=True)
