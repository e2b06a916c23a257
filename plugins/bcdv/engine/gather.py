"""Gather: read everything the plan of a chunk of records needs, so planning reads nothing.

Couplings (plus, in a dry run, the couplings match-based coupling would have made), the
target rows the plan compares with, the pass's lookup tables, the records' open errors and,
in a dry run's pass back, what the first pass would write.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from itertools import islice
from typing import Any

import pandas as pd

from bcdv.engine.actions import Insert, Unchanged, Update, read_plan
from bcdv.engine.context import PassSides, SyncContext
from bcdv.engine.created import CREATED_ON, settle_frame
from bcdv.engine.entity_rules import extra_columns
from bcdv.engine.extract import staged_references
from bcdv.engine.inputs import PlanInputs, flags_of, targets_to_read
from bcdv.engine.lookups import RowsById, Tables, load_tables_and_rows
from bcdv.engine.staging import PassState, location, read_jsonl
from bcdv.engine.transform import compare_columns, side_fields
from bcdv.mapping.model import Direction, TableMapping


def source_chunks(state: PassState, key: str, size: int) -> Iterator[pd.DataFrame]:
    """The staged source records, ``size`` at a time."""
    rows = read_jsonl(state.source_file)
    while batch := list(islice(rows, size)):
        yield pd.DataFrame(batch)


def gather(ctx: SyncContext, mapping: TableMapping, state: PassState, src: pd.DataFrame,
           tables: Tables, first_pass: dict[str, str | None]) -> PlanInputs:
    """The plan's inputs for one chunk of staged source records."""
    sides = PassSides.of(mapping, Direction(state.direction))
    inputs = _marked(ctx, mapping, state, src, tables, first_pass)
    return _with_targets(mapping, sides, inputs,
                         _target_rows(ctx, mapping, sides, targets_to_read(inputs)))


def gather_first(ctx: SyncContext, mapping: TableMapping, state: PassState,
                 src: pd.DataFrame, first_pass: dict[str, str | None]
                 ) -> tuple[Tables, PlanInputs]:
    """The pass's lookup tables (none to read when nothing was extracted) and the plan's
    inputs for its first chunk, the target rows that chunk compares with read in the same
    request as the tables of the target's system (an incremental pass with a few changes
    reads both in one request instead of two; the marks that say which rows to read do not
    use the tables)."""
    direction = Direction(state.direction)
    sides = PassSides.of(mapping, direction)
    inputs = _marked(ctx, mapping, state, src, Tables(), first_pass)
    tables, rows = Tables(), list[dict[str, Any]]()
    if state.extracted:
        tables, rows = load_tables_and_rows(
            ctx, mapping, direction, known=staged_references(state.path),
            by_id=RowsById(ctx.adapter(sides.target_system), sides.target,
                           targets_to_read(inputs), _target_columns(mapping, sides)))
    return tables, _with_targets(mapping, sides, replace(inputs, tables=tables),
                                 _target_frame(rows, _target_columns(mapping, sides), sides))


def _with_targets(mapping: TableMapping, sides: PassSides, inputs: PlanInputs,
                  targets: pd.DataFrame) -> PlanInputs:
    """``inputs`` with the target rows read, and the Dataverse baselines of the rows our
    creates made that these rows settle (engine/created.py)."""
    couplings = inputs.couplings
    if sides.target_system == "dataverse":
        couplings = settle_frame(couplings, targets, id_col=sides.target_id_col,
                                 mod_col=sides.target_mod_col, hash_col=sides.target_hash_col,
                                 modified_on=sides.target.modified_on,
                                 fields=side_fields(mapping, sides.target_system))
    return replace(inputs, targets=targets, couplings=couplings)


def _marked(ctx: SyncContext, mapping: TableMapping, state: PassState, src: pd.DataFrame,
            tables: Tables, first_pass: dict[str, str | None]) -> PlanInputs:
    """A chunk's inputs with their per-record marks (``flags_of``), targets not read."""
    direction = Direction(state.direction)
    sides = PassSides.of(mapping, direction)
    ids = list(dict.fromkeys(src[sides.source.key].astype(str))) if len(src) else []
    inputs = PlanInputs.build(
        mapping, direction, mode=state.mode, source=src,
        couplings=_couplings(ctx, mapping, sides, ids, state.assumed_pairs), tables=tables,
        prior_errors=ctx.state.last_errors(mapping.name, state.direction, ids),
        first_pass=first_pass, id_seed=state.job_id)
    return replace(inputs, flags=flags_of(inputs))


def _couplings(ctx: SyncContext, mapping: TableMapping, sides: PassSides,
               ids: list[str], assumed: list[list[str]]) -> pd.DataFrame:
    by = {"bc_ids" if sides.source_id_col == "bc_id" else "dv_ids": ids}
    frame = ctx.state.couplings(mapping.name, **by)
    if assumed:  # a dry run sees the couplings match-based coupling would have made
        extra = pd.DataFrame([{"id": -1 - i, "mapping": mapping.name, "bc_id": b, "dv_id": d,
                               "pending": False, "skipped": False, "to_dv_result": "",
                               "to_bc_result": ""} for i, (b, d) in enumerate(assumed)],
                             columns=frame.columns)
        frame = pd.concat([frame, extra], ignore_index=True) if not frame.empty else extra
    return frame


def _target_rows(ctx: SyncContext, mapping: TableMapping, sides: PassSides,
                 wanted: list[str]) -> pd.DataFrame:
    cols = _target_columns(mapping, sides)
    rows = ctx.adapter(sides.target_system).fetch(sides.target, wanted, cols) if wanted else []
    return _target_frame(rows, cols, sides)


def _target_columns(mapping: TableMapping, sides: PassSides) -> list[str]:
    """The target columns the plan compares with."""
    direction = (Direction.TO_DATAVERSE if sides.target_system == "dataverse"
                 else Direction.TO_BUSINESS_CENTRAL)
    created = [CREATED_ON] if sides.target_system == "dataverse" else []
    return list(dict.fromkeys([sides.target.key, sides.target.modified_on,
                               *side_fields(mapping, sides.target_system),
                               *compare_columns(mapping, direction).values(),
                               *extra_columns(sides.target.entity_set), *created]))


def _target_frame(rows: list[dict[str, Any]], cols: list[str],
                  sides: PassSides) -> pd.DataFrame:
    """The target rows read, by id (empty with the columns when none were)."""
    if not rows:
        return pd.DataFrame(columns=[*cols, "@odata.etag"])
    frame = pd.DataFrame(rows, columns=list(dict.fromkeys([*cols, "@odata.etag"])))
    frame.index = frame[sides.target.key].astype(str)
    return frame


def first_pass_writes(state: PassState, name_field: str | None) -> dict[str, str | None]:
    """Dry runs: ids the same run's first pass would write and stamp, so that in a real run
    the pass back finds them in sync (created, updated or re-stamped with their values).

    Not included: a destination the first pass leaves alone because it changed (its change
    goes back), an update that overwrote changes on both sides with fields to carry back
    (its baseline is set behind on purpose), and anything that fails.
    Returns each id with the name the record will have (None when the write leaves it).
    """
    if not state.dry_run or not state.prior_plan:
        return {}
    out: dict[str, str | None] = {}
    for a in read_plan(location(state.prior_plan)):
        if isinstance(a, Insert | Update) and a.target_id:
            if isinstance(a, Update) and a.both_modified:
                continue
            name = a.payload.get(name_field) if name_field else None
            out[str(a.target_id)] = str(name) if name is not None else None
        elif (isinstance(a, Unchanged) and a.target_id and a.restamp and not a.goes_back
              and a.target_hash is not None):
            out[str(a.target_id)] = None
    return out
