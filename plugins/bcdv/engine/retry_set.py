"""The retry set: which source records a pass reads whatever their timestamps.

A rule about a record's fate, so it is decided here in the engine (the store only stores);
it is written as one SQL query over the coupling and error tables because the set is read
once per pass and must not load every coupling of a large mapping.

A source record is retried when, for the pass's direction:
- its coupling's last sync failed and the coupling is not Skipped (BC: Skipped records wait
  for a Restore);
- its create was sent but never confirmed (a pending intent);
- its source-side values are unknown (no hash: freshly coupled, or overwritten while the other
  side had changes), unless Skipped;
- with ``failed_creates`` (a pass that may create records): it is uncoupled and its create
  failed with an error that is still open (BC would wait for it to change again; bcdv retries
  so that no change is left behind).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, select, text

from bcdv.state.schema import RETRY_CANDIDATES, couplings, record_errors
from bcdv.state.store import StateStore


def candidates_query(mapping: str, direction: str) -> Select[Any]:
    """The source ids of couplings whose last sync failed (not Skipped), whose create is
    unconfirmed, or whose source side's values are unknown (not Skipped); a null id is
    among them when a coupling lacks one."""
    to_dv = direction == "to_dataverse"
    src = couplings.c.bc_id if to_dv else couplings.c.dv_id
    result = couplings.c.to_dv_result if to_dv else couplings.c.to_bc_result
    src_hash = couplings.c.bc_hash if to_dv else couplings.c.dv_hash
    not_skipped = couplings.c.skipped.is_(False)
    # The partial index's own condition first (schema.RETRY_CANDIDATES): the scan reads the
    # candidates, not every coupling of the mapping.
    return select(src).where(
        couplings.c.mapping == mapping, text(RETRY_CANDIDATES[direction]),
        ((result == "failure") & not_skipped) | couplings.c.pending.is_(True)
        | (src_hash.is_(None) & couplings.c.pending.is_(False) & not_skipped))


def retry_source_ids(store: StateStore, mapping: str, direction: str, *,
                     failed_creates: bool) -> set[str]:
    """The source ids of ``mapping``'s pass in ``direction`` that must be retried."""
    src = couplings.c.bc_id if direction == "to_dataverse" else couplings.c.dv_id
    with store.engine.connect() as conn:
        ids = {str(r[0]) for r in conn.execute(candidates_query(mapping, direction))
               if r[0] is not None}
        if failed_creates:
            coupled = select(src).where(couplings.c.mapping == mapping, src.is_not(None),
                                        couplings.c.pending.is_(False))
            open_errors = select(record_errors.c.source_id).where(
                record_errors.c.mapping == mapping, record_errors.c.direction == direction,
                record_errors.c.resolved.is_(False),
                record_errors.c.source_id.not_in(coupled)).distinct()
            ids |= {str(r[0]) for r in conn.execute(open_errors)}
    return ids
