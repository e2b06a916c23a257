"""Plan: decide, per candidate record, what a pass will do, without writing anything.

Actions: ``insert``, ``update`` (only the fields that differ, with the etag read), ``unchanged``
(nothing to write; the coupling is re-stamped when the source moved), ``skip`` (a Skipped
coupling, or the losing side of a resolved conflict), ``ignore`` (uncoupled while the mapping
syncs only coupled records), ``uncouple`` (deletion conflict resolved by removing the
coupling), ``fail`` (a conflict the mapping does not resolve). The plan is data: a dry run
stops here, and the load stage executes exactly this file.

Records are planned in chunks, so memory is bounded by the chunk size, not the table size.
"""

from __future__ import annotations

import json
import uuid
from itertools import islice
from pathlib import Path
from typing import Any

import pandas as pd

from bcdv.engine.context import PassSides, SyncContext
from bcdv.engine.staging import PassState, read_jsonl, write_jsonl
from bcdv.engine.lookups import Tables, load_tables
from bcdv.engine.transform import compare_columns, side_fields, to_wire, transform, write_key
from bcdv.engine import merge
from bcdv.engine.entity_rules import RuleError, complete_insert, extra_columns, wanted_values
from bcdv.engine.values import canon, canon_frame, hash_frame, row_hash, same
from bcdv.mapping.model import DeletionConflict, Direction, TableMapping, UpdateConflict

CHUNK_SIZE = 5000
# BC's Type Helper treats timestamps less than 10 ms apart as equal.
TOLERANCE = pd.Timedelta(milliseconds=10)
DELETED_MESSAGE = ("The {target} record cannot be updated because it is coupled to a deleted "
                   "record ({target_id}).")
CONFLICT_MESSAGE = ("Cannot update the {target} record because the mapping is bi-directional "
                    "and both sides changed since the last synchronization: {fields}.")
FORCING_MODES = ("full", "record")


def _forces(mapping: TableMapping, state: PassState) -> bool:
    """Whether coupled records are force-modified in this pass.

    A single-record sync forces its pass. A full synchronisation forces the first pass only:
    in a bidirectional mapping the pass back runs right after the forced pass to Dataverse,
    which stamped every coupled pair, so forcing it again would overwrite what was just sent
    with Dataverse's older values; it creates the uncoupled records and carries back only
    real changes.
    """
    if state.mode == "record":
        return True
    if state.mode != "full":
        return False
    return Direction(state.direction) is mapping.passes()[0]


def _creates(mapping: TableMapping, state: PassState) -> bool:
    """Whether uncoupled source records are created on the other side in this pass."""
    return state.mode in ("full", "record") or not mapping.sync_only_coupled


def _utc(series: pd.Series) -> pd.Series:
    return pd.to_datetime(series, utc=True, errors="coerce", format="ISO8601")


def _title(system: str) -> str:
    return "Dataverse" if system == "dataverse" else "Business Central"


def _chunks(state: PassState, key: str, size: int):  # type: ignore[no-untyped-def]
    rows = read_jsonl(state.source_file)
    while batch := list(islice(rows, size)):
        frame = pd.DataFrame(batch).drop_duplicates(subset=[key], keep="last")
        frame.index = frame[key].astype(str)
        yield frame


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
    frame = frame[frame[sides.source_id_col].notna()]
    frame = frame.set_index(frame[sides.source_id_col].astype(str))
    return frame[~frame.index.duplicated(keep="first")]


def plan(ctx: SyncContext, mapping: TableMapping, state: PassState, *,
         chunk_size: int = CHUNK_SIZE) -> PassState:
    """Write the pass's plan file from its staged source records, chunk by chunk."""
    sides = PassSides.of(mapping, Direction(state.direction))
    state.plan_file.unlink(missing_ok=True)
    counts: dict[str, int] = {}
    write_jsonl(state.plan_file, [])
    tables = load_tables(ctx, mapping, Direction(state.direction)) if state.extracted else Tables()
    written = first_pass_writes(state, sides.source.name_field)
    for src in _chunks(state, sides.source.key, chunk_size):
        actions = _plan_frame(ctx, mapping, state, sides, src, tables)
        for a in actions:
            if a["source_id"] in written and a["action"] != "skip":
                a.update(action="unchanged", payload={}, restamp=False,
                         name=written[a["source_id"]] or a.get("name", ""),
                         reason="written by this run's first pass; nothing to carry back")
        write_jsonl(state.plan_file, actions, append=True)
        for a in actions:
            counts[a["action"]] = counts.get(a["action"], 0) + 1
    state.planned = counts
    state.save()
    return state


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
    for a in read_jsonl(Path(state.prior_plan)):
        kind, tid = a.get("action"), a.get("target_id")
        if not tid or a.get("both_modified"):
            continue
        if kind in ("insert", "update") or (kind == "unchanged" and a.get("restamp")
                                            and a.get("target_hash") is not None):
            name = (a.get("payload") or {}).get(name_field) if name_field else None
            out[str(tid)] = str(name) if name is not None else None
    return out


def _plan_frame(ctx: SyncContext, mapping: TableMapping, state: PassState, sides: PassSides,
                src: pd.DataFrame, tables: Tables) -> list[dict[str, Any]]:
    direction = Direction(state.direction)
    force = _forces(mapping, state)
    coup = _couplings(ctx, mapping, sides, list(src.index), state.assumed_pairs).reindex(
        src.index)
    result = transform(src, mapping, direction, tables)
    payload = result.values
    src_hash = hash_frame(src, side_fields(mapping, sides.source_system))
    src_mod = _utc(src[sides.source.modified_on])
    baseline = _utc(coup[sides.source_mod_col])
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
    restamp_only = is_coupled & ~skipped & ~changed & moved
    compare = is_coupled & ~skipped & changed

    src_values = canon_frame(src.reindex(columns=side_fields(mapping, sides.source_system)))
    target = _target_rows(ctx, mapping, sides, coup.loc[compare, sides.target_id_col])
    renames = {r: w for w, r in compare_columns(mapping, direction).items() if r != w}
    # Plain Python from here: per-record pandas indexing costs more than the work itself.
    names = (src[sides.source.name_field].astype(str).to_dict()
             if sides.source.name_field in src else {})
    mods = {k: (v.isoformat() if pd.notna(v) else None) for k, v in src_mod.items()}
    coup_rows = coup.astype(object).where(coup.notna(), None).to_dict("index")
    src_vals = src_values.to_dict("index")
    payload_rows = payload.to_dict("index")
    keep_cols = {sid: [c for c, k in row.items() if k]
                 for sid, row in result.keep.to_dict("index").items()}
    errors = result.errors.to_dict()
    flags = pd.DataFrame({"skipped": skipped, "compare": compare, "coupled": is_coupled,
                          "restamp": restamp_only, "source_changed": source_changed}
                         ).to_dict("index")
    targets = target.astype(object).where(target.notna(), None).to_dict("index")
    creates = _creates(mapping, state)
    out: list[dict[str, Any]] = []
    for sid in src.index:
        c, f = coup_rows[sid], flags[sid]
        wanted = {k: v for k, v in payload_rows[sid].items() if k not in keep_cols[sid]}
        try:
            wanted = wanted_values(sides.target.entity_set, wanted, tables.entity)
        except RuleError as exc:
            errors[sid] = errors[sid] or str(exc)
        row: dict[str, Any] = {
            "source_id": sid, "name": names.get(sid, ""),
            "source_modified": mods[sid], "source_hash": src_hash.at[sid],
            "target_id": c.get(sides.target_id_col),
            "target_modified": None, "target_hash": None, "etag": None,
            "payload": {}, "reason": "",
            "source_values": src_vals[sid],
            "target_values": _synced_part(c.get("synced"), sides.target_system),
        }
        if f["skipped"]:
            row.update(action="skip", reason="the coupling is marked Skipped; restore it to retry")
        elif errors[sid] and (f["compare"] or not f["coupled"]):
            row.update(action="fail" if f["coupled"] or creates else "ignore",
                       reason=f"The data could not be transferred: {errors[sid]}")
        elif f["compare"]:
            _plan_coupled(row, mapping, sides, wanted, targets, c, force, renames,
                          full_sync=state.mode == "full",
                          source_changed=bool(f["source_changed"]))
        elif f["coupled"]:
            row.update(action="unchanged", restamp=bool(f["restamp"]),
                       target_modified=_iso(c.get(sides.target_mod_col)),
                       target_hash=c.get(sides.target_hash_col),
                       reason="no mapped field changed since the last synchronization")
        else:
            _plan_uncoupled(row, mapping, sides, wanted, c, creates)
        if row.get("action") == "insert":
            try:
                row["payload"] = complete_insert(sides.target.entity_set, row["payload"],
                                                 tables.entity, source_id=sid)
            except RuleError as exc:
                row.update(action="fail", payload={},
                           reason=f"The data could not be transferred: {exc}")
        if row.get("payload"):
            row["payload"] = to_wire(row["payload"], mapping, direction, tables)
        out.append(row)
    return out


def _synced_part(value: Any, system: str) -> dict[str, Any] | None:
    if not isinstance(value, str) or not value:
        return None
    part = json.loads(value).get(system)
    return part if isinstance(part, dict) else None


def _iso(value: Any) -> str | None:
    if value is None or pd.isna(value):
        return None
    ts = pd.Timestamp(value)
    return (ts.tz_localize("UTC") if ts.tzinfo is None else ts).isoformat()


def _target_rows(ctx: SyncContext, mapping: TableMapping, sides: PassSides,
                 ids: pd.Series) -> pd.DataFrame:
    wanted = sorted(set(ids.dropna().astype(str)))
    direction = (Direction.TO_DATAVERSE if sides.target_system == "dataverse"
                 else Direction.TO_BUSINESS_CENTRAL)
    cols = list(dict.fromkeys([sides.target.key, sides.target.modified_on,
                               *side_fields(mapping, sides.target_system),
                               *compare_columns(mapping, direction).values(),
                               *extra_columns(sides.target.entity_set)]))
    if not wanted:
        return pd.DataFrame(columns=[*cols, "@odata.etag"])
    rows = ctx.adapter(sides.target_system).fetch(sides.target, wanted, cols)
    frame = pd.DataFrame(rows, columns=list(dict.fromkeys([*cols, "@odata.etag"])))
    frame.index = frame[sides.target.key].astype(str)
    return frame


def _deleted_target(row: dict[str, Any], mapping: TableMapping, sides: PassSides,
                    wanted: dict[str, Any], tid: str, force: bool) -> None:
    """A coupled record whose counterpart is gone: BC's deletion conflict.

    A forced sync (full or single-record) is not a conflict: the stale coupling is replaced
    and the counterpart created again, as BC does for a forced modify.
    """
    resolution = mapping.conflicts.deletion
    if force:
        resolution = DeletionConflict.RESTORE_RECORDS
    if resolution is DeletionConflict.REMOVE_COUPLING:
        row.update(action="uncouple", reason=f"the coupled {_title(sides.target_system)} record "
                   f"{tid} was deleted; the coupling was removed (deletion conflict resolution)")
    elif resolution is DeletionConflict.RESTORE_RECORDS:
        chooses = sides.target_system == "dataverse"
        values = _insert_values(mapping, sides, wanted)
        row.update(action="insert", restore=True, deleted_target_id=tid,
                   target_id=str(uuid.uuid4()) if chooses else None, payload=values,
                   reason=f"the coupled {_title(sides.target_system)} record {tid} was "
                          "deleted; it is restored from this record")
    else:
        row.update(action="fail", reason=DELETED_MESSAGE.format(
            target=_title(sides.target_system), target_id=tid))


def _plan_coupled(row: dict[str, Any], mapping: TableMapping, sides: PassSides,
                  wanted: dict[str, Any], targets: dict[str, dict[str, Any]],
                  coupling: dict[str, Any], force: bool, renames: dict[str, str], *,
                  full_sync: bool = False, source_changed: bool = True) -> None:
    """Plan a coupled record that is compared with its counterpart.

    BC's full synchronisation force-modifies every coupled record; bcdv goes further and
    never loses a change made on the destination since the last sync: when only the
    destination moved, the pass back carries its change; when both moved, the mapping's
    update-conflict rule decides (merge, a winner, or a reported conflict), as in any run.
    Only a destination that did not move is overwritten (BC's forced modify).
    """
    tid = str(coupling[sides.target_id_col])
    current = targets.get(tid)
    if current is None:
        _deleted_target(row, mapping, sides, wanted, tid, force)
        return
    target_fields = side_fields(mapping, sides.target_system)
    seen = {renames.get(k, k): v for k, v in current.items()}
    diff = [col for col, value in wanted.items() if not same(value, seen.get(col))]
    back = {w: r for r, w in renames.items()}
    after = {f: current.get(f) for f in target_fields}
    for col, value in wanted.items():
        if back.get(col, col) in after:
            after[back.get(col, col)] = value
    row["target_hash"] = row_hash(after, target_fields)
    row["target_values"] = {k: canon(v) for k, v in after.items()}
    row["etag"] = current.get("@odata.etag")
    row["target_modified"] = _iso(current.get(sides.target.modified_on))
    if not diff:
        row.update(action="unchanged", restamp=True, reason="the mapped values already match")
        return
    stored_hash = coupling.get(sides.target_hash_col)
    target_changed = _target_moved(current.get(sides.target.modified_on),
                                   coupling.get(sides.target_mod_col)) or (
        stored_hash is not None and row_hash(current, target_fields) != stored_hash)
    both = mapping.direction is Direction.BIDIRECTIONAL and target_changed
    bidirectional = {write_key(f, sides.target_system) for f in mapping.fields
                     if f.enabled and f.constant is None
                     and f.direction is Direction.BIDIRECTIONAL}
    clash = [c for c in diff if c in bidirectional]
    update = {"action": "update", "payload": {c: wanted[c] for c in diff},
              "reason": "changed: " + ", ".join(diff)}
    # A pair never synchronised (just coupled) has no baseline: BC's forced modify applies.
    protect = force and both and clash and full_sync and _iso(
        coupling.get(sides.target_mod_col)) is not None
    if protect and not source_changed:
        # Only the destination changed (a person's edit): nothing is lost, the pass back
        # carries it. The destination's baseline stays where it was, so it is still seen as
        # changed; its last synced values stay too (a merge needs them).
        row.update(action="unchanged", restamp=True, target_modified=None, target_hash=None,
                   payload={}, target_values=_synced_part(coupling.get("synced"),
                                                          sides.target_system),
                   reason="the destination changed since the last synchronization and this "
                          "record did not: its change goes back in the next pass")
        return
    if protect:
        force = False  # both sides moved: the update-conflict rule decides, as in any run
    if force or not both or not clash:
        row.update(update, both_modified=bool(both) and _has_reverse_only_fields(mapping, sides))
        return
    if mapping.conflicts.update is UpdateConflict.MERGE:
        decision = merge.decide(mapping, sides.source_system, coupling.get("synced"),
                                row["source_values"], {f: current.get(f) for f in target_fields},
                                diff)
        if decision is not None and not decision.clashes:
            _plan_merge(row, sides, wanted, decision)
            return
        if decision is not None:
            clash = decision.clashes
    _resolve_update_conflict(row, mapping, sides, update, clash)


def _plan_merge(row: dict[str, Any], sides: PassSides, wanted: dict[str, Any],
                decision: merge.MergeDecision) -> None:
    """Both sides changed different fields: send ours, leave theirs for the pass back."""
    fields = ", ".join(decision.send) or "nothing"
    base = {"conflict": True, "both_modified": decision.target_changed}
    if decision.send:
        row.update(base, action="update", payload={c: wanted[c] for c in decision.send},
                   reason=f"merged: both sides changed different fields; sent {fields}, the "
                          f"{_title(sides.target_system)} changes go back in the next pass")
    else:
        row.update(base, action="unchanged", restamp=True,
                   target_modified=None, target_hash=None,
                   reason="merged: only the destination changed these fields; they go back "
                          "in the next pass")


def _resolve_update_conflict(row: dict[str, Any], mapping: TableMapping, sides: PassSides,
                             update: dict[str, Any], clash: list[str]) -> None:
    """Both sides changed and a bidirectional field differs: BC's update conflict."""
    resolution = mapping.conflicts.update
    winner = {UpdateConflict.BUSINESS_CENTRAL_WINS: "business_central",
              UpdateConflict.DATAVERSE_WINS: "dataverse"}.get(resolution)
    if winner == sides.source_system:
        row.update(update, both_modified=_has_reverse_only_fields(mapping, sides),
                   conflict=True,
                   reason=f"update conflict on {', '.join(clash)}: "
                          f"{_title(winner)} wins (conflict resolution)")
    elif winner is not None:
        row.update(action="skip", conflict=True,
                   reason=f"update conflict on {', '.join(clash)}: {_title(winner)} wins, so "
                          f"this {_title(sides.source_system)} change is not sent")
    else:
        row.update(action="fail", conflict=True, reason=CONFLICT_MESSAGE.format(
            target=_title(sides.target_system), fields=", ".join(clash)))


def _has_reverse_only_fields(mapping: TableMapping, sides: PassSides) -> bool:
    """Whether the opposite pass has fields of its own to carry back after an overwrite.

    Only then does BC set the overwritten side's baseline behind (see apply.py); without
    such fields there is nothing to carry back and the pair is simply in sync.
    """
    reverse = (Direction.TO_BUSINESS_CENTRAL if sides.target_system == "dataverse"
               else Direction.TO_DATAVERSE)
    return any(f.enabled and f.effective_direction is reverse for f in mapping.fields)


def _insert_values(mapping: TableMapping, sides: PassSides,
                   wanted: dict[str, Any]) -> dict[str, Any]:
    """A new record's values: the mapping's create values, then the mapped fields."""
    return {**mapping.create_values_for(sides.target_system),
            **{k: v for k, v in wanted.items() if v is not None and v == v}}


def _plan_uncoupled(row: dict[str, Any], mapping: TableMapping, sides: PassSides,
                    wanted: dict[str, Any], coupling: dict[str, Any], creates: bool) -> None:
    pending = bool(coupling.get("pending"))
    pending_target = row["target_id"] if pending else None
    if not creates and not pending:
        row.update(action="ignore", target_id=None,
                   reason="not coupled, and the mapping synchronises only coupled records")
        return
    values = _insert_values(mapping, sides, wanted)
    chooses = sides.target_system == "dataverse"
    target_id = pending_target or (str(uuid.uuid4()) if chooses else None)
    row.update(action="insert", target_id=target_id, payload=values, resume=pending,
               reason="resuming an unconfirmed create" if pending else "new record")


def _target_moved(current: Any, baseline: Any) -> bool:
    cur = pd.to_datetime(current, utc=True, errors="coerce")
    base = pd.to_datetime(baseline, utc=True, errors="coerce")
    if pd.isna(base):
        return True
    return bool(pd.notna(cur) and (cur - base) > TOLERANCE)
