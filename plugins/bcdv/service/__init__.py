"""The service layer: every operation of bcdv, as the CLI, the DAGs and the UI call it.

- runs (:mod:`.runs`): ``sync`` (incremental; ``full=True``, ``dry_run=True``,
  ``window=(since, until)``), ``full_sync``, ``backfill``, ``in_dependency_order``;
- one record (:mod:`.records`): ``sync_record``, ``couple``, ``uncouple``, ``recouple``
  (its undo), ``restore``, ``restore_all``, ``retry`` (the records of synchronisation
  errors);
- locks (:mod:`.locks`): ``run_lock`` and the stages' ``acquire``/``holding``/``release``,
  ``list_locks``, ``break_lock``;
- a run split into Airflow tasks (:mod:`.stages`);
- read-only queries for the operator surfaces (:mod:`.views`).

Every writing operation holds the mapping's run lock (re-entrant by run id), renewed by a
heartbeat while it works; inputs (record ids, sides, directions, windows) are validated here
(:mod:`.validate`). No Airflow import.
"""

from __future__ import annotations

from bcdv.service.locks import break_lock, list_locks, new_run_id, run_lock
from bcdv.service.records import (
    couple,
    couple_by_match,
    recouple,
    restore,
    restore_all,
    retry,
    sync_record,
    synchronize_all_records,
    uncouple,
)
from bcdv.service.results import CoupleResult, CouplingResult, RunResult
from bcdv.service.runs import Observer, backfill, full_sync, in_dependency_order, sync

__all__ = ["CoupleResult", "CouplingResult", "Observer", "RunResult", "backfill", "break_lock",
           "couple", "couple_by_match", "full_sync", "in_dependency_order", "list_locks",
           "new_run_id", "recouple", "restore", "restore_all", "retry", "run_lock", "sync",
           "sync_record", "synchronize_all_records", "uncouple"]
