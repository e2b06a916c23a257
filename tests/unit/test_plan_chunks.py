"""Splitting a pass's plan into chunks for parallel loads, and merging their outcomes back
(bcdv.engine.chunks; the full-sync DAG calls it through bcdv.airflow.operations)."""

from __future__ import annotations

from pathlib import Path

from bcdv.engine.actions import Ignore, Skip, read_header, read_plan, write_plan
from bcdv.engine.chunks import merge_chunks, split_plan
from bcdv.engine.staging import PassState, read_jsonl, write_jsonl


def _pass(tmp_path: Path, count: int, *, dry_run: bool = False) -> PassState:
    state = PassState(mapping="CUSTOMER", direction="to_dataverse", mode="full",
                      dry_run=dry_run, job_id="job", run_id="run",
                      directory=str(tmp_path / "pass"))
    state.save()
    actions = [Ignore(source_id=f"s{i}") if i % 2 else Skip(source_id=f"s{i}")
               for i in range(count)]
    write_plan(state.plan_file, {"schema": 2, "mapping": "CUSTOMER",
                                 "direction": "to_dataverse"}, actions)
    return state


def test_a_plan_is_split_into_chunks_that_keep_its_header_and_order(tmp_path: Path) -> None:
    state = _pass(tmp_path, 5)
    dirs = split_plan(state.directory, 2)
    assert [Path(d).name for d in dirs] == ["00000", "00001", "00002"]
    parts = [PassState.load(d) for d in dirs]
    assert all(p.job_id == "job" and p.mapping == "CUSTOMER" for p in parts)
    assert all(read_header(p.plan_file) == read_header(state.plan_file) for p in parts)
    ids = [a.source_id for p in parts for a in read_plan(p.plan_file)]
    assert ids == [a.source_id for a in read_plan(state.plan_file)]


def test_a_small_plan_or_a_dry_run_is_not_split(tmp_path: Path) -> None:
    assert split_plan(_pass(tmp_path / "a", 2).directory, 2) == [str(tmp_path / "a" / "pass")]
    dry = _pass(tmp_path / "b", 5, dry_run=True)
    assert split_plan(dry.directory, 2) == [dry.directory]
    assert split_plan("", 2) == [""]


def test_chunk_outcomes_merge_into_the_pass(tmp_path: Path) -> None:
    state = _pass(tmp_path, 4)
    for index, d in enumerate(split_plan(state.directory, 2)):
        write_jsonl(PassState.load(d).outcomes_file, [{"source_id": f"o{index}"}])
    merge_chunks(state.directory)
    assert [r["source_id"] for r in read_jsonl(state.outcomes_file)] == ["o0", "o1"]
