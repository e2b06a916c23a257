"""Run locks per mapping on SQLite and PostgreSQL, and concurrent starts/runs: two runs of one
mapping (threads, and separate processes like Airflow tasks) never both write."""

from __future__ import annotations

import logging
import multiprocessing
import queue
import threading
import time
from typing import Any

import pytest
import state_workers
from sqlalchemy import inspect, text

from bcdv.errors import SafetyStopError
from bcdv.state import StateStore

M = state_workers.MAPPING


def _processes() -> Any:
    """Fresh processes like Airflow's task runners, forked from a server that has the store
    imported already (spawning each one would import pandas and SQLAlchemy every time)."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["bcdv.state.store", "state_workers"])
    return ctx


def test_lock_is_reentrant_exclusive_and_released(store: StateStore) -> None:
    assert store.lock_holder(M) is None
    assert store.acquire_lock(M, "run-a") is True
    assert store.acquire_lock(M, "run-a") is False          # re-entrant, still held
    holder = store.lock_holder(M)
    assert holder is not None and holder.owner == "run-a"
    assert holder.acquired_at.tzinfo is not None and holder.renewed_at >= holder.acquired_at
    with pytest.raises(SafetyStopError, match=r"CUSTOMER is locked.*'run-a'.*since"):
        store.acquire_lock(M, "run-b")
    assert store.acquire_lock("OTHER", "run-b") is True     # locks are per mapping
    assert store.release_lock(M, "run-b") is False          # not the holder: no effect
    assert store.lock_holder(M).owner == "run-a"
    assert store.release_lock(M, "run-a") is True
    assert store.lock_holder(M) is None
    assert store.acquire_lock(M, "run-b") is True


def test_mapping_lock_keeps_a_lock_held_before_the_block(store: StateStore) -> None:
    store.acquire_lock(M, "run-a")                          # the DAG run's first task
    with store.mapping_lock(M, "run-a"):                    # a task in the middle
        assert store.lock_holder(M).owner == "run-a"
    assert store.lock_holder(M).owner == "run-a"
    store.release_lock(M, "run-a")                          # the last task
    with (store.mapping_lock(M, "run-b"), pytest.raises(SafetyStopError),
          store.mapping_lock(M, "run-c")):
        pass
    assert store.lock_holder(M) is None


def test_lock_is_released_when_the_block_raises(store: StateStore) -> None:
    with pytest.raises(RuntimeError), store.mapping_lock(M, "run-a"):
        raise RuntimeError("pass failed")
    assert store.lock_holder(M) is None


def test_wait_seconds_waits_for_the_holder(store: StateStore) -> None:
    store.acquire_lock(M, "run-a")
    timer = threading.Timer(0.4, store.release_lock, args=(M, "run-a"))
    timer.start()
    began = time.monotonic()
    with pytest.raises(SafetyStopError, match=r"after waiting 0\.1 s"):
        store.acquire_lock(M, "run-b", wait_seconds=0.1)
    assert store.acquire_lock(M, "run-b", wait_seconds=5) is True
    assert 0.3 < time.monotonic() - began < 4
    timer.join()


def test_stale_lock_is_taken_over_and_logged(store: StateStore,
                                             caplog: pytest.LogCaptureFixture) -> None:
    store.acquire_lock(M, "crashed-run")
    with pytest.raises(SafetyStopError):
        store.acquire_lock(M, "run-b", stale_after_seconds=3600)
    with caplog.at_level(logging.WARNING, logger="bcdv.state.locks"):
        assert store.acquire_lock(M, "run-b", stale_after_seconds=0) is True
    assert "taken over by 'run-b' from stale holder 'crashed-run'" in caplog.text
    assert store.lock_holder(M).owner == "run-b"
    assert store.release_lock(M, "crashed-run") is False    # it cannot free the new run
    assert store.renew_lock(M, "crashed-run") is False      # and learns it lost the lock


def test_renewing_keeps_a_long_run_from_looking_stale(store: StateStore) -> None:
    store.acquire_lock(M, "long-run")
    acquired = store.lock_holder(M)
    time.sleep(1.0)  # without renewing, the lock is now older than the 0.9 s limit below
    assert store.renew_lock(M, "long-run") is True
    renewed = store.lock_holder(M)
    assert renewed.acquired_at == acquired.acquired_at
    assert renewed.renewed_at > acquired.renewed_at
    with pytest.raises(SafetyStopError):
        store.acquire_lock(M, "run-b", stale_after_seconds=0.9)


def _check_runs(store: StateStore, results: list[tuple[Any, ...]], waited: bool) -> None:
    ran = [r for r in results if r[1] == "ran"]
    refused = [r for r in results if r[1] == "refused"]
    if waited:
        assert len(ran) == 2, results
        first, second = sorted(ran, key=lambda r: r[3])
        assert first[4] <= second[3], "the two runs overlapped inside the lock"
        assert sum(bool(r[2]) for r in ran) == 1            # one wrote, one found it done
    else:
        assert len(ran) == 1 and len(refused) == 1, results
        assert "is locked by another run" in refused[0][2] and ran[0][0] in refused[0][2]
        assert ran[0][2] is True
    frame = store.couplings(M)
    assert len(frame) == 1 and not bool(frame.at[0, "pending"])
    assert store.lock_holder(M) is None


@pytest.mark.parametrize("wait", [0, 20], ids=["refuse", "wait"])
def test_two_threads_running_one_mapping(store: StateStore, wait: float) -> None:
    start, out = threading.Barrier(2), queue.Queue()  # type: ignore[var-annotated]
    threads = [threading.Thread(target=state_workers.sync_once,
                                args=(store.url, f"run-{i}", wait, start, out))
               for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    _check_runs(store, [out.get_nowait() for _ in range(out.qsize())], waited=bool(wait))


@pytest.mark.parametrize("wait", [0, 20], ids=["refuse", "wait"])
def test_two_processes_running_one_mapping(store: StateStore, wait: float) -> None:
    ctx = _processes()
    start, out = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=state_workers.sync_once,
                         args=(store.url, f"run-{i}", wait, start, out)) for i in range(2)]
    for p in procs:
        p.start()
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    _check_runs(store, results, waited=bool(wait))


def _head_revision() -> str:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from bcdv.state.migrate import MIGRATIONS

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return str(ScriptDirectory.from_config(cfg).get_current_head())


def test_processes_starting_at_once_on_an_empty_database(backend_url: str) -> None:
    ctx = _processes()
    start, out = ctx.Barrier(3), ctx.Queue()
    procs = [ctx.Process(target=state_workers.open_store, args=(backend_url, start, out))
             for _ in range(3)]
    for p in procs:
        p.start()
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
    assert results == ["ok"] * 3
    store = StateStore(backend_url)
    with store.engine.connect() as conn:
        tables = set(inspect(conn).get_table_names())
        version = conn.execute(text("SELECT version_num FROM bcdv_alembic_version")).all()
    assert {"bcdv_couplings", "bcdv_watermarks", "bcdv_jobs", "bcdv_record_errors",
            "bcdv_locks", "bcdv_alembic_version"} <= tables
    assert [v[0] for v in version] == [_head_revision()]


def test_many_contenders_at_once_exactly_one_wins(store: StateStore) -> None:
    start, won, refused = threading.Barrier(8), [], []

    def contend(owner: str) -> None:
        other = StateStore(store.url)
        start.wait()
        try:
            other.acquire_lock(M, owner)
            won.append(owner)
        except SafetyStopError:
            refused.append(owner)

    threads = [threading.Thread(target=contend, args=(f"run-{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(won) == 1 and len(refused) == 7
    assert store.lock_holder(M).owner == won[0]
