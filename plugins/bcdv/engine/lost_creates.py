"""Business Central creates whose answer was lost: find exactly the records they made.

Business Central chooses a new record's id (API v2.0 refuses ``id`` on POST), so a create
whose response was lost (a reset after the server committed, a crash after the POST) can
only be recognised by what was sent: a candidate was modified since a little before the
first attempt, has every value sent, and is not coupled to anything. Intents that sent the
same values form a group (identical twins): k intents and m such records are paired when
m <= k (identical records are interchangeable); when m > k, someone else made a lookalike in
the same window and bcdv does not guess.

Used before a pass reads Business Central (``recover_lost_bc_creates``, from extract) and
when the load stage resumes an unconfirmed create (``find_lost_bc_creates``, from apply).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from bcdv.clients.odata import parse_datetime
from bcdv.engine.context import PassSides, SyncContext
from bcdv.engine.values import canon, same
from bcdv.mapping.model import Direction, TableMapping
from bcdv.state.store import Stamp, from_db, intent_of


def find_lost_bc_creates(ctx: SyncContext, mapping: TableMapping, sides: PassSides,
                         sources: list[str], payloads: dict[str, dict[str, Any]]
                         ) -> tuple[dict[str, dict[str, Any]], dict[str, int]]:
    """Which records unconfirmed Business Central creates made.

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
    free = _uncoupled(ctx, mapping, sides, candidates)
    return _pair(sides, since, sent, free)


def _uncoupled(ctx: SyncContext, mapping: TableMapping, sides: PassSides,
               candidates: list[dict[str, Any]]) -> list[dict[str, Any]]:
    key = sides.target.key
    taken: set[str] = set()
    if candidates:
        known = ctx.state.couplings(mapping.name, bc_ids=[str(c[key]) for c in candidates])
        taken = set(known.loc[~known["pending"].astype(bool), "bc_id"].astype(str))
    return [c for c in candidates if str(c[key]) not in taken]


def _pair(sides: PassSides, since: dict[str, datetime], sent: dict[str, dict[str, Any]],
          free: list[dict[str, Any]]) -> tuple[dict[str, dict[str, Any]], dict[str, int]]:
    """Pair intents with the free candidates made from their values (see the module)."""
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
        for sid, row in zip(group, matches, strict=False):  # m < k: the rest are created
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
    found, _ = find_lost_bc_creates(ctx, mapping, sides, sources, {})
    stamps = [Stamp(bc_id=str(row[sides.target.key]), dv_id=sid, bc_modified=None,
                    dv_modified=None, bc_hash=None, dv_hash=None, synced=None)
              for sid, row in found.items()]
    # No baselines: the next passes compare both sides and find them equal.
    ctx.state.stamp_many(mapping.name, Direction.TO_BUSINESS_CENTRAL.value, "recovery", stamps)
    return len(stamps)


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
