"""Updates whose answer never came: settle them before a pass reads anything.

An update is stamped after its answer (the new baselines). When the answer is lost (a reset
after the server committed, a timeout, the run dying between write and stamp), the target
has moved and the baselines have not: the next run would take our own write for a person's
change, and with a person's edit on the other side since, report a conflict or let the older
value win. So before an update batch is sent, each coupling keeps what the update sends and
the source record it was made from (``StateStore.record_update_intents``); a success's stamp
drops it. Before a pass plans, ``settle_updates`` reads the targets of the intents left:

- **Landed** (the target holds every value sent): stamped as the answer would have stamped
  it. When the target also differs from its last synced values elsewhere, somebody edited it
  after our write: the baseline is our write (its values and hash), not the edit, so the
  edit still counts as a change.
- **Not landed, gone, or overwritten since:** the intent is dropped and the baselines stand
  (the next pass compares as it always does).

Only couplings with an intent are read: none after a run that ended well.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from typing import Any

from bcdv import fastjson
from bcdv.clients.odata import parse_datetime
from bcdv.engine.actions import Update
from bcdv.engine.context import PassSides, SyncContext
from bcdv.engine.transform import read_names, side_fields
from bcdv.engine.values import canon, canon_hash, same
from bcdv.mapping.model import Direction, TableMapping
from bcdv.state.db import from_db
from bcdv.state.jsonsafe import json_safe
from bcdv.state.store import Stamp


def update_intent(direction: str, action: Update) -> dict[str, Any]:
    """What a coupling keeps while ``action`` is in flight."""
    return {"direction": direction,
            "sent": {k: json_safe(v) for k, v in action.payload.items()},
            "slack_ms": action.baseline_slack_ms,
            "source": {"values": action.source_values, "modified": action.source_modified,
                       "hash": action.source_hash}}


def settle_updates(ctx: SyncContext, mapping: TableMapping, job_id: str) -> int:
    """Stamp the updates that landed without an answer, drop the other intents (see the
    module); the stamps name ``job_id``. Returns how many updates were settled as landed."""
    pending = ctx.state.update_intents(mapping.name)
    if not pending:
        return 0
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in pending:
        groups[str(row["intent"].get("direction"))].append(row)
    landed = 0
    drop: list[int] = []
    for direction, rows in groups.items():
        try:
            sides = PassSides.of(mapping, Direction(direction))
        except ValueError:
            drop += [int(r["id"]) for r in rows]
            continue
        stamps = _settle(ctx, mapping, sides, rows, drop)
        ctx.state.stamp_many(mapping.name, direction, job_id, stamps)
        ctx.state.resolve_errors(mapping.name, direction,
                                 [s.bc_id if sides.source_system == "business_central"
                                  else s.dv_id for s in stamps])
        landed += len(stamps)
    ctx.state.drop_update_intents(mapping.name, drop)
    return landed


def _settle(ctx: SyncContext, mapping: TableMapping, sides: PassSides,
            rows: list[dict[str, Any]], drop: list[int]) -> list[Stamp]:
    system, key = sides.target_system, sides.target.key
    fields = side_fields(mapping, system)
    read_as = read_names(mapping, system)
    ids = [str(r[sides.target_id_col]) for r in rows]
    columns = sorted({key, sides.target.modified_on, *fields})
    current = {str(r.get(key)).lower(): r
               for r in ctx.adapter(system).fetch(sides.target, ids, columns)}
    stamps = []
    for r in rows:
        intent = r["intent"]
        target = current.get(str(r[sides.target_id_col]).lower())
        sent = {read_as.get(k, k): v for k, v in (intent.get("sent") or {}).items()}
        if target is None or not sent or not all(
                k in target and same(target[k], v) for k, v in sent.items()):
            drop.append(int(r["id"]))
            continue
        stamps.append(_stamp(sides, fields, r, intent, target, set(sent)))
    return stamps


def _stamp(sides: PassSides, fields: list[str], row: dict[str, Any], intent: dict[str, Any],
           target: dict[str, Any], sent: set[str]) -> Stamp:
    """The stamp the lost answer would have made (see the module for an edit since)."""
    before = row["synced"].get(sides.target_system) or {}
    made = {f: canon(target.get(f)) if f in sent or f not in before else before[f]
            for f in fields}
    unedited = all(canon(target.get(f)) == made[f] for f in fields)
    modified = parse_datetime(target.get(sides.target.modified_on)) if unedited else \
        from_db(row[sides.target_mod_col])
    target_hash: str | None = canon_hash(made, fields)
    slack = int(intent.get("slack_ms") or 0)
    if slack and modified is not None:  # as the plan decided for this write (apply.py)
        modified, target_hash = modified - timedelta(milliseconds=slack), None
    source = intent.get("source") or {}
    return sides.stamp(str(row[sides.source_id_col]), str(row[sides.target_id_col]),
                       source_modified=parse_datetime(source.get("modified")),
                       source_hash=source.get("hash"), target_modified=modified,
                       target_hash=target_hash,
                       synced=fastjson.dumps({sides.source_system: source.get("values")
                                              or {}, sides.target_system: made}))
