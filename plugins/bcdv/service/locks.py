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
