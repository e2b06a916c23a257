"""Field-level merge of an update conflict (bcdv's ``conflicts.update: merge``).

Business Central can only pick a side when both changed. With the values of both sides as of
the last sync (kept on the coupling), bcdv can tell *which* fields each side changed: when
they changed different fields, both changes survive — this pass sends the source's changes,
and the pass back carries the destination's. Only a field changed on both sides to different
values is a real conflict.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bcdv import fastjson
from bcdv.engine.transform import read_key, write_key
from bcdv.engine.values import same
from bcdv.mapping.model import TableMapping


@dataclass(frozen=True)
class MergeDecision:
    """Which written columns to send, or the fields changed on both sides."""

    send: list[str]
    clashes: list[str]
    target_changed: bool


def _pairs(mapping: TableMapping) -> list[tuple[str, str, str, str]]:
    """(label, bc column, dv column, dv written name) per enabled non-constant field pair."""
    out = []
    for f in mapping.fields:
        if f.enabled and f.constant is None and f.business_central and f.dataverse:
            out.append((f.label, str(read_key(f, "business_central")),
                        str(read_key(f, "dataverse")), str(write_key(f, "dataverse"))))
    return out


def decide(mapping: TableMapping, source_system: str, synced_json: Any,
           source_now: dict[str, Any], target_now: dict[str, Any],
           diff: list[str]) -> MergeDecision | None:
    """The merge of one record, or None when there is no merge base (never synced here).

    ``diff`` lists the written target columns whose wanted value differs from the current.
    """
    if not isinstance(synced_json, str) or not synced_json:
        return None
    synced = fastjson.loads(synced_json)
    target_system = "dataverse" if source_system == "business_central" else "business_central"
    base_src, base_tgt = synced.get(source_system), synced.get(target_system)
    if not isinstance(base_src, dict) or not isinstance(base_tgt, dict):
        return None
    send, clashes, target_changed = [], [], False
    for _label, bc_col, dv_col, dv_write in _pairs(mapping):
        src_col, tgt_col = (bc_col, dv_col) if source_system == "business_central" else (
            dv_col, bc_col)
        written = dv_write if target_system == "dataverse" else bc_col
        src_moved = not same(source_now.get(src_col), base_src.get(src_col))
        tgt_moved = not same(target_now.get(tgt_col), base_tgt.get(tgt_col))
        target_changed |= tgt_moved
        if written not in diff:
            continue
        if src_moved and tgt_moved:
            clashes.append(written)
        elif src_moved:
            send.append(written)
    return MergeDecision(send, clashes, target_changed)
