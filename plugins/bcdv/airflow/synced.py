"""Has a mapping been synchronised since a moment? (the sensor's and the trigger's check)

Reads bcdv's job log through the state store's jobs API; no Airflow import, so the trigger
can run it in the triggerer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bcdv.state.store import StateStore

# Enough for any realistic number of runs between two pokes (jobs are read newest first).
RECENT_JOBS = 500


@dataclass(frozen=True)
class SyncedCheck:
    """The outcome of one check: which directions have a satisfying job, and the last job
    seen per direction (for a clear timeout message)."""

    mapping: str
    directions: list[str]
    since: datetime
    job_ids: dict[str, str] = field(default_factory=dict)
    last_seen: dict[str, str] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        """Every direction has a satisfying job."""
        return all(d in self.job_ids for d in self.directions)

    def describe(self) -> str:
        """One line: synced directions with their job, the missing ones with the last job."""
        parts = []
        for d in self.directions:
            if d in self.job_ids:
                parts.append(f"{d} synced (job {self.job_ids[d]})")
            else:
                parts.append(f"{d} not yet ({self.last_seen.get(d, 'no job at all')})")
        return (f"{self.mapping} since {self.since.isoformat()}: " + "; ".join(parts))


def satisfies(job: dict[str, Any], since: datetime, *, accept_partial: bool) -> bool:
    """A finished, non-dry-run synchronisation job that ended well after ``since``."""
    statuses = ("success", "partial") if accept_partial else ("success",)
    finished = job.get("finished_at")
    return (job.get("type") == "synchronization" and not job.get("dry_run")
            and job.get("status") in statuses and finished is not None and finished > since)


def _seen(job: dict[str, Any]) -> str:
    finished = job.get("finished_at")
    when = f"finished {finished.isoformat()}" if finished else "not finished"
    dry = ", dry run" if job.get("dry_run") else ""
    return f"last job {job['id']}: {job.get('status')}{dry}, {when}"


def check_synced(store: StateStore, mapping: str, directions: Sequence[str], since: datetime,
                 *, accept_partial: bool = False) -> SyncedCheck:
    """Look for the newest satisfying job of each direction of ``mapping``."""
    job_ids: dict[str, str] = {}
    last_seen: dict[str, str] = {}
    for job in store.jobs(mapping, limit=RECENT_JOBS):  # newest first
        direction = job.get("direction", "")
        if job.get("type") != "synchronization" or direction not in directions:
            continue
        last_seen.setdefault(direction, _seen(job))
        if direction not in job_ids and satisfies(job, since, accept_partial=accept_partial):
            job_ids[direction] = str(job["id"])
    return SyncedCheck(mapping, list(directions), since, job_ids, last_seen)
