"""Plan: decide, per candidate record, what a pass will do, without writing anything.

``plan_records(inputs)`` is a pure function: from gathered inputs (``bcdv.engine.inputs``:
source rows, couplings, target rows, lookup tables, error history, the mapping and the mode)
to typed actions (``bcdv.engine.actions``). It reads no clock, store or service:
``bcdv.engine.gather`` reads everything before. ``plan(ctx, mapping, state)`` is the stage:
gather, plan, write the plan file, chunk by chunk (memory is bounded by the chunk size, not
the table size). A dry run stops here, and the load stage executes exactly this file.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

import pandas as pd

from bcdv import fastjson
from bcdv.clients.odata import parse_datetime
from bcdv.engine import merge
from bcdv.engine.actions import (
    Action,
    Fail,
    Ignore,
    Insert,
    Skip,
    Unchanged,
    Uncouple,
    Update,
    append_actions,
    plan_header,
    target_of,
    write_plan,
)
from bcdv.engine.context import PassSides, SyncContext, system_title
from bcdv.engine.entity_rules import RuleError, complete_insert, wanted_values
from bcdv.engine.inputs import (
    PlanInputs,
    creates,
    flags_of,
    forces,
)
from bcdv.engine.lookups import Tables
from bcdv.engine.outcome import failure_result
from bcdv.engine.staging import PassState
from bcdv.engine.transform import (
    compare_columns,
    side_fields,
    transform,
    wire_binds,
    with_binds,
    write_key,
)
from bcdv.engine.values import TOLERANCE, canon, canon_hash, same
from bcdv.mapping.model import DeletionConflict, Direction, TableMapping, UpdateConflict
from bcdv.state.jsonsafe import json_safe

CHUNK_SIZE = 5000
# After a write that overwrote changes on both sides, the written side's baseline is set a
# little behind, so the opposite pass still sees it as changed and carries back the fields
# mapped only in that direction (BC lowers it by 999 ms for Dataverse, 10 ms for BC).
BOTH_MODIFIED_SLACK_MS = {"dataverse": 999, "business_central": 10}
DELETED_MESSAGE = ("The {target} record cannot be updated because it is coupled to a deleted "
                   "record ({target_id}).")
CONFLICT_MESSAGE = ("Cannot update the {target} record because the mapping is bi-directional "
                    "and both sides changed since the last synchronization: {fields}.")
# New Dataverse ids are derived from the pass's seed (its job id) and the source id: the
# plan stays a function of its inputs, and a replanned pass chooses the same ids.
NEW_ID_NAMESPACE = uuid.UUID("6f1c2a4e-5b0d-4c1e-9a57-0d7b3e2f8c11")
_NAMESPACE_BYTES = NEW_ID_NAMESPACE.bytes
@dataclass(frozen=True)
class _Record:
    """One source record as the per-record rules see it."""

    source_id: str
    name: str
    source_modified: str | None
    source_hash: str
    source_values: dict[str, Any]
    coupling: dict[str, Any]
    synced_target: dict[str, Any] | None
    failed_before: bool
    prior_error: str | None

    def stamped(self) -> dict[str, Any]:
        """The fields every stamped action carries."""
        return {"source_id": self.source_id, "name": self.name,
                "source_modified": self.source_modified, "source_hash": self.source_hash,
                "source_values": self.source_values, "target_values": self.synced_target}


@dataclass(frozen=True)
class _Pass:
    """What every record of a pass shares."""

    inputs: PlanInputs
    sides: PassSides
    force: bool
    creates: bool
    renames: dict[str, str]
    targets: dict[str, dict[str, Any]]
    binds: dict[str, str]  # Dataverse lookups written as binds (transform.wire_binds)
    # Once per pass, not per record: the target's mapped fields (as read), the written
    # properties of bidirectional fields, whether the opposite pass has fields of its own
    # (``_has_reverse_only_fields``), and ``renames`` the other way round.
    target_fields: list[str]
    bidirectional: frozenset[str]
    reverse_only: bool
    back: dict[str, str]  # written property -> column read, where they differ

    @property
    def mapping(self) -> TableMapping:
        return self.inputs.mapping


def plan_records(inputs: PlanInputs) -> list[Action]:
    """The typed action of every source record in ``inputs`` (pure: no I/O, no clock).

    The one state carried from chunk to chunk of a pass is BC's generated salesperson codes:
    an insert takes the next code from ``inputs.tables.entity`` and records it there.
    """
    mapping, direction, sides = inputs.mapping, inputs.direction, inputs.sides
    src, coup = inputs.source, inputs.couplings
    flags = inputs.flags or flags_of(inputs)
    result = transform(src, mapping, direction, inputs.tables)
    src_vals = _by_index(flags.source_canon)
    # Plain Python from here: per-record pandas indexing costs more than the work itself.
    names = (src[sides.source.name_field].astype(str).to_dict()
             if sides.source.name_field in src else {})
    mods = {k: (v.isoformat() if pd.notna(v) else None)
            for k, v in flags.source_modified.items()}
    # Rows only for the records with a coupling: the others (every record of a first full
    # synchronisation) share one row of nothing, as _by_index would have made each of them.
    coup_rows = _by_index(coup[coup[sides.source_id_col].notna()], nulls=True)
    no_coupling: dict[str, Any] = dict.fromkeys(coup.columns)
    payload_rows = _by_index(result.values)
    kept = result.keep.any(axis=1)  # only rows with a keep mark list their kept columns
    keep_cols = {sid: [c for c, k in row.items() if k]
                 for sid, row in _by_index(result.keep[kept]).items()}
    errors = result.errors.to_dict()
    hashes = flags.source_hash.to_dict()
    marks = _by_index(pd.DataFrame({"skipped": flags.skipped, "compare": flags.compare,
                                    "coupled": flags.coupled, "restamp": flags.restamp,
                                    "source_changed": flags.source_changed,
                                    "failed_before": flags.failed_before}))
    tgt = inputs.targets
    renames = {r: w for w, r in compare_columns(mapping, direction).items() if r != w}
    ctx = _Pass(inputs, sides, forces(mapping, direction, inputs.mode),
                creates(mapping, inputs.mode), renames, _by_index(tgt, nulls=True),
                wire_binds(mapping, direction, inputs.tables),
                side_fields(mapping, sides.target_system),
                frozenset(key for f in mapping.fields
                          if f.enabled and f.constant is None
                          and f.direction is Direction.BIDIRECTIONAL
                          and (key := write_key(f, sides.target_system))),
                _has_reverse_only_fields(mapping, sides.target_system),
                {w: r for r, w in renames.items()})
    out: list[Action] = []
    for sid in src.index:
        c, f = coup_rows.get(sid, no_coupling), marks[sid]
        kept_here = keep_cols.get(sid)
        wanted = ({k: v for k, v in payload_rows[sid].items() if k not in kept_here}
                  if kept_here else payload_rows[sid])
        try:
            wanted = wanted_values(sides.target.entity_set, wanted, inputs.tables.entity)
        except RuleError as exc:
            errors[sid] = errors[sid] or str(exc)
        rec = _Record(sid, names.get(sid, ""), mods[sid], hashes[sid],
                      src_vals[sid], c, _synced_part(c.get("synced"), sides.target_system),
                      bool(f["failed_before"]), inputs.prior_errors.get(sid))
        action = _decide(ctx, rec, f, wanted, errors[sid])
        out.append(_first_pass_view(inputs, _finish(ctx, action)))
    return out


def _by_index(frame: pd.DataFrame, *, nulls: bool = False) -> dict[Any, dict[str, Any]]:
    """``frame.to_dict("index")`` (with NaN/NaT as None when ``nulls``), built from column
    lists: pandas' own builds a Series per row, which cost more than the plan's work."""
    if not frame.index.is_unique:
        raise ValueError("DataFrame index must be unique for orient='index'.")
    cols = list(frame.columns)
    lists = [frame[c].tolist() for c in cols]
    if nulls:
        lists = [[None if v is None or v is pd.NaT or v is pd.NA
                  or (isinstance(v, float) and v != v) else v for v in values]
                 for values in lists]
    return {key: dict(zip(cols, row, strict=True))
            for key, row in zip(frame.index, zip(*lists, strict=True), strict=True)}


def _decide(ctx: _Pass, rec: _Record, f: dict[str, Any], wanted: dict[str, Any],
            error: str | None) -> Action:
    """One record's fate, before an insert's completion."""
    sides = ctx.sides
    if f["skipped"]:
        return Skip(source_id=rec.source_id, name=rec.name,
                    target_id=rec.coupling.get(sides.target_id_col),
                    reason="the coupling is marked Skipped; restore it to retry")
    if error and (f["compare"] or not f["coupled"]):
        reason = f"The data could not be transferred: {error}"
        if f["coupled"] or ctx.creates:
            return _fail(rec, reason, rec.coupling.get(sides.target_id_col))
        return Ignore(source_id=rec.source_id, name=rec.name, reason=reason)
    if f["compare"]:
        return _plan_coupled(ctx, rec, wanted, source_changed=bool(f["source_changed"]))
    if f["coupled"]:
        return Unchanged(**rec.stamped(), target_id=rec.coupling.get(sides.target_id_col),
                         restamp=bool(f["restamp"]),
                         target_modified=_iso(rec.coupling.get(sides.target_mod_col)),
                         target_hash=rec.coupling.get(sides.target_hash_col),
                         reason="no mapped field changed since the last synchronization")
    return _plan_uncoupled(ctx, rec, wanted)


def _fail(rec: _Record, reason: str, target_id: str | None, *, conflict: bool = False) -> Fail:
    """A planned failure; BC's "same error twice" rule decides whether it skips."""
    skips = failure_result(rec.failed_before, rec.prior_error, reason) == "skipped"
    return Fail(source_id=rec.source_id, name=rec.name, reason=reason, target_id=target_id,
                conflict=conflict, skips=skips)


def _finish(ctx: _Pass, action: Action) -> Action:
    """An insert gets what BC's subscribers add; payloads get the API's wire form."""
    inputs = ctx.inputs
    if isinstance(action, Insert):
        try:
            payload = complete_insert(ctx.sides.target.entity_set, action.payload,
                                      inputs.tables.entity, source_id=action.source_id)
        except RuleError as exc:
            return Fail(source_id=action.source_id, name=action.name,
                        target_id=action.target_id,
                        reason=f"The data could not be transferred: {exc}")
        return replace(action, payload=_wire(ctx, payload))
    if isinstance(action, Update):
        return replace(action, payload=_wire(ctx, action.payload))
    return action


def _wire(ctx: _Pass, payload: dict[str, Any]) -> dict[str, Any]:
    if not payload:
        return payload
    return with_binds(payload, ctx.binds)


def _first_pass_view(inputs: PlanInputs, action: Action) -> Action:
    """Dry runs: a record the first pass writes is in sync when the pass back reads it."""
    if action.source_id not in inputs.first_pass or isinstance(action, Skip):
        return action
    return Unchanged(source_id=action.source_id,
                     name=inputs.first_pass[action.source_id] or action.name,
                     target_id=target_of(action), restamp=False,
                     conflict=bool(getattr(action, "conflict", False)),
                     source_modified=getattr(action, "source_modified", None),
                     source_hash=getattr(action, "source_hash", None),
                     source_values=getattr(action, "source_values", {}),
                     reason="written by this run's first pass; nothing to carry back")


def _synced_part(value: Any, system: str) -> dict[str, Any] | None:
    if not isinstance(value, str) or not value:
        return None
    part = fastjson.loads(value).get(system)
    return part if isinstance(part, dict) else None


def _iso(value: Any) -> str | None:
    moment = _moment(value)
    return None if moment is None else moment.isoformat()


def _moment(value: Any) -> datetime | None:
    """A timestamp (an API's ISO text, a stored datetime or pandas Timestamp) as aware UTC;
    None for nothing or an unreadable text. Per record, without pandas' per-call parsing."""
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, str):
        try:
            return parse_datetime(value)
        except ValueError:
            return None
    if isinstance(value, float):  # NaN
        return None
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    if isinstance(value, datetime):
        return (value.replace(tzinfo=timezone.utc) if value.tzinfo is None
                else value.astimezone(timezone.utc))
    return _moment(str(value))


def new_target_id(seed: str, source_id: str) -> str:
    """The id a Dataverse create chooses for a source record (stable per seed): the name
    based UUID (version 5, RFC 4122 section 4.3) of ``seed/source_id`` in
    ``NEW_ID_NAMESPACE``, as ``str(uuid.uuid5(...))`` spells it, built without the UUID
    object (a third of the time, once per created record)."""
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + f"{seed}/{source_id}".encode(),
                                    usedforsecurity=False).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # the RFC 4122 variant
    x = digest.hex()
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


def _deleted_target(ctx: _Pass, rec: _Record, wanted: dict[str, Any], tid: str) -> Action:
    """A coupled record whose counterpart is gone: BC's deletion conflict.

    A forced sync (full or single-record) is not a conflict: the stale coupling is replaced
    and the counterpart created again, as BC does for a forced modify.
    """
    sides = ctx.sides
    title = system_title(sides.target_system)
    resolution = ctx.mapping.conflicts.deletion
    if ctx.force:
        resolution = DeletionConflict.RESTORE_RECORDS
    if resolution is DeletionConflict.REMOVE_COUPLING:
        return Uncouple(source_id=rec.source_id, name=rec.name, target_id=tid,
                        reason=f"the coupled {title} record {tid} was deleted; the coupling "
                               "was removed (deletion conflict resolution)")
    if resolution is DeletionConflict.RESTORE_RECORDS:
        chooses = sides.target_system == "dataverse"
        return Insert(**rec.stamped(), restore=True, deleted_target_id=tid,
                      target_id=new_target_id(ctx.inputs.id_seed, rec.source_id)
                      if chooses else None,
                      payload=_insert_values(ctx, wanted),
                      reason=f"the coupled {title} record {tid} was deleted; it is restored "
                             "from this record")
    return _fail(rec, DELETED_MESSAGE.format(target=title, target_id=tid), tid)


def _plan_coupled(ctx: _Pass, rec: _Record, wanted: dict[str, Any], *,
                  source_changed: bool) -> Action:
    """Plan a coupled record that is compared with its counterpart.

    BC's full synchronisation force-modifies every coupled record; bcdv goes further and
    never loses a change made on the destination since the last sync: when only the
    destination moved, the pass back carries its change; when both moved, the mapping's
    update-conflict rule decides (merge, a winner, or a reported conflict), as in any run.
    Only a destination that did not move is overwritten (BC's forced modify).
    """
    sides, mapping, coupling = ctx.sides, ctx.mapping, rec.coupling
    tid = str(coupling[sides.target_id_col])
    current = ctx.targets.get(tid)
    if current is None:
        return _deleted_target(ctx, rec, wanted, tid)
    target_fields = ctx.target_fields
    seen = {ctx.renames.get(k, k): v for k, v in current.items()}
    diff = [col for col, value in wanted.items() if not same(value, seen.get(col))]
    back = ctx.back
    # Each target value canonicalised once: for the values after the write and, below,
    # for the hash of the values as read (row_hash of ``current``).
    current_canon = {f: canon(current.get(f)) for f in target_fields}
    after_canon = dict(current_canon)
    for col, value in wanted.items():
        if back.get(col, col) in after_canon:
            after_canon[back.get(col, col)] = canon(value)
    seen_now = {**rec.stamped(), "target_values": after_canon}
    target_modified = _iso(current.get(sides.target.modified_on))
    target_hash = canon_hash(after_canon, target_fields)
    if not diff:
        return Unchanged(**seen_now, target_id=tid, restamp=True,
                         target_modified=target_modified, target_hash=target_hash,
                         reason="the mapped values already match")
    stored_hash = coupling.get(sides.target_hash_col)
    target_changed = _target_moved(current.get(sides.target.modified_on),
                                   coupling.get(sides.target_mod_col)) or (
        stored_hash is not None and canon_hash(current_canon, target_fields) != stored_hash)
    both = mapping.direction is Direction.BIDIRECTIONAL and target_changed
    clash = [c for c in diff if c in ctx.bidirectional]
    update = Update(**seen_now, target_id=tid, payload={c: wanted[c] for c in diff},
                    diff=tuple(diff), changes=_changes(seen, wanted, diff),
                    etag=current.get("@odata.etag"),
                    target_modified=target_modified, target_hash=target_hash,
                    failed_before=rec.failed_before, prior_error=rec.prior_error,
                    reason="changed: " + ", ".join(diff))
    # A pair never synchronised (just coupled) has no baseline: BC's forced modify applies.
    protect = ctx.force and both and clash and ctx.inputs.mode == "full" and _iso(
        coupling.get(sides.target_mod_col)) is not None
    if protect and not source_changed:
        # Only the destination changed (a person's edit): nothing is lost, the pass back
        # carries it. The destination's baseline stays where it was, so it is still seen as
        # changed; its last synced values stay too (a merge needs them). So does its hash:
        # Dataverse stamps whole seconds, so an edit in the second of our last write moves
        # only the hash, and a restamp without it would make the next full pass overwrite
        # the edit (the fault drill lost a change so).
        return Unchanged(**rec.stamped(), target_id=tid, restamp=True,
                         target_modified=_iso(coupling.get(sides.target_mod_col)),
                         target_hash=stored_hash, goes_back=True,
                         reason="the destination changed since the last synchronization and "
                                "this record did not: its change goes back in the next pass")
    force = ctx.force and not protect  # both sides moved: the conflict rule decides
    if force or not both or not clash:
        return replace(update, baseline_slack_ms=_slack(ctx, bool(both)
                                                         and ctx.reverse_only))
    if mapping.conflicts.update is UpdateConflict.MERGE:
        decision = merge.decide(mapping, sides.source_system, coupling.get("synced"),
                                rec.source_values, {f: current.get(f) for f in target_fields},
                                diff)
        if decision is not None and not decision.clashes:
            return _plan_merge(ctx, update, seen_now, wanted, decision)
        if decision is not None:
            clash = decision.clashes
    return _resolve_update_conflict(ctx, rec, update, clash)


def _changes(seen: dict[str, Any], wanted: dict[str, Any],
             diff: list[str]) -> dict[str, list[Any]]:
    """``{field: [old, new]}`` of the fields an update writes (JSON-safe values)."""
    return {c: [json_safe(seen.get(c)), json_safe(wanted[c])] for c in diff}


def _slack(ctx: _Pass, both_modified: bool) -> int:
    return BOTH_MODIFIED_SLACK_MS[ctx.sides.target_system] if both_modified else 0


def _plan_merge(ctx: _Pass, update: Update, seen_now: dict[str, Any], wanted: dict[str, Any],
                decision: merge.MergeDecision) -> Action:
    """Both sides changed different fields: send ours, leave theirs for the pass back."""
    fields = ", ".join(decision.send) or "nothing"
    if decision.send:
        return replace(update, payload={c: wanted[c] for c in decision.send},
                        diff=tuple(decision.send), conflict=True,
                        changes={c: v for c, v in update.changes.items()
                                 if c in decision.send},
                        baseline_slack_ms=_slack(ctx, decision.target_changed),
                        reason=f"merged: both sides changed different fields; sent {fields}, "
                               f"the {system_title(ctx.sides.target_system)} changes go back "
                               "in the next pass")
    return Unchanged(**seen_now, target_id=update.target_id, restamp=True, conflict=True,
                     reason="merged: only the destination changed these fields; they go back "
                            "in the next pass")


def _resolve_update_conflict(ctx: _Pass, rec: _Record, update: Update,
                             clash: list[str]) -> Action:
    """Both sides changed and a bidirectional field differs: BC's update conflict."""
    sides = ctx.sides
    winner = {UpdateConflict.BUSINESS_CENTRAL_WINS: "business_central",
              UpdateConflict.DATAVERSE_WINS: "dataverse"}.get(ctx.mapping.conflicts.update)
    fields = ", ".join(clash)
    if winner == sides.source_system:
        return replace(update, conflict=True,
                        baseline_slack_ms=_slack(ctx, ctx.reverse_only),
                        reason=f"update conflict on {fields}: {system_title(winner)} wins "
                               "(conflict resolution)")
    if winner is not None:
        return Skip(source_id=rec.source_id, name=rec.name, target_id=update.target_id,
                    conflict=True,
                    reason=f"update conflict on {fields}: {system_title(winner)} wins, so "
                           f"this {system_title(sides.source_system)} change is not sent")
    return _fail(rec, CONFLICT_MESSAGE.format(target=system_title(sides.target_system),
                                              fields=fields), update.target_id, conflict=True)


def _has_reverse_only_fields(mapping: TableMapping, target_system: str) -> bool:
    """Whether the opposite pass has fields of its own to carry back after an overwrite.

    Only then is the overwritten side's baseline set behind (BOTH_MODIFIED_SLACK_MS);
    without such fields there is nothing to carry back and the pair is simply in sync.
    """
    reverse = (Direction.TO_BUSINESS_CENTRAL if target_system == "dataverse"
               else Direction.TO_DATAVERSE)
    return any(f.enabled and f.effective_direction is reverse for f in mapping.fields)


def _insert_values(ctx: _Pass, wanted: dict[str, Any]) -> dict[str, Any]:
    """A new record's values: the mapping's create values, then the mapped fields."""
    return {**ctx.mapping.create_values_for(ctx.sides.target_system),
            **{k: v for k, v in wanted.items() if v is not None and v == v}}


def _plan_uncoupled(ctx: _Pass, rec: _Record, wanted: dict[str, Any]) -> Action:
    """A record without a coupling: created, resumed (an unconfirmed create), or ignored."""
    sides = ctx.sides
    pending = bool(rec.coupling.get("pending"))
    if not ctx.creates and not pending:
        return Ignore(source_id=rec.source_id, name=rec.name,
                      reason="not coupled, and the mapping synchronises only coupled records")
    to_bc = sides.target_system == "business_central"
    pending_target = rec.coupling.get(sides.target_id_col) if pending else None
    target_id = pending_target or (
        None if to_bc else new_target_id(ctx.inputs.id_seed, rec.source_id))
    # An unconfirmed create may have made the record already, and a person may have edited
    # it since: it is looked for before it is sent again (Business Central's by its values,
    # as BC chooses the id; Dataverse's by the id it carries; see lost_creates.py).
    return Insert(**rec.stamped(), target_id=target_id, payload=_insert_values(ctx, wanted),
                  resume=pending, look_up_first=pending,
                  reason="resuming an unconfirmed create" if pending else "new record")


def _target_moved(current: Any, baseline: Any) -> bool:
    base = _moment(baseline)
    if base is None:
        return True
    cur = _moment(current)
    return cur is not None and (cur - base) > TOLERANCE


def plan(ctx: SyncContext, mapping: TableMapping, state: PassState, *,
         chunk_size: int = CHUNK_SIZE) -> PassState:
    """Write the pass's plan file from its staged source records, chunk by chunk:
    gather (reads), ``plan_records`` (pure), append to the plan file."""
    for _ in planned_actions(ctx, mapping, state, chunk_size=chunk_size):
        pass
    return state


def planned_actions(ctx: SyncContext, mapping: TableMapping, state: PassState, *,
                    chunk_size: int = CHUNK_SIZE) -> Iterator[Action]:
    """``plan`` as it goes: each chunk's actions are yielded once they are in the plan file,
    so that a load in the same process writes one chunk while the next is planned. The
    pass's counts are saved after the last chunk."""
    from bcdv.engine.gather import first_pass_writes, gather, gather_first, source_chunks

    direction = Direction(state.direction)
    sides = PassSides.of(mapping, direction)
    write_plan(state.plan_file, plan_header(mapping.name, state.direction))
    written = first_pass_writes(state, sides.source.name_field)
    counts: dict[str, int] = {}
    tables: Tables | None = None
    for src in source_chunks(state, sides.source.key, chunk_size):
        if tables is None:  # the pass's tables come with the first chunk's target rows
            tables, inputs = gather_first(ctx, mapping, state, src, written)
        else:
            inputs = gather(ctx, mapping, state, src, tables, written)
        actions = plan_records(inputs)
        append_actions(state.plan_file, actions)
        for a in actions:
            counts[a.kind] = counts.get(a.kind, 0) + 1
        yield from actions
    state.planned = counts
    state.save()
