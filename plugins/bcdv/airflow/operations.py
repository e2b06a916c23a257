"""Task bodies of the multi-mapping DAGs: full sync, single-record actions, all modified.

Full sync: the run takes the run lock of every selected mapping first (owner = its run id),
so scheduled runs of those mappings' DAGs skip while it runs; each mapping runs its passes in
``full`` mode (forced first pass, uncoupled records created, watermarks set by commit); a
pass's plan is split into chunks that load as parallel mapped tasks; a teardown task releases
the locks, whatever happened.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from bcdv import service
from bcdv.airflow import tasks
from bcdv.errors import SafetyStopError

log = logging.getLogger(__name__)
CHUNKS = "chunks"


def selected(params: dict[str, Any], name: str) -> bool:
    """Whether the trigger form selected this mapping."""
    return name in (params.get("mappings") or [])


# -- locks of a multi-mapping run -----------------------------------------------------------
def lock_all(names: list[str], run_id: str, wait_seconds: float = 0) -> list[str]:
    """Take the run lock of every mapping (all or none); fails naming the holder."""
    from airflow.sdk.exceptions import AirflowFailException

    from bcdv.service import locks

    try:
        taken = locks.acquire_all(tasks.state_store(), names, run_id,
                                  wait_seconds=wait_seconds)
    except SafetyStopError as exc:
        raise AirflowFailException(str(exc)) from None
    log.info("run locks held by %s: %s", run_id, ", ".join(names) or "none")
    return taken


def release_all(names: list[str], run_id: str) -> list[str]:
    """Release the locks this run holds (teardown)."""
    from bcdv.service import locks

    return locks.release_all(tasks.state_store(), names, run_id)


# -- full sync stages -------------------------------------------------------------------------
def full_params(params: dict[str, Any]) -> dict[str, Any]:
    """The per-mapping params of a full sync."""
    return {"full": True, "couple_first": bool(params.get("couple_first", True)),
            "dry_run": bool(params.get("dry_run")), "batch_size": params.get("batch_size")}


def split_plan(directory: str, chunk_size: int) -> list[str]:
    """Split a pass's plan into chunk directories (see ``bcdv.engine.chunks.split_plan``)."""
    from bcdv.engine import chunks

    return chunks.split_plan(directory, chunk_size)


def merge_chunks(directory: str) -> None:
    """Gather the chunks' outcomes into the pass's outcomes file (before commit)."""
    from bcdv.engine import chunks

    chunks.merge_chunks(directory)


def commit_full(mapping_file: str, directories: list[str], run_id: str) -> list[dict[str, Any]]:
    """Merge chunk outcomes and commit every pass (the locks stay until the teardown)."""
    dirs = [d for d in directories if d]
    if not dirs:
        return []
    for d in dirs:
        merge_chunks(d)
    return tasks.commit_passes(mapping_file, dirs, run_id, release=False)


def cleanup(directory: str) -> None:
    """Remove a pass's chunk directories once committed."""
    if directory:
        shutil.rmtree(Path(directory) / CHUNKS, ignore_errors=True)


# -- all modified -----------------------------------------------------------------------------
def sync_modified(mapping_file: str, run_id: str, wait_seconds: float,
                  dry_run: bool = False) -> list[dict[str, Any]]:
    """One mapping's incremental run inside ``bcdv_sync_all_modified``.

    Waits up to ``wait_seconds`` for the mapping's run lock, then skips the mapping (its own
    DAG's run is synchronising it).
    """
    from airflow.sdk.exceptions import AirflowSkipException

    from bcdv import service

    with tasks.sync_context(mapping_file) as ctx:
        try:
            result = service.sync(ctx, [tasks._mapping(mapping_file)], dry_run=dry_run,
                                  run_id=run_id, lock_wait=wait_seconds)
        except SafetyStopError as exc:
            raise AirflowSkipException(f"skipped: {exc}") from None
        tasks.log_reports(result.reports)
        return [tasks.small_report(r) for r in result.reports]


# -- one record ---------------------------------------------------------------------------------
ACTIONS = ("sync", "couple", "uncouple", "restore")
SIDES = ("business_central", "dataverse")


def _record_params(params: dict[str, Any]) -> tuple[str, str, str, str]:
    from airflow.sdk.exceptions import AirflowFailException

    action, side = params.get("action"), params.get("side")
    record_id = str(params.get("record_id") or "").strip()
    if action not in ACTIONS or side not in SIDES or not record_id:
        raise AirflowFailException(f"give action ({', '.join(ACTIONS)}), side "
                                   f"({', '.join(SIDES)}) and record_id")
    other = str(params.get("couple_to") or "").strip()
    if action == "couple" and not other:
        raise AirflowFailException("action 'couple' needs couple_to: the id of the record on "
                                   "the other side")
    return str(action), str(side), record_id, other


def record_action(mapping_file: str, params: dict[str, Any], run_id: str) -> dict[str, Any]:
    """BC's per-record actions: sync, couple to a given id, uncouple, restore.

    Holds the mapping's run lock while it writes (waits up to ``lock_wait_seconds``).
    """
    from airflow.sdk.exceptions import AirflowFailException

    action, side, record_id, other = _record_params(params)
    wait = float(params.get("lock_wait_seconds") or 0)
    with tasks.sync_context(mapping_file) as ctx:
        mapping = tasks._mapping(mapping_file)
        try:
            with service.run_lock(ctx.state, mapping.name, run_id, wait_seconds=wait):
                return _record_action(ctx, mapping, params, run_id, action, side, record_id,
                                      other)
        except SafetyStopError as exc:
            raise AirflowFailException(str(exc)) from None


def _record_action(ctx: Any, mapping: Any, params: dict[str, Any], run_id: str, action: str,
                   side: str, record_id: str, other: str) -> dict[str, Any]:
    if action == "sync":
        report = service.sync_record(ctx, mapping, side=side, record_id=record_id,
                                     dry_run=bool(params.get("dry_run")), run_id=run_id)
        tasks.log_reports([report])
        return {"action": action, "report": tasks.small_report(report)}
    if action == "couple":
        bc_id, dv_id = (record_id, other) if side == "business_central" else (other, record_id)
        direction = (service.records.default_sync_direction(mapping, side)
                     if params.get("sync_after_couple", True) else None)
        result = service.couple(ctx, mapping, bc_id=bc_id, dv_id=dv_id,
                                synchronize=direction, run_id=run_id)
        if result.report is not None:
            tasks.log_reports([result.report])
        return {"action": action, "bc_id": result.bc_id, "dv_id": result.dv_id,
                "report": tasks.small_report(result.report) if result.report else None}
    if action == "uncouple":
        changed = service.uncouple(ctx.state, mapping, record_id, side=side, run_id=run_id)
        log.info("removed %d coupling(s) of %s", changed.changed, record_id)
        return {"action": action, "removed": changed.changed}
    changed = service.restore(ctx.state, mapping, record_id, side=side, run_id=run_id)
    log.info("restored %d coupling(s) of %s", changed.changed, record_id)
    return {"action": action, "restored": changed.changed}
