"""Business Central creates whose answer was lost: find the records they made.

Business Central chooses a new record's id (API v2.0 refuses ``id`` on POST), so a create
whose response was lost (a reset after the server committed, a crash after the POST) can
only be recognised by what was sent: a candidate has the name sent, was modified since a
little before the first attempt, and is not coupled to anything.

- **Exact:** the candidate carries every value one of the intent's attempts sent. Intents
  that sent the same values form a group (identical twins): k intents and m such records are
  paired when m <= k (identical records are interchangeable); when m > k, someone else made
  a lookalike in the same window and bcdv does not guess.
- **Edited:** a person may edit the new record before the next run (it is theirs to edit:
  nothing tells them the create's answer was lost). An intent left unpaired takes the one
  free candidate with its name, when it is the only intent with that name; more candidates
  or more intents with that name are ambiguous and reported, never guessed.

A recovered pair is coupled with a baseline (``recovery_stamp``): Business Central's record
as the create made it (the values sent over what the service filled in) and the Dataverse
record as it was when the create was sent. So a person's later edit on either side is a
change the next passes carry, not lost, and the create's own values are no change at all.

Used before a pass reads Business Central (``recover_lost_bc_creates``, from extract) and
when the load stage resumes an unconfirmed create (``find_lost_bc_creates``, from apply).

A Dataverse create carries the id bcdv chose, so its record is read by that id
(``find_lost_dv_creates``): found, it is coupled the same way, with the create as baseline,
instead of being upserted again over what a person changed in it since.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from bcdv import fastjson
from bcdv.clients.odata import parse_datetime
from bcdv.engine.context import PassSides, SyncContext
from bcdv.engine.transform import side_fields
from bcdv.engine.values import canon, canon_hash, same
from bcdv.mapping.model import Direction, TableMapping
from bcdv.state.store import Stamp, from_db, intent_attempts, intent_of


@dataclass(frozen=True)
class Recovered:
    """The record a lost create made, and which attempt made it."""

    row: dict[str, Any]
    attempt: dict[str, Any]  # {"sent": payload, "source": {values, modified, hash} | None}
    since: datetime  # when the intent's first attempt was sent
    exact: bool  # the record still carries every value that attempt sent


def find_lost_bc_creates(ctx: SyncContext, mapping: TableMapping, sides: PassSides,
                         sources: list[str], payloads: dict[str, dict[str, Any]]
                         ) -> tuple[dict[str, Recovered], dict[str, int]]:
    """Which records unconfirmed Business Central creates made.

    Returns (source id -> what it made) and (source id -> lookalikes found, for the
    intents recovery will not guess for). Sources with nothing found are in neither.
    """
    intents = ctx.state.couplings(mapping.name, dv_ids=sources)
    info = {str(r["dv_id"]): r for r in intents.to_dict("records") if r.get("pending")}
    attempts: dict[str, list[dict[str, Any]]] = {}
    since: dict[str, datetime] = {}
    for sid in sources:
        intent = intent_of(info.get(sid, {}).get("synced"))
        tried = [a for a in intent_attempts(intent) or
                 [{"sent": payloads.get(sid), "source": None}]
                 if a.get("sent")]
        first = parse_datetime(intent.get("since")) if intent.get("since") else None
        if first is None and sid in info:
            first = from_db(info[sid]["updated_at"])
        if first is not None and tried:
            since[sid], attempts[sid] = first, tried
    if not since:
        return {}, {}
    candidates = ctx.business_central.created_since(
        sides.target, [a["sent"] for s in since for a in attempts[s]], min(since.values()))
    free = _uncoupled(ctx, mapping, sides, candidates)
    return _pair(sides, since, attempts, free)


def _uncoupled(ctx: SyncContext, mapping: TableMapping, sides: PassSides,
               candidates: list[dict[str, Any]]) -> list[dict[str, Any]]:
    key = sides.target.key
    taken: set[str] = set()
    if candidates:
        known = ctx.state.couplings(mapping.name, bc_ids=[str(c[key]) for c in candidates])
        taken = set(known.loc[~known["pending"].astype(bool), "bc_id"].astype(str))
    return [c for c in candidates if str(c[key]) not in taken]


def _pair(sides: PassSides, since: dict[str, datetime],
          attempts: dict[str, list[dict[str, Any]]], free: list[dict[str, Any]]
          ) -> tuple[dict[str, Recovered], dict[str, int]]:
    """Pair intents with the free candidates made from their values, then the intents left
    with the one record of their name that a person edited since (see the module)."""
    groups: dict[str, list[str]] = {}
    for sid in since:
        groups.setdefault(_values_key(attempts[sid][-1]["sent"]), []).append(sid)
    found: dict[str, Recovered] = {}
    ambiguous: dict[str, int] = {}
    for group in groups.values():
        first = min(since[s] for s in group)
        made = [(c, a) for c in free for a in [_made_by(c, attempts[group[0]], sides, first)]
                if a is not None]
        if len(made) > len(group):
            ambiguous.update({s: len(made) for s in group})
            continue
        for sid, (row, attempt) in zip(group, made, strict=False):  # m < k: the rest are made
            found[sid] = Recovered(row, attempt, since[sid], exact=True)
            free.remove(row)
    left: dict[str, list[str]] = {}
    for sid in since:
        if sid not in found and sid not in ambiguous:
            left.setdefault(_name_of(attempts[sid][-1]["sent"], sides), []).append(sid)
    for name, group in left.items():
        first = min(since[s] for s in group)
        named = [c for c in free if name and _name_of(c, sides) == name
                 and _modified_since(c, sides, first)]
        if not named:
            continue  # never made (or renamed since): the create is sent again
        if len(group) > 1 or len(named) > 1:
            ambiguous.update({s: len(named) for s in group})
            continue
        row, sid = named[0], group[0]
        found[sid] = Recovered(row, _closest(row, attempts[sid]), since[sid], exact=False)
        free.remove(row)
    return found, ambiguous


def find_lost_dv_creates(ctx: SyncContext, mapping: TableMapping, sides: PassSides,
                         targets: dict[str, str]) -> dict[str, Recovered]:
    """Which unconfirmed Dataverse creates (source id -> the id recorded before the write)
    made their record: a Dataverse create carries our id, so the record is read by it. A
    record found is the create's, whatever a person changed in it since."""
    if not targets:
        return {}
    intents = ctx.state.couplings(mapping.name, bc_ids=list(targets))
    info = {str(r["bc_id"]): r for r in intents.to_dict("records") if r.get("pending")}
    key = sides.target.key
    columns = sorted({key, sides.target.modified_on, *side_fields(mapping,
                                                                  sides.target_system)})
    rows = {str(r.get(key)).lower(): r for r in ctx.adapter(sides.target_system).fetch(
        sides.target, list(targets.values()), columns)}
    found: dict[str, Recovered] = {}
    for sid, tid in targets.items():
        row = rows.get(str(tid).lower())
        if row is None:
            continue
        intent = intent_of(info.get(sid, {}).get("synced"))
        tried = [a for a in intent_attempts(intent) if a.get("sent")]
        first = parse_datetime(intent.get("since")) if intent.get("since") else None
        if first is None and sid in info:
            first = from_db(info[sid]["updated_at"])
        attempt = _closest(row, tried) if tried else {"sent": {}, "source": None}
        found[sid] = Recovered(row, attempt, first or datetime.now(timezone.utc),
                               exact=bool(tried) and all(_agrees(row, attempt["sent"])))
    return found


def recovery_stamp(mapping: TableMapping, sides: PassSides, source_id: str,
                   found: Recovered, row: dict[str, Any]) -> Stamp:
    """The coupling of a recovered pair, with a baseline (see the module). ``row``: the
    record as stored now, with every mapped field."""
    fields = side_fields(mapping, sides.target_system)
    sent = found.attempt.get("sent") or {}
    made = {f: canon(sent[f] if f in sent else row.get(f)) for f in fields}
    source = found.attempt.get("source") or {}
    values = source.get("values")
    synced = (fastjson.dumps({sides.source_system: values, sides.target_system: made})
              if isinstance(values, dict) else None)
    # Unedited, the record's own modified-on is its baseline. Edited, the first attempt's
    # time, or the record's modified-on if that is earlier: Dataverse stamps whole seconds,
    # so an edit in the second of the create reads as older than the attempt, and a baseline
    # later than a record's modified-on hides its change (inputs.flags_of); with a baseline
    # not later, the differing hash shows it.
    stored = parse_datetime(row.get(sides.target.modified_on))
    modified = stored if found.exact else min(d for d in (found.since, stored) if d)
    return sides.stamp(source_id, str(row[sides.target.key]),
                       source_modified=parse_datetime(source.get("modified")),
                       source_hash=source.get("hash"), target_modified=modified,
                       target_hash=canon_hash(made, fields), synced=synced)


def full_rows(ctx: SyncContext, mapping: TableMapping, sides: PassSides,
              found: dict[str, Recovered]) -> dict[str, dict[str, Any]]:
    """The recovered records as stored, with every mapped field (recovery read only the
    fields the creates sent), by source id."""
    key = sides.target.key
    columns = sorted({key, sides.target.modified_on, *side_fields(mapping,
                                                                  sides.target_system)})
    rows = {str(r[key]): r for r in ctx.business_central.fetch(
        sides.target, [str(f.row[key]) for f in found.values()], columns)} if found else {}
    return {sid: rows.get(str(f.row[key]), f.row) for sid, f in found.items()}


def recover_lost_bc_creates(ctx: SyncContext, mapping: TableMapping, job_id: str) -> int:
    """Couple the records that unconfirmed Business Central creates made, before a pass
    stages the Business Central records it read: otherwise the pass to Dataverse would take
    them for new records and create them in Dataverse a second time. The couplings name
    ``job_id`` (the pass that recovered them), so the job log accounts for them. Returns
    how many were recovered."""
    if not mapping.direction.includes(Direction.TO_BUSINESS_CENTRAL):
        return 0
    sources = ctx.state.pending_bc_creates(mapping.name)
    if not sources:
        return 0
    sides = PassSides.of(mapping, Direction.TO_BUSINESS_CENTRAL)
    found, _ = find_lost_bc_creates(ctx, mapping, sides, sources, {})
    rows = full_rows(ctx, mapping, sides, found)
    stamps = [recovery_stamp(mapping, sides, sid, rec, rows[sid]) for sid, rec in found.items()]
    ctx.state.stamp_many(mapping.name, Direction.TO_BUSINESS_CENTRAL.value, job_id, stamps)
    return len(stamps)


def _values_key(payload: dict[str, Any]) -> str:
    return json.dumps({k: canon(v).lower() for k, v in payload.items()}, sort_keys=True)


def _name_of(row: dict[str, Any], sides: PassSides) -> str:
    field = sides.target.name_field
    return canon(row.get(field)).lower() if field else ""


def _modified_since(row: dict[str, Any], sides: PassSides, first: datetime) -> bool:
    modified = parse_datetime(row.get(sides.target.modified_on))
    return modified is not None and modified >= first - timedelta(seconds=5)


def _agrees(row: dict[str, Any], payload: dict[str, Any]) -> list[bool]:
    """Per value sent: whether ``row`` carries it (the service may upper-case a Code)."""
    return [same(v, row.get(k)) or canon(v).lower() == canon(row.get(k)).lower()
            for k, v in payload.items() if k in row]


def _made_by(row: dict[str, Any], attempts: list[dict[str, Any]], sides: PassSides,
             first: datetime) -> dict[str, Any] | None:
    """The attempt whose every value ``row`` carries (the latest such), if ``row`` was
    modified since a little before the first attempt."""
    if not _modified_since(row, sides, first):
        return None
    return next((a for a in reversed(attempts) if all(_agrees(row, a["sent"]))), None)


def _closest(row: dict[str, Any], attempts: list[dict[str, Any]]) -> dict[str, Any]:
    """The attempt whose values ``row`` carries most of (the latest on a tie)."""
    return max(reversed(attempts), key=lambda a: sum(_agrees(row, a["sent"])))
