"""Bodies of the concurrent runs in test_state_locks (importable by spawned processes)."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

from bcdv.errors import SafetyStopError
from bcdv.state import Stamp, StateStore

MAPPING = "CUSTOMER"
HOLD_SECONDS = 0.6


def sync_once(url: str, owner: str, wait_seconds: float, start: Any, results: Any) -> None:
    """One "run" of the mapping: under the run lock, create b1/d1 unless a previous run
    already did (the check-then-write that two unlocked runs would double), then stamp it."""
    store = StateStore(url)
    start.wait()
    try:
        with store.mapping_lock(MAPPING, owner, wait_seconds=wait_seconds):
            entered = time.time()
            job = store.start_job(MAPPING, "to_dataverse", mode="modified", run_id=owner)
            wrote = store.coupling(MAPPING, bc_id="b1") is None
            if wrote:
                store.record_intent(MAPPING, bc_id="b1", dv_id="d1")
                time.sleep(HOLD_SECONDS)  # the "create" in the remote system
            else:
                time.sleep(0.05)
            now = datetime.now(timezone.utc)  # both runs stamp the pair
            store.stamp_success(MAPPING, "to_dataverse", job, Stamp(
                "b1", "d1", now, now, "hb", "hd"))
            store.finish_job(job, status="success")
            results.put((owner, "ran", wrote, entered, time.time()))
    except SafetyStopError as exc:
        results.put((owner, "refused", str(exc), time.time(), time.time()))


def open_store(url: str, start: Any, results: Any) -> None:
    """Start a store (and so migrate) at the same moment as the other processes."""
    start.wait()
    try:
        StateStore(url).coupling_count(MAPPING)
        results.put("ok")
    except Exception as exc:
        results.put(f"{type(exc).__name__}: {exc}")
