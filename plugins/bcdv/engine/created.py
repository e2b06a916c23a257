"""Dataverse rows our creates made, whose baseline the first read that meets them sets.

A CreateMultiple answers with the new ids only (Learn: bulk-operations), so the rows'
modified-on and their values as the service stored them (the baseline of the echo and
conflict rules) are unknown when the create is stamped. bcdv does not spend a request
reading them back: the coupling is stamped with ``UNREAD`` as its Dataverse hash and no
Dataverse baseline time, and every read of such a row carries its ``createdon``:

- ``modifiedon`` equal to ``createdon`` and every mapped value the create sent read back as
  sent (kept on the coupling as its synced Dataverse values, ``sent_values``): nobody
  changed the row since our create (Dataverse sets both times when it creates a row and
  moves ``modifiedon`` on every update), so the row as read is the baseline, values the
  service filled in itself included (an account's owner), as a read-back would have
  returned it;
- otherwise somebody changed it after the create: ``modifiedon`` later, or, since
  Dataverse stamps whole seconds, a value unlike the one sent in the very second of the
  create. The baseline is a second before the create with no known hash, so the row
  counts as changed: the pass back carries the change, the conflict rule of a pass towards
  it sees it. (A value the service itself normalised counts as changed too: carried back
  once.)

A marked coupling the read does not meet keeps its mark; every later read settles it the
same way until a write stamps a real baseline.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd

from bcdv import fastjson
from bcdv.engine.values import TOLERANCE, canon, hash_frame, utc_times

UNREAD = "created"  # the Dataverse hash of a coupling whose row no read has met since our create
CREATED_ON = "createdon"
_BIND = re.compile(r"^/[^(]+\(([^)]*)\)$")  # /entityset(id)
# A changed row's baseline: this much before its creation, so that every rule sees it moved
# (Dataverse stamps whole seconds: an edit in the create's second keeps its modifiedon).
_BEFORE = pd.Timedelta(seconds=1)


def settle_frame(coup: pd.DataFrame, rows: pd.DataFrame, *, id_col: str, mod_col: str,
                 hash_col: str, modified_on: str, fields: list[str],
                 hashes: pd.Series | None = None) -> pd.DataFrame:
    """``coup`` with the baselines of its ``UNREAD`` couplings whose rows are in ``rows``
    (indexed by Dataverse id, with ``modified_on`` and ``createdon``): the row as read
    (its modified-on, the hash of its mapped ``fields``, or ``hashes`` when the caller
    has them, same index as ``rows``) when unchanged since the create, else a second before
    the create and no hash. Other couplings, and marked ones whose row is not here, are returned
    as they are; times as aware UTC, as the state store gives them."""
    if coup.empty or hash_col not in coup or rows.empty:
        return coup
    marked = coup[hash_col].eq(UNREAD)
    if not marked.any() or modified_on not in rows or CREATED_ON not in rows:
        return coup
    where = {str(k).lower(): i for i, k in enumerate(rows.index)}
    marked_at = np.flatnonzero(marked.to_numpy())
    pairs = [(c, where[k]) for c, k in zip(
        marked_at, coup[id_col].iloc[marked_at].astype(str).str.lower(), strict=True)
        if k in where]
    if not pairs:
        return coup
    at_coup = [c for c, _ in pairs]
    met = rows.iloc[[r for _, r in pairs]]
    modified = utc_times(met[modified_on])
    created = utc_times(met[CREATED_ON])
    unchanged = ((modified - created).abs() <= TOLERANCE).to_numpy().copy()
    digests = (hashes.iloc[[r for _, r in pairs]] if hashes is not None
               else hash_frame(met, fields)).to_numpy()
    unchanged &= _as_sent(coup["synced"].iloc[at_coup].tolist() if "synced" in coup
                          else [None] * len(at_coup), met)
    at = modified.where(unchanged, created - _BEFORE)
    out = coup.copy()
    out[hash_col] = out[hash_col].astype(object)
    out.iloc[at_coup, out.columns.get_loc(mod_col)] = at.to_numpy()
    out.iloc[at_coup, out.columns.get_loc(hash_col)] = [
        d if keep else None for d, keep in zip(digests, unchanged, strict=True)]
    return out


def _as_sent(synced: list[Any], met: pd.DataFrame) -> np.ndarray:
    """Per met row: whether every value its create sent (the Dataverse part of the
    coupling's synced values, as ``sent_values`` kept it) reads back the same."""
    out = np.zeros(len(met), dtype=bool)
    columns: dict[str, list[Any]] = {}
    for i, text in enumerate(synced):
        sent = _dataverse_part(text)
        if sent is None:
            continue
        ok = True
        for key, value in sent.items():
            if key not in met:
                ok = False
                break
            if key not in columns:
                columns[key] = met[key].tolist()
            if canon(columns[key][i]) != value:
                ok = False
                break
        out[i] = ok
    return out


def _dataverse_part(text: Any) -> dict[str, Any] | None:
    if not isinstance(text, str) or not text:
        return None
    part = fastjson.loads(text).get("dataverse")
    return part if isinstance(part, dict) else None


def sent_values(payload: dict[str, Any], read_as: dict[str, str]) -> dict[str, str]:
    """The mapped values a Dataverse create made, canonical and named as a read returns
    them (``read_as``: written property -> column read; a lookup's ``nav@odata.bind`` of
    ``/set(id)`` reads back as ``_nav_value`` holding the id). A mapped column the create
    left out (its value was empty: creates send no nulls) is kept empty: a person who fills
    it in the very second of the create changed the row, which its modified-on cannot tell.
    A lookup left out is not kept: the service fills some (the owner, the currency), and
    the first read takes them as they are."""
    out: dict[str, str] = {}
    for written, column in read_as.items():
        if written not in payload and written.endswith("@odata.bind"):
            continue
        value = payload.get(written)
        if isinstance(value, str) and written.endswith("@odata.bind"):
            bound = _BIND.match(value)
            value = bound.group(1) if bound else value
        out[column] = canon(value)
    return out
