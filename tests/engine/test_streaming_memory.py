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
from bcdv.engine.extract import pass_directory, pre_read
from bcdv.engine.staging import PassState, location, read_jsonl
from bcdv.mapping.model import Direction

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
        files = list(location(ctx.staging).rglob("*.jsonl"))
        seen["lines"] = [len(f.read_text().splitlines()) for f in files
                         if f.name in ("preread.jsonl", "source.jsonl")]
        return real(ctx, m, **kw)

    real_read = runner._shared_read

    def shared(*args: Any) -> Any:
        read = real_read(*args)
        # The read was staged for the pass as it came: its match columns are among the
        # pass's, so the file match-based coupling reads is the pass's own source file.
        seen["read_file"] = location(read.file).name
        return read

    monkeypatch.setattr(runner, "_shared_read", shared)
    monkeypatch.setattr(runner, "match_couple", watch)
    reports = env.sync(mapping, mode="full")
    assert seen == {"iterator": True, "read_file": "source.jsonl", "lines": [len(NAMES)]}
    forward = reports["to_dataverse"]
    assert (forward.inserted, forward.modified, forward.failed) == (len(NAMES) - 1, 1, 0)
    assert env.coupling(mapping, dv_id=existing) is not None
    # The spilled read is gone once the passes ran; the pass's own staged files stay.
    assert not list(location(env.ctx.staging).rglob("preread.jsonl"))
    assert list(location(env.ctx.staging).rglob("source.jsonl"))



def test_a_shared_read_with_a_column_the_pass_does_not_read_stages_the_pass_apart(
        env: Env) -> None:
    # Match criteria are mapped fields, which the pass reads anyway; a read asked for one
    # more column (website) keeps it in its own file, and the pass's source file has the
    # pass's columns only, as the pass's own read would have them.
    mapping = make_mapping(sync_only_coupled=False, direction="to_dataverse")
    for name in NAMES:
        env.bc_new(name, city="Oslo", website="example.com")
    directory = pass_directory(env.ctx.staging, mapping.name, "shared-read",
                               Direction.TO_DATAVERSE)
    read = pre_read(env.ctx, mapping, Direction.TO_DATAVERSE, ["id", "website"],
                    file=directory / "preread.jsonl")
    assert location(read.file).name == "preread.jsonl"
    assert all(row["website"] == "example.com" for row in read.rows())
    staged = list(read_jsonl(directory / "source.jsonl"))
    assert sorted(r["displayName"] for r in staged) == NAMES
    assert not any("website" in row for row in staged)
    report = env.run(mapping, "to_dataverse", mode="full", run_id="shared-read",
                     preread=read)
    assert (report.extracted, report.inserted, report.failed) == (len(NAMES), len(NAMES), 0)
    read.discard()
    assert not location(read.file).exists()
    assert (directory / "source.jsonl").exists()
