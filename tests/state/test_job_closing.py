"""The job log closes every job: a pass that raises finishes its job as failed with the error,
and the next run that takes a mapping's lock closes the jobs a killed run left running."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from bcdv.engine import runner
from bcdv.mapping.model import Direction
from bcdv.service import locks, stages
from bcdv.state import StateStore
from bcdv.state.db import utcnow

KILLED = "the run that started this job ended without finishing it (killed or crashed)"


def test_taking_the_lock_closes_jobs_left_running_by_other_runs(store: StateStore) -> None:
    killed = store.start_job("CUSTOMER", "to_dataverse", mode="modified", run_id="killed-run")
    dry = store.start_job("CUSTOMER", "to_dataverse", mode="modified", run_id="cli-dry-run",
                          dry_run=True)
    other = store.start_job("VENDOR", "to_dataverse", mode="modified", run_id="killed-run")
    mine = store.start_job("CUSTOMER", "coupling", mode="match", run_id="next-run")
    assert locks.acquire(store, "CUSTOMER", "next-run") is True

    closed = store.job(killed)
    assert closed is not None and closed["status"] == "failed"
    assert closed["message"] == f"{KILLED}; closed by run next-run"
    assert closed["finished_at"] is not None
    # Still running: this run's own job, a fresh dry run (takes no lock), another mapping's.
    for job_id in (mine, dry, other):
        row = store.job(job_id)
        assert row is not None and row["status"] == "running" and row["finished_at"] is None
    # Re-taking the lock (renewal) closes nothing more; a finished job is never re-closed.
    assert locks.acquire(store, "CUSTOMER", "next-run") is False
    assert store.close_jobs([killed], status="failed", message="again") == 0
    assert store.job(killed)["message"].startswith(KILLED)  # type: ignore[index]


def test_a_lock_held_for_a_block_closes_them_too(store: StateStore) -> None:
    killed = store.start_job("CUSTOMER", "to_business_central", mode="full", run_id="old")
    with locks.run_lock(store, "CUSTOMER", "cli__new"):
        row = store.job(killed)
        assert row is not None and row["status"] == "failed"
        assert row["message"].endswith("closed by run cli__new")


def test_old_dry_run_jobs_are_closed_recent_ones_are_not() -> None:
    now = utcnow()
    rows: list[dict[str, Any]] = [
        {"id": "a", "status": "running", "run_id": "x", "dry_run": True,
         "started_at": now - timedelta(hours=1)},
        {"id": "b", "status": "running", "run_id": "x", "dry_run": True,
         "started_at": now - timedelta(days=2)},
        {"id": "c", "status": "running", "run_id": "holder", "dry_run": False,
         "started_at": now - timedelta(days=2)},
        {"id": "d", "status": "success", "run_id": "x", "dry_run": False, "started_at": now},
        {"id": "e", "status": "running", "run_id": None, "dry_run": False, "started_at": now},
    ]
    assert locks.abandoned(rows, "holder", now) == ["b", "e"]


def _job_of(ctx: Any, run_id: str, direction: str) -> dict[str, Any]:
    jobs = [j for j in ctx.state.jobs("CUSTOMER", limit=50)
            if j["run_id"] == run_id and j["direction"] == direction]
    assert len(jobs) == 1, jobs
    return jobs[0]


@pytest.mark.parametrize("stage", ["extract", "load", "commit"])
def test_a_pass_that_raises_leaves_its_job_failed_with_the_error(
        ctx: Any, mappings: Any, monkeypatch: pytest.MonkeyPatch, stage: str) -> None:
    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"{stage} exploded: connection reset")

    if stage == "extract":  # after the job is opened, while reading the records (the
        # first page comes in the pass's first request)
        monkeypatch.setattr(ctx.business_central, "first_read", boom)
    else:
        monkeypatch.setattr(runner, stage, boom)
    with pytest.raises(RuntimeError):
        runner.run_pass(ctx, mappings["CUSTOMER"], Direction.TO_DATAVERSE, run_id="r-1")
    job = _job_of(ctx, "r-1", "to_dataverse")
    assert job["status"] == "failed"
    assert job["message"] == f"RuntimeError: {stage} exploded: connection reset"
    assert job["finished_at"] is not None


def test_a_stage_that_raises_fails_the_job_and_its_retry_closes_it_again(
        ctx: Any, mappings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    customer = mappings["CUSTOMER"]
    locks.acquire(ctx.state, "CUSTOMER", "af-run")
    state = stages.extract_stage(ctx, customer, "to_dataverse", run_id="af-run")
    stages.plan_stage(ctx, customer, state.directory)
    real_load = stages.load

    def broken(*args: Any, **kwargs: Any) -> None:
        raise TimeoutError("Dataverse did not answer")

    monkeypatch.setattr(stages, "load", broken)
    with pytest.raises(TimeoutError):
        stages.load_stage(ctx, customer, state.directory)
    job = ctx.state.job(state.job_id)
    assert (job["status"], job["message"]) == ("failed", "TimeoutError: Dataverse did not answer")
    assert job["finished_at"] is not None
    # Airflow retries the load; the commit closes the job with the pass's outcome.
    monkeypatch.setattr(stages, "load", real_load)
    stages.load_stage(ctx, customer, state.directory)
    [report] = stages.commit_stage(ctx, customer, [state.directory], "af-run")
    job = ctx.state.job(state.job_id)
    assert job["status"] == report.status and job["message"] is None
