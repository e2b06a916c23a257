"""Run locks per mapping: two runs of one mapping never both write.

The lock is a row of ``bcdv_locks``, not a database session lock, because an Airflow DAG run
is several task processes: its first task acquires the lock with the run id as owner, the
tasks in between re-acquire it (re-entrant for the same owner, which also renews it), and its
last task releases it. A lock whose holder has not renewed it for ``stale_after_seconds``
(``BCDV_LOCK_STALE_SECONDS``, default 180) is taken over (the run died without releasing)
and the takeover is logged. A holder renews its lock every ``BCDV_LOCK_HEARTBEAT_SECONDS``
(default 30) while it works (``heartbeat``; ``mapping_lock`` does it for its block).

A lock taken by ``mapping_lock`` (``bcdv sync``, one process from start to end) is *bound*
to its process: the row records host, pid and the process's start time, and a contender on
the same host takes it over at once when that process is gone (SIGKILL, OOM kill), without
waiting for the heartbeat to go stale. The start time tells a reused pid from the holder.
An Airflow run's lock is not bound: the task process that took it ends normally while the
run goes on.

Acquiring is one write transaction: the row is read under a row lock (``FOR UPDATE`` on
PostgreSQL, the database write lock of ``BEGIN IMMEDIATE`` on SQLite), then created with
``INSERT ... ON CONFLICT DO NOTHING`` or updated. Two contenders are serialised by the
database, so exactly one of them gets it.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.engine import Connection

from bcdv.errors import SafetyStopError
from bcdv.state.db import StoreBase, from_db, to_db, upsert_insert, utcnow
from bcdv.state.schema import locks

log = logging.getLogger(__name__)
POLL_SECONDS = 0.1


def lock_stale_seconds() -> float:
    """A lock not renewed for this long is taken over (``BCDV_LOCK_STALE_SECONDS``)."""
    from bcdv.settings import load_settings

    return load_settings().lock_stale_seconds


def lock_heartbeat_seconds() -> float:
    """How often a holder renews its lock (``BCDV_LOCK_HEARTBEAT_SECONDS``)."""
    from bcdv.settings import load_settings

    return load_settings().lock_heartbeat_seconds


def process_start_time(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch), or None when there is no
    such process (a zombie counts as gone: it is dead, only not yet reaped)."""
    try:
        import psutil
    except ImportError:  # pragma: no cover - psutil comes with Airflow
        return _proc_start_time(pid)
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return float(proc.create_time())
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None
    except psutil.AccessDenied:  # it exists; we may not look at it
        return _proc_start_time(pid) or -1.0


def _proc_start_time(pid: int) -> float | None:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return -1.0
    return -1.0  # alive, start time unknown


def _holder_is_gone(row: Any) -> bool:
    """Whether a bound lock's process has ended (only decidable on its own host)."""
    if not row.bound or row.pid is None or row.host != socket.gethostname():
        return False
    started = process_start_time(int(row.pid))
    if started is None:
        return True
    if started < 0 or row.process_start is None:
        return False
    return abs(started - float(row.process_start)) > 1.0  # the pid was reused


@dataclass(frozen=True)
class LockHolder:
    """Who holds a mapping's run lock, since when, and where it was last acquired."""

    mapping: str
    owner: str
    acquired_at: datetime
    renewed_at: datetime
    host: str | None
    pid: int | None

    def describe(self) -> str:
        """One line for error messages and logs."""
        where = f" on {self.host} (pid {self.pid})" if self.host else ""
        return (f"{self.owner!r}{where} since {self.acquired_at.isoformat()} "
                f"(last renewed {self.renewed_at.isoformat()})")


def _holder(row: Any) -> LockHolder:
    return LockHolder(row.mapping, row.owner, from_db(row.acquired_at),  # type: ignore[arg-type]
                      from_db(row.renewed_at), row.host, row.pid)  # type: ignore[arg-type]


class MappingLocks(StoreBase):
    """The run-lock part of the state store."""

    def lock_holder(self, mapping: str) -> LockHolder | None:
        """The current holder of a mapping's run lock, or None when it is free."""
        with self.engine.connect() as conn:
            row = conn.execute(select(locks).where(locks.c.mapping == mapping)).first()
        return _holder(row) if row is not None else None

    def acquire_lock(self, mapping: str, owner: str, *, wait_seconds: float = 0,
                     stale_after_seconds: float | None = None, bound: bool = False) -> bool:
        """Take a mapping's run lock for ``owner`` (an Airflow run id, a CLI invocation id).

        Returns True when this call took the lock (it was free, stale, or its bound holder's
        process is gone, and was taken over) and False when ``owner`` already held it
        (re-entrant; the lock is renewed). Raises SafetyStopError naming the holder when
        another owner keeps it for ``wait_seconds``. ``stale_after_seconds`` defaults to
        ``lock_stale_seconds()``; ``bound`` ties a newly taken lock to this process.
        """
        if stale_after_seconds is None:
            stale_after_seconds = lock_stale_seconds()
        deadline = time.monotonic() + max(0.0, wait_seconds)
        while True:
            outcome = self._try_acquire(mapping, owner, stale_after_seconds, bound)
            if isinstance(outcome, bool):
                return outcome
            if outcome is None:  # released between two statements: try again at once
                continue
            holder = outcome
            if time.monotonic() >= deadline:
                waited = f" after waiting {wait_seconds:g} s" if wait_seconds > 0 else ""
                raise SafetyStopError(
                    f"mapping {mapping} is locked by another run: held by {holder.describe()}"
                    f"; refused {owner!r}{waited}. Two runs of one mapping never write at "
                    f"once; the lock is taken over once not renewed for "
                    f"{stale_after_seconds:g} s.")
            time.sleep(min(POLL_SECONDS, max(0.0, deadline - time.monotonic())))

    def release_lock(self, mapping: str, owner: str) -> bool:
        """Release a mapping's run lock if ``owner`` holds it; returns True if released."""
        with self._write() as conn:
            gone = conn.execute(delete(locks).where(
                locks.c.mapping == mapping, locks.c.owner == owner)).rowcount
        if not gone:
            log.warning("run lock of %s is not held by %r: nothing to release", mapping, owner)
        return bool(gone)

    def break_lock(self, mapping: str) -> LockHolder | None:
        """Remove a mapping's run lock whoever holds it (an operator's decision, e.g. after a
        run was killed without its cleanup); returns who held it."""
        holder = self.lock_holder(mapping)
        if holder is not None:
            with self._write() as conn:
                conn.execute(delete(locks).where(locks.c.mapping == mapping,
                                                 locks.c.owner == holder.owner))
            log.warning("run lock of %s broken (it was held by %s)", mapping, holder.describe())
        return holder

    def lock_holders(self) -> list[LockHolder]:
        """Every mapping's current run lock."""
        with self.engine.connect() as conn:
            names = [r[0] for r in conn.execute(select(locks.c.mapping).order_by(
                locks.c.mapping))]
        return [h for h in (self.lock_holder(n) for n in names) if h is not None]

    def renew_lock(self, mapping: str, owner: str) -> bool:
        """Mark a held lock as alive (a long task calls it now and then, so its lock never
        looks stale); returns False when ``owner`` no longer holds it and must stop writing."""
        with self._write() as conn:
            kept = conn.execute(update(locks).where(
                locks.c.mapping == mapping, locks.c.owner == owner,
            ).values(renewed_at=to_db(utcnow()))).rowcount
        return bool(kept)

    @contextmanager
    def mapping_lock(self, mapping: str, owner: str, *, wait_seconds: float = 0,
                     stale_after_seconds: float | None = None) -> Iterator[None]:
        """Hold a mapping's run lock for the ``with`` block (see ``acquire_lock``), renewing
        it every ``lock_heartbeat_seconds()``. A lock taken here is bound to this process.

        A lock the owner already held before the block stays held after it (and is not
        bound to this process: e.g. an Airflow run's lock re-entered by one of its tasks).
        """
        taken = self.acquire_lock(mapping, owner, wait_seconds=wait_seconds,
                                  stale_after_seconds=stale_after_seconds, bound=True)
        try:
            with self.heartbeat(mapping, owner):
                yield
        finally:
            if taken:
                self.release_lock(mapping, owner)

    @contextmanager
    def heartbeat(self, mapping: str, owner: str,
                  every: float | None = None) -> Iterator[None]:
        """Renew ``owner``'s lock in a background thread while the block runs, so a live
        holder never looks stale (every ``lock_heartbeat_seconds()`` by default)."""
        import threading

        interval = every if every is not None else lock_heartbeat_seconds()
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(interval):
                try:
                    if not self.renew_lock(mapping, owner):
                        log.warning("run lock of %s is no longer held by %r", mapping, owner)
                except Exception:  # a missed renewal is retried at the next beat
                    log.warning("could not renew the run lock of %s", mapping, exc_info=True)

        thread = threading.Thread(target=beat, name=f"bcdv-lock-{mapping}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=5)

    def _try_acquire(self, mapping: str, owner: str, stale_after_seconds: float,
                     bound: bool) -> bool | LockHolder | None:
        """True: taken; False: re-entered; a LockHolder: refused; None: try again."""
        now = utcnow()
        mine = {"owner": owner, "renewed_at": to_db(now), "host": socket.gethostname(),
                "pid": os.getpid(), "process_start": process_start_time(os.getpid())}
        with self._write() as conn:
            row = _locked_row(conn, mapping)
            if row is None:
                inserted = conn.execute(upsert_insert(conn, locks).values(
                    mapping=mapping, acquired_at=to_db(now), bound=bound, **mine
                ).on_conflict_do_nothing(index_elements=["mapping"])).rowcount
                if inserted:
                    return True
                row = _locked_row(conn, mapping)  # a contender inserted it first
                if row is None:
                    return None
            if row.owner == owner:
                # A bound lock stays tied to the process that took it; a run lock records
                # the task process that renewed it last (for operators).
                renewed = {"renewed_at": mine["renewed_at"]} if row.bound else mine
                conn.execute(update(locks).where(locks.c.mapping == mapping).values(**renewed))
                return False
            holder = _holder(row)
            gone = _holder_is_gone(row)
            if not gone and now - holder.renewed_at < timedelta(seconds=stale_after_seconds):
                return holder
            conn.execute(update(locks).where(
                locks.c.mapping == mapping, locks.c.owner == row.owner
            ).values(acquired_at=to_db(now), bound=bound, **mine))
        why = "whose process is gone" if gone else "stale"
        log.warning("run lock of %s taken over by %r from %s holder %s", mapping, owner, why,
                    holder.describe())
        return True


def _locked_row(conn: Connection, mapping: str) -> Any:
    return conn.execute(
        select(locks).where(locks.c.mapping == mapping).with_for_update()).first()
