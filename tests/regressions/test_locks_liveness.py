"""A run lock outlives its holder by seconds, not an hour: a lock held by a dead process on
this host is taken over at once (pid + process start time, so a reused pid is not taken for
the holder), a lock whose heartbeat stopped a few minutes ago on another host is taken over,
and a live holder is still respected. SQLite and PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from bcdv.errors import SafetyStopError
from bcdv.state import StateStore
from bcdv.state.db import to_db, utcnow
from bcdv.state.schema import locks

M = "CUSTOMER"
ROOT = Path(__file__).resolve().parents[2]
HOLDER = textwrap.dedent("""
    import sys, time
    from bcdv.state import StateStore
    store = StateStore(sys.argv[1])
    with store.mapping_lock(sys.argv[2], "bcdv-sync-holder"):
        print("locked", flush=True)
        time.sleep(600)
""")


def _holder_process(url: str) -> subprocess.Popen[str]:
    """A process that takes the mapping lock the way ``bcdv sync`` does and keeps it."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "plugins")}
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, url, M], stdout=subprocess.PIPE,
                            text=True, env=env)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_lock_of_a_sigkilled_holder_on_this_host_is_taken_over_at_once(
        store: StateStore) -> None:
    proc = _holder_process(store.url)
    try:
        with pytest.raises(SafetyStopError, match="bcdv-sync-holder"):
            store.acquire_lock(M, "next-run")           # alive: respected
        holder = store.lock_holder(M)
        assert holder is not None and holder.pid == proc.pid
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    began = time.monotonic()
    assert store.acquire_lock(M, "next-run") is True     # dead: taken over at once
    assert time.monotonic() - began < 5
    assert store.lock_holder(M).owner == "next-run"


def test_lock_with_a_reused_pid_of_a_dead_holder_is_taken_over(store: StateStore) -> None:
    store.acquire_lock(M, "crashed-run", bound=True)
    # Same host, the pid is alive (our own) but started at another time: not the holder.
    with store._write() as conn:
        conn.execute(update(locks).where(locks.c.mapping == M).values(
            process_start=time.time() - 86400))
    assert store.acquire_lock(M, "next-run") is True


def test_lock_with_a_stale_heartbeat_on_another_host_is_taken_over(store: StateStore) -> None:
    store.acquire_lock(M, "remote-run", bound=True)
    with store._write() as conn:
        conn.execute(update(locks).where(locks.c.mapping == M).values(
            host="another-host.example", pid=4242,
            renewed_at=to_db(utcnow() - timedelta(minutes=4))))
    assert store.acquire_lock(M, "next-run") is True     # default limit: 3 minutes


def test_lock_with_a_fresh_heartbeat_on_another_host_is_respected(store: StateStore) -> None:
    store.acquire_lock(M, "remote-run", bound=True)
    with store._write() as conn:
        conn.execute(update(locks).where(locks.c.mapping == M).values(
            host="another-host.example", pid=4242,
            renewed_at=to_db(utcnow() - timedelta(seconds=30))))
    with pytest.raises(SafetyStopError, match="remote-run"):
        store.acquire_lock(M, "next-run")


def test_live_holder_keeps_its_lock_by_heartbeat(store: StateStore,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BCDV_LOCK_HEARTBEAT_SECONDS", "0.2")
    with store.mapping_lock(M, "long-run"):
        first = store.lock_holder(M).renewed_at
        time.sleep(0.8)
        assert store.lock_holder(M).renewed_at > first
        with pytest.raises(SafetyStopError):
            store.acquire_lock(M, "next-run", stale_after_seconds=0.5)
    assert store.lock_holder(M) is None


def test_run_lock_held_across_task_processes_is_not_freed_when_a_task_ends(
        store: StateStore) -> None:
    """An Airflow run's lock outlives the task process that took it (its tasks re-take it);
    only a process-bound lock (``mapping_lock``, ``bound=True``) dies with its process."""
    store.acquire_lock(M, "scheduled__run")
    with store._write() as conn:
        conn.execute(update(locks).where(locks.c.mapping == M).values(pid=2**22 + 1))
    with pytest.raises(SafetyStopError, match="scheduled__run"):
        store.acquire_lock(M, "next-run")
