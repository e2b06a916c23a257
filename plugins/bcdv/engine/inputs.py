"""What the plan of a chunk of records reads: ``PlanInputs`` (gathered beforehand, or built
from literal tables in tests), and the per-record marks computed from it that both the plan
and the gather step use (which coupled records are compared with their counterpart).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import pandas as pd

from bcdv.engine.context import PassSides
from bcdv.engine.created import settle_frame
from bcdv.engine.lookups import Tables
from bcdv.engine.transform import side_fields
from bcdv.engine.values import TOLERANCE, canon_frame, canon_hash_frame, utc_times
from bcdv.mapping.model import Direction, TableMapping
from bcdv.state.store import COUPLING_COLUMNS

FORCING_MODES = ("full", "record")
Rows: TypeAlias = pd.DataFrame | Sequence[Mapping[str, Any]]


@dataclass(frozen=True)
class PlanInputs:
    """Everything planning a chunk of records needs, gathered beforehand.

    ``source`` is indexed by source id; ``couplings`` holds one row per source record (all
    missing: not coupled), aligned with ``source``; ``targets`` holds the current target rows
    the plan compares with (see ``targets_to_read``), indexed by target id. Build it with
    ``PlanInputs.build``, which accepts literal tables.
    """

    mapping: TableMapping
    direction: Direction
    mode: str
    source: pd.DataFrame
    couplings: pd.DataFrame
    targets: pd.DataFrame
    tables: Tables = field(default_factory=Tables)
    prior_errors: Mapping[str, str] = field(default_factory=dict)  # last open error per id
    # Dry runs: ids the same run's first pass writes, with the name they will have.
    first_pass: Mapping[str, str | None] = field(default_factory=dict)
    id_seed: str = ""
    # ``flags_of(self)`` when already computed (gather does, to choose the targets to read;
    # it does not depend on ``targets``).
    flags: Flags | None = None

    @property
    def sides(self) -> PassSides:
        """Source and target of the pass."""
        return PassSides.of(self.mapping, self.direction)

    @classmethod
    def build(cls, mapping: TableMapping, direction: Direction, *, source: Rows,
              couplings: Rows = (), targets: Rows = (), mode: str = "modified",
              tables: Tables | None = None, prior_errors: Mapping[str, str] | None = None,
              first_pass: Mapping[str, str | None] | None = None,
              id_seed: str = "") -> PlanInputs:
        """Inputs from frames or lists of dicts (coupling rows as the state store has them;
        missing coupling columns are empty)."""
        sides = PassSides.of(mapping, direction)
        src = _frame(source, [sides.source.key, sides.source.modified_on])
        src = src.drop_duplicates(subset=[sides.source.key], keep="last")
        src.index = pd.Index(src[sides.source.key].astype(str))
        coup = _frame(couplings, COUPLING_COLUMNS).reindex(columns=COUPLING_COLUMNS)
        coup = coup[coup[sides.source_id_col].notna()]
        coup = coup.set_index(coup[sides.source_id_col].astype(str))
        coup = coup[~coup.index.duplicated(keep="first")].reindex(src.index)
        # Literal tables may leave the store's row id out: any id marks a coupling.
        coup["id"] = coup["id"].where(coup["id"].notna() | coup[sides.source_id_col].isna(),
                                      -1)
        tgt = _frame(targets, [sides.target.key])
        tgt.index = pd.Index(tgt[sides.target.key].astype(str)) if len(tgt) else pd.Index([])
        return cls(mapping, direction, mode, src, coup, tgt, tables or Tables(),
                   dict(prior_errors or {}), dict(first_pass or {}), id_seed)


def _frame(rows: Rows, columns: list[str]) -> pd.DataFrame:
    frame = rows.copy() if isinstance(rows, pd.DataFrame) else pd.DataFrame(
        [dict(r) for r in rows])
    for col in columns:
        if col not in frame.columns:
            frame[col] = pd.Series([None] * len(frame), index=frame.index, dtype=object)
    return frame


def forces(mapping: TableMapping, direction: Direction, mode: str) -> bool:
    """Whether coupled records are force-modified in this pass.

    A single-record sync forces its pass. A full synchronisation forces the first pass only:
    in a bidirectional mapping the pass back runs right after the forced pass to Dataverse,
    which stamped every coupled pair, so forcing it again would overwrite what was just sent
    with Dataverse's older values; it creates the uncoupled records and carries back only
    real changes.
    """
    if mode == "record":
        return True
    if mode != "full":
        return False
    return direction is mapping.passes()[0]


def creates(mapping: TableMapping, mode: str) -> bool:
    """Whether uncoupled source records are created on the other side in this pass."""
    return mode in FORCING_MODES or not mapping.sync_only_coupled


@dataclass(frozen=True)
class Flags:
    """Per source record: what the coupling and the timestamps say (vectorised)."""

    source_hash: pd.Series
    source_modified: pd.Series
    source_canon: pd.DataFrame  # the source side's mapped fields, canonical (the hash's text)
    coupled: pd.Series
    skipped: pd.Series
    failed_before: pd.Series
    source_changed: pd.Series
    restamp: pd.Series
    compare: pd.Series


def flags_of(inputs: PlanInputs) -> Flags:
    """What the coupling and the timestamps say about every source record (vectorised)."""
    sides, src, coup = inputs.sides, inputs.source, inputs.couplings
    force = forces(inputs.mapping, inputs.direction, inputs.mode)
    fields = side_fields(inputs.mapping, sides.source_system)
    src_canon = canon_frame(src.reindex(columns=fields))
    src_hash = canon_hash_frame(src_canon, fields)
    src_mod = utc_times(src[sides.source.modified_on])
    if sides.source_system == "dataverse":  # rows our creates made (engine/created.py)
        coup = settle_frame(coup, src, id_col=sides.source_id_col, mod_col=sides.source_mod_col,
                            hash_col=sides.source_hash_col,
                            modified_on=sides.source.modified_on, fields=fields,
                            hashes=src_hash)
    baseline = utc_times(coup[sides.source_mod_col])
    is_coupled = coup["id"].notna() & ~coup["pending"].fillna(False).astype(bool)
    skipped = is_coupled & coup["skipped"].fillna(False).astype(bool)
    failed_before = coup[sides.result_col].eq("failure")
    moved = baseline.isna() | ((src_mod - baseline) > TOLERANCE)
    # Dataverse stamps whole seconds: an edit in the same second as our last write keeps the
    # same modified-on, so "not older than the baseline" plus a different hash is a change.
    not_older = baseline.isna() | ((baseline - src_mod) <= TOLERANCE)
    same_values = src_hash.eq(coup[sides.source_hash_col])
    source_changed = failed_before | (not_older & ~same_values)
    changed = force | source_changed
    return Flags(src_hash, src_mod, src_canon, is_coupled, skipped, is_coupled & failed_before,
                  source_changed, is_coupled & ~skipped & ~changed & moved,
                  is_coupled & ~skipped & changed)


def targets_to_read(inputs: PlanInputs) -> list[str]:
    """Ids of the target rows the plan compares with (coupled records that changed or are
    forced); ``inputs.targets`` may be empty when this is asked."""
    flags = inputs.flags or flags_of(inputs)
    ids = inputs.couplings.loc[flags.compare, inputs.sides.target_id_col]
    return sorted(set(ids.dropna().astype(str)))
