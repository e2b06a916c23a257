"""Issue 14 (flat memory): a full pass never holds all its records at once.

Peak memory itself is measured by ``make bench`` (RSS of a child process, the memory curve);
these tests check the shape that keeps it flat: commit reads the outcomes file a batch at a
time and writes the job's record list batch by batch, and the shared Business Central read
of a full synchronisation is spilled to a staging file that match-based coupling and the
first pass read row by row.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from bcdv.engine import apply, runner
from bcdv.engine.staging import PassState, location

from .conftest import Env, make_mapping

NAMES = [f"Streamed {i:02d}" for i in range(7)]


def test_commit_reads_outcomes_and_writes_job_records_in_batches(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    mapping = make_mapping(sync_only_coupled=False, direction="to_dataverse")
    for name in NAMES:
        env.bc_new(name, city="Oslo")
    monkeypatch.setattr(apply, "COMMIT_ROWS", 3)
    batches: list[int] = []
    real = env.state.append_job_records

    def spy(job_id: str, mapping_name: str, direction: str, rows: Any) -> int:
        rows = list(rows)
        batches.append(len(rows))
        return real(job_id, mapping_name, direction, rows)

    monkeypatch.setattr(env.state, "append_job_records", spy)
    report = env.run(mapping, "to_dataverse", mode="full")
    assert (report.inserted, report.failed) == (len(NAMES), 0)
    assert batches == [3, 3, 1]
    listed = env.state.job_records(report.job_id)
    assert sorted(r["name"] for r in listed) == NAMES
    assert {r["result"] for r in listed} == {"inserted"}

    # Committing the same pass again replaces its list (no record listed twice).
    runs = list(location(env.ctx.staging).glob(f"{mapping.name.lower()}/*/to_dataverse"))
    assert len(runs) == 1
    again = apply.commit(env.ctx, mapping, PassState.load(runs[0]))
    assert again.inserted == len(NAMES)
    assert len(env.state.job_records(report.job_id)) == len(NAMES)


def test_full_sync_spills_the_shared_read_and_matches_from_it_row_by_row(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    mapping = make_mapping(coupling={"match": [{"priority": 1, "fields": ["displayName"]}],
                                     "create_new_if_no_match": True})
    for name in NAMES:
        env.bc_new(name, city="Oslo")
    existing = env.dv_new(NAMES[0], address1_city="Bergen")
    seen: dict[str, Any] = {}
    real = runner.match_couple

    def watch(ctx: Any, m: Any, **kw: Any) -> Any:
        rows = kw["bc_rows"]
        seen["iterator"] = isinstance(rows, Iterator)
        files = list(location(ctx.staging).rglob("preread.jsonl"))
        seen["lines"] = [len(f.read_text().splitlines()) for f in files]
        return real(ctx, m, **kw)

    monkeypatch.setattr(runner, "match_couple", watch)
    reports = env.sync(mapping, mode="full")
    assert seen == {"iterator": True, "lines": [len(NAMES)]}
    forward = reports["to_dataverse"]
    assert (forward.inserted, forward.modified, forward.failed) == (len(NAMES) - 1, 1, 0)
    assert env.coupling(mapping, dv_id=existing) is not None
    # The spilled read is gone once the passes ran; the pass's own staged files stay.
    assert not list(location(env.ctx.staging).rglob("preread.jsonl"))
    assert list(location(env.ctx.staging).rglob("source.jsonl"))
