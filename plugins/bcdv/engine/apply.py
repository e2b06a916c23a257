"""Load and commit: execute a pass's plan, then close its job and advance its watermark.

Load is safe to rerun: an action whose outcome is already staged is not executed again, and a
Dataverse create reuses the id recorded before the write, so a retry never duplicates a row.
Every record failure becomes an error row with the API's message; the other records go on.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any


from bcdv.clients.odata import parse_datetime
from bcdv.engine.adapters import Written, WriteItem
from bcdv.engine.context import PassSides, SyncContext
from bcdv.engine.report import ACTION_RESULT, PassReport, RecordOutcome
from bcdv.engine.staging import PassState, read_jsonl, write_jsonl
from bcdv.engine.transform import side_fields
from bcdv.engine.values import canon, row_hash, same
from bcdv.errors import FatalApiError
from bcdv.mapping.model import Direction, TableMapping
from bcdv.state.store import Stamp, from_db, intent_of

# After a write that overwrote changes on both sides, the written side's baseline is set a
# little behind, so the opposite pass still sees it as changed and carries back the fields
# mapped only in that direction (BC lowers it by 999 ms for Dataverse, 10 ms for BC).
BOTH_MODIFIED_SLACK = {"dataverse": timedelta(milliseconds=999),
                       "business_central": timedelta(milliseconds=10)}

# Test hook: called after a write and before its coupling is committed (crash injection).
after_write_hook: Callable[[dict[str, Any]], None] | None = None


def load(ctx: SyncContext, mapping: TableMapping, state: PassState, *,
         batch_size: int | None = None,
         progress: Callable[[int, int], None] | None = None) -> PassState:
    """Execute the plan (nothing is written in a dry run).

    Creates and updates go to the service in batches (``$batch``, continue on error) of
    ``batch_size`` (``BCDV_BATCH_SIZE``, default 100); each record still gets its own outcome.
    """
    if state.dry_run:
        return state
    done = {o["source_id"] for o in read_jsonl(state.outcomes_file)}
    sides = PassSides.of(mapping, Direction(state.direction))
    prior = ctx.state.last_errors(mapping.name, state.direction,
                                  [a["source_id"] for a in read_jsonl(state.plan_file)])
    cap = 100 if sides.target_system == "business_central" else 1000
    size = max(1, min(batch_size or int(os.environ.get("BCDV_BATCH_SIZE", "100")), cap))
    buffer: list[dict[str, Any]] = []
    quiet: list[dict[str, Any]] = []
    resumes: list[dict[str, Any]] = []
    total, seen = sum(state.planned.values()), 0
    for action in read_jsonl(state.plan_file):
        seen += 1
        if progress is not None and seen % 100 == 0:
            progress(seen, total)
        if action["source_id"] in done:
            continue
        if _resumes_bc_create(action, sides):
            resumes.append(action)
            continue
        if _batchable(action, sides):
            buffer.append(action)
            if len(buffer) >= size:
                _flush(ctx, mapping, state, sides, buffer, prior)
                buffer = []
            continue
        # Outcomes of actions that write nothing to a service (or are safe to redo) are
        # staged in groups: one fsync per group, not per record.
        quiet.append(_apply_one(ctx, mapping, state, sides, action,
                                prior.get(action["source_id"])))
        if len(quiet) >= 500:
            write_jsonl(state.outcomes_file, quiet, append=True)
            quiet = []
    if buffer:
        _flush(ctx, mapping, state, sides, buffer, prior)
    if resumes:
        quiet.extend(_resume_bc_creates(ctx, mapping, state, sides, resumes, prior))
    write_jsonl(state.outcomes_file, quiet, append=True)
    if progress is not None:
        progress(total, total)
    return state


def _resumes_bc_create(action: dict[str, Any], sides: PassSides) -> bool:
    """An interrupted Business Central create: first looked for (see _resume_bc_creates)."""
    return bool(action["action"] == "insert" and action.get("resume")
                and sides.target_system == "business_central")


def _batchable(action: dict[str, Any], sides: PassSides) -> bool:
    return action["action"] in ("insert", "update") and not _resumes_bc_create(action, sides)


def _already_applied(ctx: SyncContext, mapping: TableMapping, state: PassState,
                     sides: PassSides, actions: list[dict[str, Any]]) -> dict[str, str]:
    """Source ids this job already wrote and stamped (a retried load must not write again)."""
    frame = ctx.state.couplings(mapping.name, **{f"{sides.source_id_col}s":
                                                 [a["source_id"] for a in actions]})
    if frame.empty:
        return {}
    job_col = "to_dv_job" if sides.target_system == "dataverse" else "to_bc_job"
    mine = frame[(frame[job_col] == state.job_id) & (frame[sides.result_col] == "success")
                 & ~frame["pending"].astype(bool)]
    return dict(zip(mine[sides.source_id_col].astype(str), mine[sides.target_id_col].astype(str)))


def _flush(ctx: SyncContext, mapping: TableMapping, state: PassState, sides: PassSides,
           actions: list[dict[str, Any]], prior: dict[str, str]) -> None:
    applied = _already_applied(ctx, mapping, state, sides, actions)
    todo = [a for a in actions if a["source_id"] not in applied]
    outcomes = [_outcome(a, target_id=applied[a["source_id"]]) for a in actions
                if a["source_id"] in applied]
    bc_first = sides.source_system == "business_central"
    intents = []
    for a in todo:
        if a["action"] == "insert":
            if a.get("restore"):
                ctx.state.remove_coupling(mapping.name, **{sides.source_id_col: a["source_id"]})
            # A Business Central create keeps what it sent: the service chooses the id, so
            # recovery after a lost response must recognise the record by its values.
            intents.append((a["source_id"] if bc_first else None,
                            a["target_id"] if bc_first else a["source_id"],
                            *(() if bc_first else (a["payload"],))))
    ctx.state.record_intents(mapping.name, intents)
    items = [WriteItem(a["action"], a.get("target_id"), a["payload"], a.get("etag"))
             for a in todo]
    results = ctx.adapter(sides.target_system).write_many(
        sides.target, items, select=side_fields(mapping, sides.target_system)) if items else []
    stamps = []
    for action, result in zip(todo, results):
        outcome = _outcome(action)
        if isinstance(result, FatalApiError):
            outcomes.append(_fail(ctx, mapping, state, sides, action, outcome,
                                  result.message or str(result), prior.get(action["source_id"])))
            continue
        if after_write_hook is not None:
            after_write_hook(action)
        target_hash, target_values = _written(mapping, sides, action, result)
        stamps.append(_make_stamp(sides, action, result.record_id, result.modified,
                                  target_hash, target_values))
        if action["action"] == "insert" and not result.created:
            outcome["message"] = "create resumed after an interruption (no duplicate made)"
        outcome["target_id"] = result.record_id
        outcomes.append(outcome)
    ctx.state.stamp_many(mapping.name, state.direction, state.job_id, stamps)
    write_jsonl(state.outcomes_file, outcomes, append=True)


def _outcome(action: dict[str, Any], target_id: str | None = None) -> dict[str, Any]:
    return {"source_id": action["source_id"], "target_id": target_id or action.get("target_id"),
            "name": action.get("name", ""), "action": action["action"],
            "result": ACTION_RESULT[action["action"]], "message": action.get("reason", ""),
            "conflict": bool(action.get("conflict"))}


def _stamp(ctx: SyncContext, mapping: TableMapping, state: PassState, sides: PassSides,
           action: dict[str, Any], target_id: str, target_modified: datetime | None,
           target_hash: str | None, target_values: dict[str, Any] | None = None) -> None:
    ctx.state.stamp_success(mapping.name, state.direction, state.job_id, _make_stamp(
        sides, action, target_id, target_modified, target_hash, target_values))


def _make_stamp(sides: PassSides, action: dict[str, Any], target_id: str,
                target_modified: datetime | None, target_hash: str | None,
                target_values: dict[str, Any] | None) -> Stamp:
    src_mod = parse_datetime(action["source_modified"])
    if action.get("both_modified") and target_modified is not None:
        target_modified -= BOTH_MODIFIED_SLACK[sides.target_system]
        target_hash = None
    bc_first = sides.source_system == "business_central"
    synced = json.dumps({sides.source_system: action.get("source_values") or {},
                         sides.target_system: target_values or action.get("target_values")
                         or {}}, default=str)
    return Stamp(
        bc_id=action["source_id"] if bc_first else target_id,
        dv_id=target_id if bc_first else action["source_id"],
        bc_modified=src_mod if bc_first else target_modified,
        dv_modified=target_modified if bc_first else src_mod,
        bc_hash=action["source_hash"] if bc_first else target_hash,
        dv_hash=target_hash if bc_first else action["source_hash"],
        synced=synced,
    )


def _lost_bc_creates(ctx: SyncContext, mapping: TableMapping, sides: PassSides,
                     sources: list[str], payloads: dict[str, dict[str, Any]]
                     ) -> tuple[dict[str, dict[str, Any]], dict[str, int]]:
    """Which records unconfirmed Business Central creates made (see _resume_bc_creates).

    Returns (source id -> the record it made) and (source id -> lookalikes found, for
    the intents recovery will not guess for). Sources with nothing found are in neither.
    """
    intents = ctx.state.couplings(mapping.name, dv_ids=sources)
    info = {str(r["dv_id"]): r for r in intents.to_dict("records") if r.get("pending")}
    sent: dict[str, dict[str, Any]] = {}
    since: dict[str, datetime] = {}
    for sid in sources:
        intent = intent_of(info.get(sid, {}).get("synced"))
        sent[sid] = intent.get("sent") or payloads.get(sid) or {}
        first = parse_datetime(intent.get("since")) if intent.get("since") else None
        if first is None and sid in info:
            first = from_db(info[sid]["updated_at"])
        if first is not None and sent[sid]:
            since[sid] = first
    if not since:
        return {}, {}
    candidates = ctx.business_central.created_since(sides.target, [sent[s] for s in since],
                                                    min(since.values()))
    key = sides.target.key
    taken: set[str] = set()
    if candidates:
        known = ctx.state.couplings(mapping.name, bc_ids=[str(c[key]) for c in candidates])
        taken = set(known.loc[~known["pending"].astype(bool), "bc_id"].astype(str))
    free = [c for c in candidates if str(c[key]) not in taken]
    groups: dict[str, list[str]] = {}
    for sid in since:
        groups.setdefault(_values_key(sent[sid]), []).append(sid)
    found: dict[str, dict[str, Any]] = {}
    ambiguous: dict[str, int] = {}
    for group in groups.values():
        first = min(since[s] for s in group)
        matches = [c for c in free if _is_made_from(c, sent[group[0]], sides, first)]
        if len(matches) > len(group):
            ambiguous.update({s: len(matches) for s in group})
            continue
        for sid, row in zip(group, matches):
            found[sid] = row
            free.remove(row)
    return found, ambiguous


def recover_lost_bc_creates(ctx: SyncContext, mapping: TableMapping) -> int:
    """Couple the records that unconfirmed Business Central creates made, before any pass
    reads Business Central: otherwise the pass to Dataverse would take them for new records
    and create them in Dataverse a second time. Returns how many were recovered."""
    if not mapping.direction.includes(Direction.TO_BUSINESS_CENTRAL):
        return 0
    sources = ctx.state.pending_bc_creates(mapping.name)
    if not sources:
        return 0
    sides = PassSides.of(mapping, Direction.TO_BUSINESS_CENTRAL)
    found, _ = _lost_bc_creates(ctx, mapping, sides, sources, {})
    stamps = [Stamp(bc_id=str(row[sides.target.key]), dv_id=sid, bc_modified=None,
                    dv_modified=None, bc_hash=None, dv_hash=None, synced=None)
              for sid, row in found.items()]
    # No baselines: the next passes compare both sides and find them equal.
    ctx.state.stamp_many(mapping.name, Direction.TO_BUSINESS_CENTRAL.value, "recovery", stamps)
    return len(stamps)


def _resume_bc_creates(ctx: SyncContext, mapping: TableMapping, state: PassState,
                       sides: PassSides, actions: list[dict[str, Any]],
                       prior: dict[str, str]) -> list[dict[str, Any]]:
    """Business Central creates whose outcome was lost (a reset after the server committed,
    or a crash after the POST): find exactly the records they made, else create them now.

    Business Central chooses a new record's id (API v2.0 refuses ``id`` on POST), so the
    records are recognised by what was sent: a candidate was modified since a little before
    the first attempt, has the intent's name and every value sent, and is not coupled to
    anything. Intents that sent the same values form a group (identical twins): k intents
    and m such records are paired when m <= k (identical records are interchangeable), and
    the k - m left over are created. When m > k, someone else made a lookalike in the same
    window: bcdv does not guess, the record fails with an explanation and stays pending (it
    is never created a second time); couple it by hand.
    """
    target = ctx.business_central
    key = sides.target.key
    found, ambiguous = _lost_bc_creates(ctx, mapping, sides, [a["source_id"] for a in actions],
                                        {a["source_id"]: a["payload"] for a in actions})
    outcomes: list[dict[str, Any]] = []
    for a in actions:
        sid = a["source_id"]
        if sid in ambiguous:
            outcomes.append(_ambiguous(ctx, mapping, state, sides, a, ambiguous[sid]))
            continue
        outcome = _outcome(a)
        try:
            row = found.get(sid)
            if row is not None:
                written = Written(str(row[key]), parse_datetime(row.get(
                    sides.target.modified_on)), row.get("@odata.etag"), False, row)
            else:
                ctx.state.record_intents(mapping.name, [(None, sid, a["payload"])])
                written = target.create(sides.target, a["payload"], None)
        except FatalApiError as exc:
            outcomes.append(_fail(ctx, mapping, state, sides, a, outcome,
                                  exc.message or str(exc), prior.get(sid)))
            continue
        if after_write_hook is not None:
            after_write_hook(a)
        target_hash, target_values = _written(mapping, sides, a, written)
        _stamp(ctx, mapping, state, sides, a, written.record_id, written.modified,
               target_hash, target_values)
        if not written.created:
            outcome["message"] = "create resumed after an interruption (no duplicate made)"
        outcome["target_id"] = written.record_id
        outcomes.append(outcome)
    return outcomes


def _values_key(payload: dict[str, Any]) -> str:
    return json.dumps({k: canon(v).lower() for k, v in payload.items()}, sort_keys=True)


def _is_made_from(row: dict[str, Any], payload: dict[str, Any], sides: PassSides,
                  first: datetime) -> bool:
    """Whether ``row`` carries every value ``payload`` sent (the service may upper-case a
    Code field) and was modified since a little before the first attempt."""
    modified = parse_datetime(row.get(sides.target.modified_on))
    if modified is None or modified < first - timedelta(seconds=5):
        return False
    return all(same(v, row.get(k)) or canon(v).lower() == canon(row.get(k)).lower()
               for k, v in payload.items() if k in row)


def _ambiguous(ctx: SyncContext, mapping: TableMapping, state: PassState, sides: PassSides,
               action: dict[str, Any], found: int) -> dict[str, Any]:
    """Recovery cannot tell which lookalike is ours: an error row, the intent stays."""
    message = (f"An earlier create of this record may have succeeded, but {found} "
               f"{_title_of(sides)} records with the same values were made since then, more "
               "than the creates that were interrupted; bcdv will not guess which one is "
               "this record's and will not create another. Couple it by hand (bcdv couplings "
               "couple) or delete the extra records, then run again.")
    ctx.state.record_error(mapping.name, state.direction, state.job_id,
                           source_id=action["source_id"], bc_id=None,
                           dv_id=action["source_id"], message=message)
    outcome = _outcome(action)
    outcome.update(result="failed", message=message)
    return outcome


def _title_of(sides: PassSides) -> str:
    return "Dataverse" if sides.target_system == "dataverse" else "Business Central"


def _written(mapping: TableMapping, sides: PassSides, action: dict[str, Any],
             written: Written) -> tuple[str | None, dict[str, Any] | None]:
    """Hash and canonical values of the target's mapped fields as the service stored them
    (it may normalise, e.g. Business Central upper-cases Code fields), else as we sent them."""
    fields = side_fields(mapping, sides.target_system)
    if written.row is not None and all(f in written.row for f in fields):
        values = {f: written.row[f] for f in fields}
    elif action["action"] == "insert":
        values = action["payload"]
    else:
        return action.get("target_hash"), None
    return row_hash(values, fields), {f: canon(values.get(f)) for f in fields}


def _apply_one(ctx: SyncContext, mapping: TableMapping, state: PassState, sides: PassSides,
               action: dict[str, Any], prior_error: str | None) -> dict[str, Any]:
    kind = action["action"]
    outcome = _outcome(action)
    if kind == "unchanged":
        if action.get("restamp") and action.get("target_id"):
            _stamp(ctx, mapping, state, sides, action, action["target_id"],
                   parse_datetime(action.get("target_modified")), action.get("target_hash"))
        return outcome
    if kind in ("skip", "ignore"):
        return outcome
    if kind == "uncouple":
        ctx.state.remove_coupling(mapping.name, **{sides.source_id_col: action["source_id"]})
        return outcome
    if kind == "fail":
        return _fail(ctx, mapping, state, sides, action, outcome, action["reason"], prior_error)
    raise ValueError(f"action {kind!r} is written in batches, not one by one")


def _fail(ctx: SyncContext, mapping: TableMapping, state: PassState, sides: PassSides,
          action: dict[str, Any], outcome: dict[str, Any], message: str,
          prior_error: str | None) -> dict[str, Any]:
    bc_first = sides.source_system == "business_central"
    bc_id = action["source_id"] if bc_first else action.get("target_id")
    dv_id = action.get("target_id") if bc_first else action["source_id"]
    ctx.state.record_error(mapping.name, state.direction, state.job_id,
                           source_id=action["source_id"], bc_id=bc_id, dv_id=dv_id,
                           message=message)
    now_skipped = False
    if action["action"] == "insert":
        # The service refused the create: nothing was made, so the intent is void.
        key = {f"{sides.source_id_col}s": [action["source_id"]]}
        intent = ctx.state.couplings(mapping.name, **key)
        if not intent.empty and bool(intent["pending"].iat[0]):
            ctx.state.remove_coupling(mapping.name,
                                      **{sides.source_id_col: action["source_id"]})
    else:
        now_skipped = ctx.state.stamp_failure(
            mapping.name, state.direction, state.job_id, bc_id=bc_id, dv_id=dv_id,
            message=message, prior_message=prior_error)
    outcome.update(result="skipped" if now_skipped else "failed", message=message)
    if now_skipped:
        outcome["message"] = f"{message} (the same error twice: the record is now Skipped)"
    return outcome


def commit(ctx: SyncContext, mapping: TableMapping, state: PassState) -> PassReport:
    """Close the job with its counters, resolve fixed errors and advance the watermark.

    The watermark moves only now, after every write it covers is committed, to the latest
    modified-on seen but never past the signpost taken before the first read.
    """
    outcomes = (list(read_jsonl(state.plan_file)) if state.dry_run
                else list(read_jsonl(state.outcomes_file)))
    records = [RecordOutcome.from_row(o, dry_run=state.dry_run) for o in outcomes]
    report = PassReport.build(state, records)
    if not state.dry_run:
        ok = [r.source_id for r in records if r.result in ("inserted", "modified", "unchanged")]
        ctx.state.resolve_errors(mapping.name, state.direction, ok)
        if (state.mode != "record" and state.extracted and state.latest_modified
                and state.signpost):
            latest = parse_datetime(state.latest_modified)
            cap = parse_datetime(state.signpost)
            assert latest is not None and cap is not None
            ctx.state.advance_watermark(mapping.name, state.direction, min(latest, cap))
    ctx.state.update_job(state.job_id, **report.counters())
    ctx.state.finish_job(state.job_id, status=report.status, message=report.message)
    return report
