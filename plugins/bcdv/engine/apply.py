"""Load and commit: execute a pass's plan, then close its job and advance its watermark.

Load is safe to rerun: an action whose outcome is already staged is not executed again, and a
Dataverse create reuses the id recorded before the write, so a retry never duplicates a row.
Every record failure becomes an error row with the API's message; the other records go on.
What happens to each record was decided by the plan (``bcdv.engine.plan``); a failure the
service answers is judged by ``bcdv.engine.outcome``.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import islice
from typing import Any

from bcdv import fastjson
from bcdv.clients.odata import parse_datetime
from bcdv.engine.actions import (
    Action,
    Fail,
    Insert,
    Unchanged,
    Uncouple,
    Update,
    is_conflict,
    read_plan,
    target_of,
)
from bcdv.engine.adapters import BULK_ROWS, WriteItem, Written, rows_per_create
from bcdv.engine.api_errors import ApiErrorDetail, parse_api_error
from bcdv.engine.context import PassSides, SyncContext, system_title
from bcdv.engine.created import UNREAD, sent_values
from bcdv.engine.lost_creates import (
    Recovered,
    find_lost_bc_creates,
    find_lost_dv_creates,
    full_rows,
    recovery_stamp,
)
from bcdv.engine.memory import give_back_free_memory
from bcdv.engine.outcome import failure_result, skipped_message
from bcdv.engine.report import ACTION_RESULT, PassReport, RecordOutcome
from bcdv.engine.staging import PassState, read_jsonl, write_jsonl
from bcdv.engine.transform import read_names, side_fields, write_key
from bcdv.engine.updates import update_intent
from bcdv.engine.values import canon, canon_hash, same
from bcdv.errors import ConcurrencyError, FatalApiError
from bcdv.mapping.model import Direction, TableMapping
from bcdv.settings import load_settings
from bcdv.state.store import Stamp

# Test hook: called after a write and before its coupling is committed (crash injection);
# it gets the action's plan-file row.
after_write_hook: Callable[[dict[str, Any]], None] | None = None
Stamped = Insert | Update | Unchanged
# CreateMultiple requests in a batch of Dataverse creates (what a load stamps at once).
DV_FLUSH_REQUESTS = 5
# Dataverse batches of creates a load keeps in flight (see _Writer): enough batches of
# DV_FLUSH_REQUESTS requests for the pace to reach the 48 requests at once it allows.
DV_BATCHES_IN_FLIGHT = 10
# Business Central batches of creates a load keeps in flight: the five requests of a user
# Business Central processes at once (Learn: dynamics-rate-limits).
BC_BATCHES_IN_FLIGHT = 5
COMMIT_ROWS = 5000  # outcomes commit reads (and job records it writes) at a time
# The max_length rule's message (mapping/rules.py MaxLength): the value is its repr.
TOO_LONG = re.compile(r"(?P<q>['\"])(?P<value>.*?)(?P=q) has \d+ characters; the destination "
                      r"holds at most (?P<limit>\d+)")
# The field_lookup rule's message (mapping/rules.py FieldLookup).
NOT_IN_TABLE = re.compile(r"no (?P<table>\w+) record with \w+ = (?P<q>['\"])(?P<value>.*?)"
                          r"(?P=q)")
# The transform's message when a lookup finds no coupled record (engine/transform.py).
LOOKUP_FAILURE = re.compile(r"(?:^|: )(?P<field>[\w.@]+) (?P<value>(?:(?!: ).)+?) must be "
                            r"coupled to a record in (?:Dataverse|Business Central) "
                            r"\(mapping (?P<mapping>[^)]+)\)")


def load(ctx: SyncContext, mapping: TableMapping, state: PassState, *,
         batch_size: int | None = None,
         progress: Callable[[int, int], None] | None = None,
         actions: Iterable[Action] | None = None) -> PassState:
    """Execute the plan (nothing is written in a dry run).

    Creates and updates go to the service in batches of ``batch_size`` (``BCDV_BATCH_SIZE``;
    default 100 for Business Central's ``$batch``, 5,000 for Dataverse, whose creates go
    through CreateMultiple: see ``_batch_size``); each record still gets its own outcome.
    ``actions``: the plan's actions as they are planned (``plan.planned_actions``: one
    process plans and loads at once), instead of the finished plan file.
    """
    if state.dry_run:
        return state
    done = {o["source_id"] for o in read_jsonl(state.outcomes_file)}
    sides = PassSides.of(mapping, Direction(state.direction))
    size = _batch_size(sides, batch_size)
    # Dataverse creates are sized once the first one comes (see _create_rows).
    sized = sides.target_system != "dataverse" or _chosen_size(batch_size)
    if sides.target_system == "dataverse":
        ctx.dataverse.create_rows = BULK_ROWS
    buffer: list[Insert | Update] = []
    quiet: list[dict[str, Any]] = []
    resumes: list[Insert] = []
    # Every extracted record gets one action: the total while the plan is still being made.
    total, seen = (sum(state.planned.values()) if actions is None else state.extracted), 0
    recalled = _recall_op_seconds(ctx, sides)
    # Dataverse batches of creates overlap with each other and with the state work; every
    # other batch is written and stamped before the next is sent (see _Writer).
    with _Writer(ctx, mapping, state, sides) as writer:
        for action in read_plan(state.plan_file) if actions is None else actions:
            seen += 1
            if progress is not None and seen % 100 == 0:
                progress(seen, total)
            if action.source_id in done:
                continue
            if isinstance(action, Insert) and action.look_up_first:
                resumes.append(action)
            elif isinstance(action, Insert | Update):
                if not sized and isinstance(action, Insert):
                    size = _batch_size(sides, batch_size, _create_rows(ctx, state))
                    sized = True
                buffer.append(action)
                if len(buffer) >= size:
                    resumes.extend(writer.send(buffer))
                    buffer = []
            else:
                # Outcomes of actions that write nothing to a service (or are safe to redo)
                # are staged in groups: one fsync per group, not per record.
                quiet.append(_apply_one(ctx, mapping, state, sides, action))
                if len(quiet) >= 500:
                    write_jsonl(state.outcomes_file, quiet, append=True)
                    quiet = []
        if buffer:
            resumes.extend(writer.send(buffer))
        writer.drain()
    _keep_op_seconds(ctx, sides, recalled)
    if resumes:
        quiet.extend(_resume_creates(ctx, mapping, state, sides, resumes))
    write_jsonl(state.outcomes_file, quiet, append=True)
    if progress is not None:
        progress(total, total)
    return state


def _service_key(ctx: SyncContext) -> str:
    return f"dataverse {ctx.dataverse.client.settings.api_url}"


def _recall_op_seconds(ctx: SyncContext, sides: PassSides) -> float | None:
    """A load into Dataverse starts from what one ``$batch`` write operation took in the last
    run that measured it, so its update requests are sized (and sent in parallel) at once,
    without a probe of operations sent alone first (DataverseAdapter._batch_parts)."""
    if sides.target_system == "dataverse" and ctx.dataverse.op_seconds is None:
        ctx.dataverse.op_seconds = ctx.state.op_seconds(_service_key(ctx))
    return ctx.dataverse.op_seconds


def _keep_op_seconds(ctx: SyncContext, sides: PassSides, recalled: float | None) -> None:
    """Remember the time of a ``$batch`` write operation this load measured."""
    seconds = ctx.dataverse.op_seconds
    if sides.target_system == "dataverse" and seconds and seconds != recalled:
        ctx.state.keep_op_seconds(_service_key(ctx), seconds)


def _chosen_size(asked: int | None) -> bool:
    """Whether the caller or ``BCDV_BATCH_SIZE`` chose the batch size."""
    return asked is not None or "batch_size" in load_settings().model_fields_set


def _create_rows(ctx: SyncContext, state: PassState) -> int:
    """Rows per CreateMultiple request of a load into Dataverse, set on the adapter when its
    first create comes: whole rounds of the requests the service lets run at once, for the
    records extracted (adapters.rows_per_create). The service's hint is on every answer;
    a load that has heard none yet asks WhoAmI first (as the adapter would before sending
    several requests at once, following Learn's parallel operations sample)."""
    adapter = ctx.dataverse
    http = adapter.client.http
    if http.budget is None and state.extracted > BULK_ROWS:
        adapter.client.whoami()
    adapter.create_rows = rows_per_create(state.extracted, adapter.pace.ceiling(http.budget))
    return adapter.create_rows


def _batch_size(sides: PassSides, asked: int | None, create_rows: int = BULK_ROWS) -> int:
    """Records per written batch: Business Central takes 100 operations per ``$batch``.
    Dataverse takes about 1,000 rows per CreateMultiple (``create_rows``) and 1,000 requests
    per ``$batch``; unless ``BCDV_BATCH_SIZE`` (or the caller) asks for fewer, a Dataverse
    batch is five such requests."""
    cap = 100 if sides.target_system == "business_central" else BULK_ROWS
    if cap == BULK_ROWS and not _chosen_size(asked):
        return DV_FLUSH_REQUESTS * create_rows
    return max(1, min(asked or load_settings().batch_size, cap))


def _already_applied(state: PassState, sides: PassSides,
                     marks: list[dict[str, Any]]) -> dict[str, str]:
    """Source ids this job already wrote and stamped (a retried load must not write again),
    with their target ids; ``marks``: the batch's couplings (StateStore.coupling_marks)."""
    job_col = "to_dv_job" if sides.target_system == "dataverse" else "to_bc_job"
    return {str(m[sides.source_id_col]): str(m[sides.target_id_col]) for m in marks
            if m[job_col] == state.job_id and m[sides.result_col] == "success"
            and not m["pending"]}


def _unconfirmed_creates(sides: PassSides, actions: list[Insert | Update],
                         marks: list[dict[str, Any]]) -> set[str]:
    """Creates an earlier try of this load already sent (their intent was recorded after the
    plan was made, so the plan could not mark them ``look_up_first``): a try killed after
    its write and before its stamp. Sent again, a Business Central create would make a
    second record and a Dataverse upsert would overwrite what a person changed since; they
    are resumed instead (see lost_creates.py)."""
    inserts = {a.source_id for a in actions if isinstance(a, Insert)}
    return {str(m[sides.source_id_col]) for m in marks
            if m["pending"] and str(m[sides.source_id_col]) in inserts}


class _Writer:
    """Writes a load's batches while the main thread prepares the next ones (plans, records
    intents); worker threads only talk HTTP. Batches are finished (stamped, staged) in
    order, each after its answers came.

    What may be in flight at once is what a failure may leave written and not stamped, so
    only creates overlap, each recorded by its intent before it is sent:
    - a Dataverse batch of creates only (their ids chosen: a rerun upserts it, never
      duplicates it) joins up to ``DV_BATCHES_IN_FLIGHT - 1`` others (their requests go
      through the adapter's pace, which keeps to what the service allows);
    - a Business Central batch of creates only (a ``$batch`` of up to 100, whose lost
      creates the next run recovers by their values, engine/lost_creates.py) joins up to
      ``BC_BATCHES_IN_FLIGHT - 1`` others: Business Central processes five requests of a
      user at once and queues the rest (Learn: dynamics-rate-limits), and runs a batch's
      operations one after the other, so one batch at a time used a fifth of what it
      serves.
    A batch with updates is sent only after every batch before it was answered; those are
    stamped while it is in flight, so a failure leaves at most two batches of updates for
    the next run to settle (engine/updates.py), and the state work of one batch overlaps
    the next one's round trip. Leaving the block (an error included) waits for the batches
    in flight; the error then propagates."""

    def __init__(self, ctx: SyncContext, mapping: TableMapping, state: PassState,
                 sides: PassSides) -> None:
        self.ctx, self.mapping, self.state, self.sides = ctx, mapping, state, sides
        self.most = (DV_BATCHES_IN_FLIGHT if sides.target_system == "dataverse"
                     else BC_BATCHES_IN_FLIGHT)
        self.pool = ThreadPoolExecutor(max_workers=self.most, thread_name_prefix="bcdv-write")
        self.flights: deque[tuple[_Batch, Future[list[Written | FatalApiError]]]] = deque()

    def __enter__(self) -> _Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    def send(self, actions: list[Insert | Update]) -> list[Insert]:
        """Start writing ``actions`` (see the class for when); returns the creates to
        resume rather than send (see ``_unconfirmed_creates``)."""
        batch = _prepare(self.ctx, self.mapping, self.state, self.sides, actions)
        if self.most > 1 and all(isinstance(a, Insert) for a in batch.todo):
            # Batches already answered are finished first: a failed one stops the load here.
            while self.flights and (self.flights[0][1].done()
                                    or len(self.flights) >= self.most):
                self._finish_oldest()
            self._submit(batch)
        else:
            # Sent once every batch before it is answered; those are stamped while this one
            # is in flight (a failure leaves at most two batches to settle or recover).
            wait([future for _, future in self.flights])
            if any(future.exception() is not None for _, future in self.flights):
                self.drain()  # a batch that could not be written stops the load here
            self._submit(batch)
            while len(self.flights) > 1:
                self._finish_oldest()
        return batch.resume

    def _submit(self, batch: _Batch) -> None:
        self.flights.append((batch, self.pool.submit(_write, self.ctx, self.mapping,
                                                     self.sides, batch.todo)))

    def drain(self) -> None:
        """Finish every batch in flight (wait for its answers, stamp, stage), in order."""
        while self.flights:
            self._finish_oldest()

    def _finish_oldest(self) -> None:
        batch, future = self.flights.popleft()
        _finish(self.ctx, self.mapping, self.state, self.sides, batch, future.result())
        give_back_free_memory()  # what the batch held, freed among the next ones' memory


@dataclass
class _Batch:
    """One batch of creates and updates, ready to write."""

    todo: list[Insert | Update]
    outcomes: list[dict[str, Any]]
    resume: list[Insert]
    # (bc_id, dv_id) of the creates whose intents are new rows (StateStore.record_intents)
    fresh: set[tuple[str, str]] = field(default_factory=set)


def _prepare(ctx: SyncContext, mapping: TableMapping, state: PassState, sides: PassSides,
             actions: list[Insert | Update]) -> _Batch:
    """What of a batch to write (not what this job already wrote, nor the creates to
    resume), with the intents of its creates recorded."""
    marks = ctx.state.coupling_marks(mapping.name, sides.source_id_col,
                                     [a.source_id for a in actions])
    applied = _already_applied(state, sides, marks)
    unconfirmed = _unconfirmed_creates(sides, actions, marks)
    resume = [a for a in actions if isinstance(a, Insert) and a.source_id in unconfirmed
              and a.source_id not in applied]
    todo = [a for a in actions if a.source_id not in applied and a.source_id not in unconfirmed]
    outcomes = [_outcome(a, target_id=applied[a.source_id]) for a in actions
                if a.source_id in applied]
    bc_first = sides.source_system == "business_central"
    intents = []
    for a in todo:
        if isinstance(a, Insert):
            if a.restore:
                ctx.state.remove_coupling(mapping.name, **{sides.source_id_col: a.source_id})
            # Every create keeps what it sent and the source it was made from: recovery
            # couples the record a lost create made with that as its baseline, so a
            # person's edit made since is a change, not overwritten (see lost_creates.py).
            intents.append((a.source_id if bc_first else None,
                            a.target_id if bc_first else a.source_id,
                            a.payload, _source_baseline(a)))
    fresh = ctx.state.record_intents(mapping.name, intents)
    ctx.state.record_update_intents(mapping.name, sides.source_id_col, {
        a.source_id: update_intent(state.direction, a) for a in todo if isinstance(a, Update)})
    return _Batch(todo, outcomes, resume, fresh)


def _write(ctx: SyncContext, mapping: TableMapping, sides: PassSides,
           todo: list[Insert | Update]) -> list[Written | FatalApiError]:
    """Send a batch's writes (HTTP only: no state store), one answer per action."""
    items = [WriteItem(a.kind, a.target_id, a.payload, a.etag if isinstance(a, Update) else None)
             for a in todo]
    select = side_fields(mapping, sides.target_system)
    results = ctx.adapter(sides.target_system).write_many(
        sides.target, items, select=select) if items else []
    return _confirm_own_updates(ctx, mapping, sides, todo, results)


def _finish(ctx: SyncContext, mapping: TableMapping, state: PassState, sides: PassSides,
            batch: _Batch, results: list[Written | FatalApiError]) -> None:
    """Stamp a written batch's successes, record its failures, stage its outcomes."""
    todo, outcomes = batch.todo, batch.outcomes
    fields = side_fields(mapping, sides.target_system)
    sent_as = _sent_as(mapping, fields)  # once a batch: a CreateMultiple's rows need it each
    stamps = []
    for action, result in zip(todo, results, strict=True):
        outcome = _outcome(action)
        if isinstance(result, FatalApiError):
            outcomes.append(_fail(ctx, mapping, state, sides, action, outcome,
                                  result.message or str(result), result))
            continue
        if after_write_hook is not None:
            after_write_hook(action.to_row())
        target_hash, target_values = _written(mapping, sides, action, result, fields,
                                              sent_as)
        stamps.append(_make_stamp(sides, action, result.record_id, result.modified,
                                  target_hash, target_values))
        if isinstance(action, Insert) and not result.created:
            outcome["message"] = "create resumed after an interruption (no duplicate made)"
        outcome["target_id"] = result.record_id
        outcomes.append(outcome)
    ctx.state.stamp_many(mapping.name, state.direction, state.job_id, stamps,
                         fresh=batch.fresh)
    write_jsonl(state.outcomes_file, outcomes, append=True)


def _confirm_own_updates(ctx: SyncContext, mapping: TableMapping, sides: PassSides,
                         todo: list[Insert | Update], results: list[Written | FatalApiError]
                         ) -> list[Written | FatalApiError]:
    """Updates refused because the record changed since the plan read it (Business Central
    409 Request_EntityChanged, Dataverse 412) are read again: when the record already holds
    every value the update sends, the change was this load's own (a try killed after its
    write and before its stamp) or somebody made the same change, and the update counts as
    written. Otherwise the refusal stands: somebody else changed the record."""
    stale = [i for i, (a, r) in enumerate(zip(todo, results, strict=True))
             if isinstance(a, Update) and isinstance(r, ConcurrencyError) and a.changes]
    if not stale:
        return results
    key, modified_on = sides.target.key, sides.target.modified_on
    system = sides.target_system
    read_as = read_names(mapping, system)
    columns = sorted({key, modified_on, *side_fields(mapping, system)})
    ids = [str(todo[i].target_id) for i in stale]
    rows = {str(r.get(key)): r for r in ctx.adapter(sides.target_system).fetch(
        sides.target, ids, columns)}
    out = list(results)
    for i in stale:
        action = todo[i]
        row = rows.get(str(action.target_id))
        if isinstance(action, Update) and row is not None and all(
                read_as.get(f, f) in row and same(row[read_as.get(f, f)], new)
                for f, (_old, new) in action.changes.items()):
            out[i] = Written(str(action.target_id), parse_datetime(row.get(modified_on)),
                             row.get("@odata.etag"), False, row)
    return out


def _outcome(action: Action, target_id: str | None = None) -> dict[str, Any]:
    return {"source_id": action.source_id, "target_id": target_id or target_of(action),
            "name": action.name, "action": action.kind,
            "result": ACTION_RESULT[action.kind], "message": action.reason,
            "conflict": is_conflict(action),
            "changes": action.changes if isinstance(action, Update) else {}}


def _stamp(ctx: SyncContext, mapping: TableMapping, state: PassState, sides: PassSides,
           action: Stamped, target_id: str, target_modified: datetime | None,
           target_hash: str | None, target_values: dict[str, Any] | None = None) -> None:
    ctx.state.stamp_success(mapping.name, state.direction, state.job_id, _make_stamp(
        sides, action, target_id, target_modified, target_hash, target_values))


def _make_stamp(sides: PassSides, action: Stamped, target_id: str,
                target_modified: datetime | None, target_hash: str | None,
                target_values: dict[str, Any] | None) -> Stamp:
    src_mod = parse_datetime(action.source_modified)
    slack = action.baseline_slack_ms if isinstance(action, Update) else 0
    if slack and target_modified is not None:
        # The plan decided this write overwrote changes on both sides (see plan.py).
        target_modified -= timedelta(milliseconds=slack)
        target_hash = None
    synced = fastjson.dumps({sides.source_system: action.source_values or {},
                             sides.target_system: target_values or action.target_values
                             or {}})
    return sides.stamp(action.source_id, target_id, source_modified=src_mod,
                       source_hash=action.source_hash, target_modified=target_modified,
                       target_hash=target_hash, synced=synced)


def _source_baseline(action: Insert) -> dict[str, Any]:
    """The source record as a create was made from it (kept in the create's intent)."""
    return {"values": action.source_values, "modified": action.source_modified,
            "hash": action.source_hash}


def _resume_creates(ctx: SyncContext, mapping: TableMapping, state: PassState,
                    sides: PassSides, actions: list[Insert]) -> list[dict[str, Any]]:
    """Creates whose outcome was lost, on either side (see lost_creates.py)."""
    if sides.target_system == "business_central":
        return _resume_bc_creates(ctx, mapping, state, sides, actions)
    found = find_lost_dv_creates(ctx, mapping, sides,
                                 {a.source_id: str(a.target_id) for a in actions})
    outcomes: list[dict[str, Any]] = []
    rest = [a for a in actions if a.source_id not in found]
    for a in actions:
        if a.source_id not in found:
            continue
        outcome = _outcome(a)
        try:
            outcome["target_id"] = _recovered(ctx, mapping, state, sides, a,
                                              found[a.source_id], found[a.source_id].row)
        except FatalApiError as exc:
            outcomes.append(_fail(ctx, mapping, state, sides, a, outcome,
                                  exc.message or str(exc), exc))
            continue
        outcome["message"] = "create resumed after an interruption (no duplicate made)"
        outcomes.append(outcome)
    for start in range(0, len(rest), BULK_ROWS):  # never made: created now, with our ids
        chunk = rest[start:start + BULK_ROWS]
        ctx.state.record_intents(mapping.name, [(a.source_id, a.target_id, a.payload,
                                                 _source_baseline(a)) for a in chunk])
        todo: list[Insert | Update] = list(chunk)
        # _finish stamps and stages these outcomes itself
        _finish(ctx, mapping, state, sides, _Batch(todo, [], []),
                _write(ctx, mapping, sides, todo))
    return outcomes


def _resume_bc_creates(ctx: SyncContext, mapping: TableMapping, state: PassState,
                       sides: PassSides, actions: list[Insert]) -> list[dict[str, Any]]:
    """Business Central creates whose outcome was lost (a reset after the server committed,
    or a crash after the POST): find the records they made (see lost_creates.py), else
    create them now. When recovery finds more lookalikes than interrupted creates, the
    record fails with an explanation and stays pending (it is never created a second time).
    """
    found, ambiguous = find_lost_bc_creates(ctx, mapping, sides,
                                            [a.source_id for a in actions],
                                            {a.source_id: a.payload for a in actions})
    rows = full_rows(ctx, mapping, sides, found)
    outcomes: list[dict[str, Any]] = []
    for a in actions:
        sid = a.source_id
        if sid in ambiguous:
            outcomes.append(_ambiguous(ctx, mapping, state, sides, a, ambiguous[sid]))
            continue
        outcome = _outcome(a)
        try:
            if sid in found:
                target_id = _recovered(ctx, mapping, state, sides, a, found[sid], rows[sid])
                outcome["message"] = "create resumed after an interruption (no duplicate made)"
                outcome["target_id"] = target_id
                outcomes.append(outcome)
                continue
            ctx.state.record_intents(mapping.name, [(None, sid, a.payload,
                                                     _source_baseline(a))])
            written = ctx.business_central.create(sides.target, a.payload, None)
        except FatalApiError as exc:
            outcomes.append(_fail(ctx, mapping, state, sides, a, outcome,
                                  exc.message or str(exc), exc))
            continue
        if after_write_hook is not None:
            after_write_hook(a.to_row())
        target_hash, target_values = _written(mapping, sides, a, written)
        _stamp(ctx, mapping, state, sides, a, written.record_id, written.modified,
               target_hash, target_values)
        outcome["target_id"] = written.record_id
        outcomes.append(outcome)
    return outcomes


def _recovered(ctx: SyncContext, mapping: TableMapping, state: PassState, sides: PassSides,
               action: Insert, found: Recovered, row: dict[str, Any]) -> str:
    """Couple a record a lost create made, with the create's baseline; then send what the
    source changed since that create, on the fields nobody changed in Business Central
    (a field a person changed there is theirs: the pass back carries it)."""
    stamp = recovery_stamp(mapping, sides, action.source_id, found, row)
    ctx.state.stamp_many(mapping.name, state.direction, state.job_id, [stamp])
    target_id = str(row[sides.target.key])
    made = fastjson.loads(stamp.synced)[sides.target_system] if stamp.synced else {}
    catch_up = {f: v for f, v in action.payload.items() if f in made and not same(
        v, row.get(f)) and canon(row.get(f)) == made[f]}
    if not catch_up:
        return target_id
    if after_write_hook is not None:
        after_write_hook(action.to_row())
    result = ctx.adapter(sides.target_system).write_many(sides.target, [WriteItem(
        "update", target_id, catch_up, row.get("@odata.etag"))],
        select=side_fields(mapping, sides.target_system))[0]
    if isinstance(result, FatalApiError):
        raise result
    # Now in step with the source as it is; an edited record keeps the create's baseline
    # time, so a person's change there still counts.
    after = {**made, **{f: canon(v) for f, v in catch_up.items()}}
    recovered_at = getattr(stamp, sides.target_mod_col)
    _stamp(ctx, mapping, state, sides, action, target_id,
           result.modified if found.exact else recovered_at,
           canon_hash(after, side_fields(mapping, sides.target_system)), after)
    return target_id


def _ambiguous(ctx: SyncContext, mapping: TableMapping, state: PassState, sides: PassSides,
               action: Insert, found: int) -> dict[str, Any]:
    """Recovery cannot tell which lookalike is ours: an error row, the intent stays."""
    message = (f"An earlier create of this record may have succeeded, but {found} "
               f"{system_title(sides.target_system)} records with its name were made since "
               "then and bcdv cannot tell which one, if any, that create made; it will not "
               "guess and will not create another. Couple it by hand (bcdv couplings couple) "
               "or delete the extra records, then run again.")
    error_id = ctx.state.record_error(mapping.name, state.direction, state.job_id,
                                      source_id=action.source_id, bc_id=None,
                                      dv_id=action.source_id, message=message,
                                      name=action.name)
    outcome = _outcome(action)
    outcome.update(result="failed", message=message, error_id=error_id)
    return outcome


def _sent_as(mapping: TableMapping, fields: list[str]) -> dict[str, str]:
    """Written Dataverse property -> column a read returns, for the mapped ``fields``."""
    return {w: r for w, r in read_names(mapping, "dataverse").items() if r in fields}


def _written(mapping: TableMapping, sides: PassSides, action: Insert | Update,
             written: Written, fields: list[str] | None = None,
             sent_as: dict[str, str] | None = None
             ) -> tuple[str | None, dict[str, Any] | None]:
    """Hash and canonical values of the target's mapped fields as the service stored them
    (it may normalise, e.g. Business Central upper-cases Code fields), else as we sent them.
    ``fields`` and ``sent_as`` (:func:`_sent_as`): when the caller already has them."""
    fields = fields if fields is not None else side_fields(mapping, sides.target_system)
    if written.row is not None and all(f in written.row for f in fields):
        values = {f: written.row[f] for f in fields}
    elif isinstance(action, Insert):
        values = action.payload
        if sides.target_system == "dataverse" and written.row is None:
            # A CreateMultiple's rows: their baseline is the first read's (created.py),
            # which checks them against what was sent.
            return UNREAD, sent_values(values, sent_as if sent_as is not None
                                       else _sent_as(mapping, fields))
    else:
        return action.target_hash, None
    canonical = {f: canon(values.get(f)) for f in fields}
    return canon_hash(canonical, fields), canonical


def _apply_one(ctx: SyncContext, mapping: TableMapping, state: PassState, sides: PassSides,
               action: Action) -> dict[str, Any]:
    outcome = _outcome(action)
    if isinstance(action, Unchanged):
        if action.restamp and action.target_id:
            _stamp(ctx, mapping, state, sides, action, action.target_id,
                   parse_datetime(action.target_modified), action.target_hash)
    elif isinstance(action, Uncouple):
        ctx.state.remove_coupling(mapping.name, **{sides.source_id_col: action.source_id})
    elif isinstance(action, Fail):
        return _fail(ctx, mapping, state, sides, action, outcome, action.reason)
    elif isinstance(action, Insert | Update):
        raise ValueError(f"action {action.kind!r} is written in batches, not one by one")
    return outcome  # Skip and Ignore: nothing to do


def _fail(ctx: SyncContext, mapping: TableMapping, state: PassState, sides: PassSides,
          action: Insert | Update | Fail, outcome: dict[str, Any],
          message: str, error: FatalApiError | None = None) -> dict[str, Any]:
    """Record a failure: an error row that names the record, the field and value the service
    rejected and the failure that caused it, and the coupling's failure (Skipped when the
    plan or BC's rule for the service's answer says so)."""
    bc_first = sides.source_system == "business_central"
    # A refused create made nothing: there is no target record to point at.
    target_id = None if isinstance(action, Insert) else action.target_id
    bc_id = action.source_id if bc_first else target_id
    dv_id = target_id if bc_first else action.source_id
    if error is not None:
        payload = action.payload if isinstance(action, Insert | Update) else {}
        detail = parse_api_error(sides.target_system, error.message or "", payload,
                                 error.code)
        cause = None
    else:
        detail, cause, message = _lookup_failure(ctx, state, sides, message)
        if detail.field is None:
            detail = _rule_failure(mapping, state, sides, message)
    error_id = ctx.state.record_error(
        mapping.name, state.direction, state.job_id, source_id=action.source_id,
        bc_id=bc_id, dv_id=dv_id, message=message, name=action.name, code=detail.code,
        field=detail.field, value=detail.value, caused_by=cause)
    now_skipped = False
    if isinstance(action, Insert):
        # The service refused the create: nothing was made, so the intent is void.
        key = {f"{sides.source_id_col}s": [action.source_id]}
        intent = ctx.state.couplings(mapping.name, **key)
        if not intent.empty and bool(intent["pending"].iat[0]):
            ctx.state.remove_coupling(mapping.name, **{sides.source_id_col: action.source_id})
    else:
        skip = action.skips if isinstance(action, Fail) else failure_result(
            action.failed_before, action.prior_error, message) == "skipped"
        now_skipped = ctx.state.stamp_failure(mapping.name, state.direction, state.job_id,
                                              bc_id=bc_id, dv_id=dv_id, skip=skip)
    outcome.update(result="skipped" if now_skipped else "failed", error_id=error_id,
                   message=skipped_message(message) if now_skipped else message)
    return outcome


def _rule_failure(mapping: TableMapping, state: PassState, sides: PassSides,
                  message: str) -> ApiErrorDetail:
    """A value a mapping rule refused (longer than a max_length rule allows, or missing from
    a field_lookup's table): the value from the message, the field the one of this pass with
    such a rule (none when several have it)."""
    found = TOO_LONG.search(message)
    if found is not None:
        limit = int(found.group("limit"))

        def matches(rule: Any) -> bool:
            return getattr(rule, "type", "") == "max_length" and rule.length == limit
    else:
        found = NOT_IN_TABLE.search(message)
        if found is None:
            return ApiErrorDetail()
        table = found.group("table")

        def matches(rule: Any) -> bool:
            return getattr(rule, "type", "") == "field_lookup" and rule.entity_set == table
    direction = Direction(state.direction)
    fields = {write_key(f, sides.target_system) for f in mapping.fields_for(direction)
              if any(matches(r) for r in f.rules_for(direction))}
    field = next(iter(fields)) if len(fields) == 1 else None
    return ApiErrorDetail(None, field, found.group("value"))


def _lookup_failure(ctx: SyncContext, state: PassState, sides: PassSides,
                    message: str) -> tuple[ApiErrorDetail, int | None, str]:
    """A planned failure's field and value when a lookup failed, and, when the referenced
    record has an open error of its own in this direction (its create or update failed, so
    it is not coupled), that error: the cause, named in the message."""
    found = LOOKUP_FAILURE.search(message)
    if found is None:
        return ApiErrorDetail(), None, message
    detail = ApiErrorDetail(None, found.group("field"), found.group("value"))
    cause, ref = None, found.group("mapping")
    for name in ref.split(" or "):  # a lookup through several mappings names them all
        cause = ctx.state.open_error_for(name, state.direction, found.group("value"))
        if cause is not None:
            ref = name
            break
    if cause is None:
        return detail, None, message
    what = f"{system_title(sides.source_system)} {ref.lower()} {found.group('value')}"
    note = (f" The {what} it refers to failed to synchronise: see error {cause['id']}"
            f" ({ref}).")
    return detail, int(cause["id"]), message.rstrip() + note


def commit(ctx: SyncContext, mapping: TableMapping, state: PassState) -> PassReport:
    """Close the job with its counters, resolve fixed errors and advance the watermark.

    The watermark moves only now, after every write it covers is committed, to the latest
    modified-on seen but never past the signpost taken before the first read.
    """
    report = PassReport.start(state)
    # What the pass did (or, dry, would do) to each record, kept with the job: the preview
    # and the run pages read it after the staging files are gone. Outcomes are read, listed
    # and resolved COMMIT_ROWS at a time, never all held.
    ctx.state.record_job_records(state.job_id, mapping.name, state.direction, [])
    for batch in _outcome_batches(state):
        records = [RecordOutcome.from_row(o, dry_run=state.dry_run) for o in batch]
        for rec in records:
            report.add(rec)
        ctx.state.append_job_records(state.job_id, mapping.name, state.direction,
                                     [r.job_row() for r in records if r.listed])
        if not state.dry_run:
            ctx.state.resolve_errors(mapping.name, state.direction, [
                r.source_id for r in records
                if r.result in ("inserted", "modified", "unchanged")])
    if (not state.dry_run and state.mode != "record" and state.extracted
            and state.latest_modified and state.signpost):
        latest = parse_datetime(state.latest_modified)
        cap = parse_datetime(state.signpost)
        if latest is not None and cap is not None:
            ctx.state.advance_watermark(mapping.name, state.direction, min(latest, cap))
    ctx.state.update_job(state.job_id, **report.counters())
    ctx.state.finish_job(state.job_id, status=report.status, message=report.message)
    return report


def _outcome_batches(state: PassState) -> Iterator[list[dict[str, Any]]]:
    """The pass's outcomes (a dry run: its planned actions), ``COMMIT_ROWS`` at a time."""
    rows: Iterator[dict[str, Any]] = (
        (a.to_row() for a in read_plan(state.plan_file)) if state.dry_run
        else read_jsonl(state.outcomes_file))
    while batch := list(islice(rows, COMMIT_ROWS)):
        yield batch
