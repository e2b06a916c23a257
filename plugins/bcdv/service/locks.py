"""The mappings' run locks, as every writing operation takes them.

Two shapes of holder: one process from start to end (the CLI, the UI, a single-task DAG run)
holds the lock for a ``with`` block (:func:`run_lock`, bound to its process); an Airflow DAG
run spans several task processes, so its first task takes the lock (:func:`acquire`), every
later task re-takes it and renews it in the background while it works (:func:`holding`, the
heartbeat), and its last task or teardown releases it (:func:`release`). The lock is
re-entrant by run id, so an operation inside a run that already holds it just renews it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime, timedelta
from typing import Any

from bcdv.state.db import utcnow
from bcdv.state.locks import LockHolder, lock_stale_seconds
from bcdv.state.store import StateStore

log = logging.getLogger(__name__)


def new_run_id(prefix: str) -> str:
    """A run id for a run that does not come with one (``cli__1a2b...``, ``ui__...``)."""
    return f"{prefix}__{uuid.uuid4().hex[:12]}"


@contextmanager
def run_lock(store: StateStore, mapping: str, run_id: str, *,
             wait_seconds: float = 0) -> Iterator[None]:
    """Hold ``mapping``'s run lock for the block, renewed by a heartbeat; refuses
    (SafetyStopError naming the holder) when another run keeps it for ``wait_seconds``."""
    with store.mapping_lock(mapping, run_id, wait_seconds=wait_seconds,
                            stale_after_seconds=lock_stale_seconds()):
        close_abandoned_jobs(store, mapping, run_id)
        yield


@contextmanager
def run_locks(store: StateStore, mappings: Iterable[str], run_id: str, *,
              wait_seconds: float = 0) -> Iterator[None]:
    """Hold the run locks of several mappings for the block (taken in the given order;
    those taken are released when a later one is refused)."""
    with ExitStack() as stack:
        for name in dict.fromkeys(mappings):
            stack.enter_context(run_lock(store, name, run_id, wait_seconds=wait_seconds))
        yield


def acquire(store: StateStore, mapping: str, run_id: str, *, wait_seconds: float = 0) -> bool:
    """Take ``mapping``'s run lock for a run that spans processes (not bound to this one);
    True when taken, False when the run already held it (renewed)."""
    taken = store.acquire_lock(mapping, run_id, wait_seconds=wait_seconds,
                               stale_after_seconds=lock_stale_seconds())
    log.info("run lock of %s held by %s", mapping, run_id)
    if taken:
        close_abandoned_jobs(store, mapping, run_id)
    return taken


def acquire_all(store: StateStore, mappings: list[str], run_id: str, *,
                wait_seconds: float = 0) -> list[str]:
    """Take the run lock of every mapping, all or none (a refusal releases those taken)."""
    taken: list[str] = []
    try:
        for name in mappings:
            acquire(store, name, run_id, wait_seconds=wait_seconds)
            taken.append(name)
    except BaseException:
        for name in taken:
            store.release_lock(name, run_id)
        raise
    return taken


def renew(store: StateStore, mapping: str, run_id: str) -> None:
    """Re-take the run's lock (renews it); refuses if another run has taken it over."""
    store.acquire_lock(mapping, run_id, stale_after_seconds=lock_stale_seconds())


@contextmanager
def holding(store: StateStore, mapping: str, run_id: str) -> Iterator[None]:
    """One stage of a run that holds the lock across processes: re-take the lock, then
    renew it in the background while the block runs, so a live run never looks stale."""
    renew(store, mapping, run_id)
    with store.heartbeat(mapping, run_id):
        yield


def release(store: StateStore, mapping: str, run_id: str) -> bool:
    """Release ``mapping``'s run lock if ``run_id`` holds it (idempotent); True if released."""
    holder = store.lock_holder(mapping)
    if holder is None or holder.owner != run_id:
        return False
    return store.release_lock(mapping, run_id)


def release_all(store: StateStore, mappings: list[str], run_id: str) -> list[str]:
    """Release the locks of these mappings that ``run_id`` holds (a teardown)."""
    return [name for name in mappings if release(store, name, run_id)]


def list_locks(store: StateStore) -> list[LockHolder]:
    """Every mapping's current run lock."""
    return store.lock_holders()


def break_lock(store: StateStore, mapping: str) -> LockHolder | None:
    """Remove ``mapping``'s run lock whoever holds it (an operator who knows the holder is
    dead); returns who held it."""
    return store.break_lock(mapping)


# -- jobs left running by a run that ended without finishing them ---------------------------
# A dry run takes no lock when run from the CLI or the UI, so another run's dry-run job may be
# live while this run holds the lock: such jobs are closed only once they are this old.
DRY_RUN_GRACE = timedelta(days=1)


def abandoned(jobs: Iterable[dict[str, Any]], holder: str, now: datetime) -> list[str]:
    """The ids of running jobs that no live run can finish: every run that writes the mapping
    holds its lock, so a running job of another run id than the lock's ``holder`` was left by
    a run that was killed or crashed (dry-run jobs: once older than :data:`DRY_RUN_GRACE`)."""
    out = []
    for job in jobs:
        if job.get("status") != "running" or job.get("run_id") == holder:
            continue
        started = job.get("started_at")
        if job.get("dry_run") and started is not None and now - started < DRY_RUN_GRACE:
            continue
        out.append(str(job["id"]))
    return out


def close_abandoned_jobs(store: StateStore, mapping: str, run_id: str) -> list[str]:
    """When ``run_id`` has taken ``mapping``'s run lock: close the mapping's jobs left
    running by other runs as failed, saying so; returns their ids."""
    ids = abandoned(store.running_jobs(mapping), run_id, utcnow())
    if ids:
        store.close_jobs(ids, status="failed", message=(
            "the run that started this job ended without finishing it (killed or crashed); "
            f"closed by run {run_id}"))
        log.warning("closed %d job(s) of %s left running by an ended run", len(ids), mapping)
    return ids
