"""Match-based coupling: couple uncoupled records that match on chosen fields.

As Business Central does it: criteria are grouped by priority and tried in ascending order;
within a group every field must be equal (case-insensitive unless the group says otherwise,
text trimmed); a blank value adds no condition; a record couples only on exactly one match,
and a Dataverse row can be taken by one record only. Unmatched records are left for the
create step of a full synchronisation (or counted failed when the mapping does not create).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from bcdv.engine.context import SyncContext
from bcdv.engine.values import canon_frame
from bcdv.mapping.model import TableMapping


@dataclass
class CouplingReport:
    """What match-based coupling did."""

    mapping: str
    job_id: str
    coupled: int = 0
    unmatched: int = 0
    pairs: list[tuple[str, str]] = field(default_factory=list)
    unmatched_ids: list[str] = field(default_factory=list)

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
    once, one row at a time."""
    job_id = ctx.state.start_job(mapping.name, "coupling", mode="match", run_id=run_id,
                                 dry_run=dry_run, job_type="coupling")
    report = CouplingReport(mapping.name, job_id)
    groups = mapping.match_groups()
    if groups:
        _match(ctx, mapping, groups, report, dry_run, bc_rows)
    ctx.state.update_job(job_id, coupled=report.coupled, failed=0)
    ctx.state.finish_job(job_id, status="success",
                         message=None if groups else "no match-based coupling criteria")
    return report


def match_columns(mapping: TableMapping) -> list[str]:
    """The Business Central columns match-based coupling compares."""
    return sorted({b for _, pairs in mapping.match_groups() for b, _ in pairs})


def _match(ctx: SyncContext, mapping: TableMapping, groups: list, report: CouplingReport,
           dry_run: bool, bc_rows: Iterable[dict[str, Any]] | None) -> None:
    bc_side, dv_side = mapping.business_central, mapping.dataverse
    bc_cols = match_columns(mapping)
    dv_cols = sorted({d for _, pairs in groups for _, d in pairs})
    dv = _frame((r for page in ctx.dataverse.iter_records(dv_side, None, [dv_side.key, *dv_cols])
                 for r in page), dv_side.key, dv_cols)
    existing = ctx.state.couplings(mapping.name)
    done = existing[~existing["pending"].astype(bool)]
    dv = dv[~dv.index.isin(done["dv_id"].dropna().astype(str))]
    if bc_rows is None:
        bc_rows = (r for page in ctx.business_central.iter_records(
            bc_side, None, [bc_side.key, *bc_cols]) for r in page)
    # With no uncoupled Dataverse row nothing can match (a first full synchronisation into
    # an empty table): only the records' keys are kept, for the unmatched ones.
    bc = _frame(bc_rows, bc_side.key, bc_cols if not dv.empty else [])
    bc = bc[~bc.index.isin(done["bc_id"].dropna().astype(str))]
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
    report.unmatched = len(bc)
    report.unmatched_ids = [str(i) for i in bc.index]
