"""Operations on one record (BC's record actions): synchronise it, couple it to a chosen
record, uncouple it, restore it; and retry the records of synchronisation errors.

Every one of them writes under the mapping's run lock (re-entrant by run id), so it never
races a running sync of that mapping; the UI, the CLI and the record DAG all call these.
"""

from __future__ import annotations

from typing import Any

from bcdv.engine import records as engine_records
from bcdv.engine.context import SyncContext
from bcdv.engine.coupling import CouplingReport, match_couple
from bcdv.engine.report import PassReport
from bcdv.engine.runner import run_pass, sync_mapping
from bcdv.errors import BcdvError, ConfigError
from bcdv.mapping.model import Direction, TableMapping, UpdateConflict
from bcdv.service import validate, views
from bcdv.service.locks import new_run_id, run_lock
from bcdv.service.results import CoupleResult, CouplingResult, RunResult
from bcdv.service.runs import QUIET, Observer, writing
from bcdv.state.store import StateStore


def sync_record(ctx: SyncContext, mapping: TableMapping, *, side: str, record_id: str,
                direction: str | Direction | None = None, dry_run: bool = False,
                run_id: str | None = None, lock_wait: float = 0) -> PassReport:
    """BC's "Synchronize" of one record: a forced single-record pass (Skipped cleared
    first, watermarks untouched), from ``side`` by default."""
    side, rid = validate.side(side), validate.record_id(record_id, "record_id")
    run = run_id or new_run_id("manual")
    with writing(ctx, [mapping.name], run, dry_run=dry_run, wait_seconds=lock_wait):
        return engine_records.sync_record(ctx, mapping, system=side, record_id=rid,
                                          direction=validate.direction(direction),
                                          dry_run=dry_run, run_id=run)


def default_sync_direction(mapping: TableMapping, side: str) -> Direction:
    """The direction that synchronises a newly coupled pair from ``side`` (or the mapping's
    first pass when it does not go that way)."""
    wanted = (Direction.TO_DATAVERSE if validate.side(side) == "business_central"
              else Direction.TO_BUSINESS_CENTRAL)
    return wanted if mapping.direction.includes(wanted) else mapping.passes()[0]


def couple(ctx: SyncContext, mapping: TableMapping, *, bc_id: str, dv_id: str,
           synchronize: str | Direction | None = None, run_id: str | None = None,
           lock_wait: float = 0) -> CoupleResult:
    """Couple a Business Central record to a Dataverse row (both must exist, neither be
    coupled), then synchronise the pair in ``synchronize``'s direction if given."""
    bc, dv = validate.record_id(bc_id, "bc_id"), validate.record_id(dv_id, "dv_id")
    run = run_id or new_run_id("manual")
    with run_lock(ctx.state, mapping.name, run, wait_seconds=lock_wait):
        report = engine_records.couple_record(ctx, mapping, bc_id=bc, dv_id=dv,
                                              synchronize=validate.direction(synchronize))
    return CoupleResult(mapping.name, bc, dv, report)


def couple_by_match(ctx: SyncContext, mapping: TableMapping, *, run_id: str | None = None,
                    lock_wait: float = 0) -> tuple[CouplingReport, list[PassReport]]:
    """BC's "Match-Based Coupling": couple uncoupled records on the mapping's match
    criteria, create the unmatched Business Central records in Dataverse when the mapping
    says so, then (``sync_after_coupling``) synchronise the new pairs: in the mapping's
    direction, or for a bidirectional mapping toward the side its update-conflict rule
    favours (both ways when it favours none)."""
    run = run_id or new_run_id("manual")
    reports: list[PassReport] = []
    with run_lock(ctx.state, mapping.name, run, wait_seconds=lock_wait):
        report = match_couple(ctx, mapping, run_id=run)
        if mapping.coupling.create_new_if_no_match and report.unmatched_ids \
                and mapping.passes()[0] is Direction.TO_DATAVERSE:
            reports.append(run_pass(ctx, mapping, Direction.TO_DATAVERSE, mode="record",
                                    record_ids=report.unmatched_ids, run_id=run))
        if mapping.coupling.sync_after_coupling and report.pairs:
            for direction in _favoured_directions(mapping):
                index = 0 if direction is Direction.TO_DATAVERSE else 1
                ids = [pair[index] for pair in report.pairs]
                reports.append(run_pass(ctx, mapping, direction, mode="record",
                                        record_ids=ids, run_id=run))
    return report, reports


def _favoured_directions(mapping: TableMapping) -> list[Direction]:
    if mapping.direction is not Direction.BIDIRECTIONAL:
        return mapping.passes()
    favour = {UpdateConflict.BUSINESS_CENTRAL_WINS: [Direction.TO_DATAVERSE],
              UpdateConflict.DATAVERSE_WINS: [Direction.TO_BUSINESS_CENTRAL]}
    return favour.get(mapping.conflicts.update, mapping.passes())


def synchronize_all_records(ctx: SyncContext, mapping: TableMapping, *,
                            run_id: str | None = None, lock_wait: float = 0
                            ) -> list[PassReport]:
    """BC's "Synchronize All": forget both watermarks, then a normal run over every record
    (coupled records that did not change stay unchanged; nothing is forced)."""
    run = run_id or new_run_id("manual")
    with run_lock(ctx.state, mapping.name, run, wait_seconds=lock_wait):
        ctx.state.reset_watermarks(mapping.name)
        return sync_mapping(ctx, mapping, run_id=run)


def find(store: StateStore, mapping: TableMapping, record_id: str,
         side: str | None = None) -> dict[str, Any] | None:
    """The coupling of a record by its id on ``side`` (or on either side)."""
    if side is None:
        return views.find_coupling(store, mapping, record_id)
    column = "bc_id" if validate.side(side) == "business_central" else "dv_id"
    row = store.coupling(mapping.name, **{column: record_id})
    return views.coupling_row(mapping, row) if row else None


def _ids(found: dict[str, Any]) -> tuple[str | None, str | None]:
    """The (bc_id, dv_id) to address a found coupling by: its BC id when it has one."""
    return (found["bc_id"], None) if found["bc_id"] else (None, found["dv_id"])


def uncouple(store: StateStore, mapping: TableMapping, record_id: str, *,
             side: str | None = None, run_id: str | None = None,
             lock_wait: float = 0) -> CouplingResult:
    """BC's "Delete Coupling": remove the coupling of a record given by either id (or by its
    id on ``side``); the records stay. ``coupling`` is None when it was not coupled."""
    rid = validate.record_id(record_id, "record_id")
    with run_lock(store, mapping.name, run_id or new_run_id("manual"), wait_seconds=lock_wait):
        found = find(store, mapping, rid, side)
        removed = 0
        if found:
            bc, dv = _ids(found)
            removed = store.remove_coupling(mapping.name, bc_id=bc, dv_id=dv)
    return CouplingResult(mapping.name, rid, found, removed)


def restore(store: StateStore, mapping: TableMapping, record_id: str, *,
            side: str | None = None, run_id: str | None = None,
            lock_wait: float = 0) -> CouplingResult:
    """BC's "Restore": clear Skipped on a record's coupling so the next run retries it."""
    rid = validate.record_id(record_id, "record_id")
    with run_lock(store, mapping.name, run_id or new_run_id("manual"), wait_seconds=lock_wait):
        found = find(store, mapping, rid, side)
        restored = 0
        if found:
            bc, dv = _ids(found)
            restored = store.restore(mapping.name, bc_id=bc, dv_id=dv)
    return CouplingResult(mapping.name, rid, found, restored)


def restore_all(store: StateStore, mapping: TableMapping, *, run_id: str | None = None,
                lock_wait: float = 0) -> int:
    """BC's "Restore All": clear Skipped on every coupling of the mapping; returns how many."""
    with run_lock(store, mapping.name, run_id or new_run_id("manual"), wait_seconds=lock_wait):
        return int(store.restore(mapping.name, all=True))


def error_rows(store: StateStore, error_ids: list[int]) -> list[dict[str, Any]]:
    """The synchronisation errors with these numbers, else BcdvError naming the missing one."""
    rows = []
    for error_id in error_ids:
        row = views.error(store, int(error_id))
        if row is None:
            raise BcdvError(f"no synchronisation error #{error_id}")
        rows.append(row)
    return rows


def retry(ctx: SyncContext, mappings: dict[str, TableMapping], error_ids: list[int], *,
          run_id: str | None = None, lock_wait: float = 0,
          observer: Observer = QUIET) -> RunResult:
    """Synchronise the records of these errors again now, each in its error's direction
    (Skipped cleared first, as BC's retry does)."""
    rows = error_rows(ctx.state, error_ids)
    run = run_id or new_run_id("manual")
    reports = []
    for n, row in enumerate(rows, 1):
        mapping = mappings.get(str(row["mapping"]).upper())
        if mapping is None:
            raise ConfigError(f"error #{row['id']} is of mapping {row['mapping']!r}, which is "
                              f"not defined; known: {', '.join(sorted(mappings))}")
        observer.note(f"[{n}/{len(rows)}] retrying error #{row['id']}: {row['mapping']} "
                      f"{row['direction']} {row['source_id']}")
        reports.append(sync_record(ctx, mapping, side=views.source_system(row["direction"]),
                                   record_id=row["source_id"], direction=row["direction"],
                                   run_id=run, lock_wait=lock_wait))
    return RunResult(run, reports)


def recouple(store: StateStore, mapping: TableMapping, *, bc_id: str, dv_id: str,
             run_id: str | None = None, lock_wait: float = 0) -> bool:
    """Couple a pair again that was just uncoupled (the UI's undo of :func:`uncouple`): the
    store only, no network; False when either record is coupled meanwhile."""
    bc, dv = validate.record_id(bc_id, "bc_id"), validate.record_id(dv_id, "dv_id")
    with run_lock(store, mapping.name, run_id or new_run_id("manual"), wait_seconds=lock_wait):
        return bool(store.couple(mapping.name, bc, dv))
