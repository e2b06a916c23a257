"""Issue 14 (flat memory): what a full pass keeps does not grow with the table.

Peak RSS is measured by ``make bench`` (the memory curve, a child process). These tests
bound the Python heap (tracemalloc) of the stages that once held one entry per record: the
ids a full extract has seen, the plan split into chunks and the outcomes merged back, and the
Business Central records match-based coupling looks at. Each compares the peak of the same
work on a table of several pages (the stages hold a page or a chunk, and the one before it,
at a time) and on one 30,000 records larger: the difference must stay far below what one
entry per record would cost. No timing is asserted. A pass report keeps a bounded number
of problem records.
"""

from __future__ import annotations

import multiprocessing
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from bcdv.engine import report as report_module
from bcdv.engine.actions import Ignore, Skip, read_plan, write_plan
from bcdv.engine.chunks import merge_chunks, split_plan
from bcdv.engine.coupling import match_couple
from bcdv.engine.extract import PreRead, extract
from bcdv.engine.report import PassReport, RecordOutcome
from bcdv.engine.staging import PassState, SeenIds, read_jsonl, write_jsonl
from bcdv.mapping.model import Direction

from .conftest import Env, make_mapping

SMALL, LARGE = 20_000, 50_000
# One uuid string held per record costs about 100 bytes (a set entry more): 30,000 extra
# records would add some 3 MB. Allowed: a twelfth of that.
ALLOWED = 256 * 1024


def _peak(work: Callable[[], object]) -> int:
    """The Python heap's peak above its level before ``work`` ran."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        work()
        return tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()


def _id(n: int) -> str:
    return str(uuid.UUID(int=n + 1))


def _ids(count: int) -> list[str]:
    return [_id(n) for n in range(count)]


def test_seen_ids_drop_repeats_as_a_set_would() -> None:
    with SeenIds() as seen:
        page: list[dict[str, Any]] = [{"id": "a"}, {"id": "b"}, {"id": "a"}, {"id": 1},
                                      {"id": "1"}]
        assert seen.fresh(page, "id") == [{"id": "a"}, {"id": "b"}, {"id": 1}, {"id": "1"}]
        assert seen.fresh([{"id": "b", "n": 2}, {"id": "c"}], "id") == [{"id": "c"}]
        seen.add(["d"])
        assert len(seen) == 6
        assert seen.among(["a", "c", "d", "x", 1, 2]) == {"a", "c", "d", 1}


def test_seen_ids_hold_no_id_in_memory() -> None:
    ids = _ids(LARGE)

    def see(count: int) -> None:
        with SeenIds() as seen:
            for start in range(0, count, 5000):
                seen.fresh([{"id": i} for i in ids[start:start + 5000]], "id")
            assert len(seen) == count

    small, large = _peak(lambda: see(SMALL)), _peak(lambda: see(LARGE))
    held = _peak(lambda: set(_ids(LARGE)))  # what a set of them costs, for scale
    assert large - small < ALLOWED < held / 4, (small, large, held)


def _preread(path: Path, count: int) -> PreRead:
    """A full pass's shared read of ``count`` customers, as runner spills it."""
    rows = ({"id": i, "displayName": f"Customer {n}", "lastModifiedDateTime":
             "2026-01-01T00:00:00Z"} for n, i in enumerate(_ids(count)))
    write_jsonl(path, rows)
    return PreRead(datetime(2026, 1, 2, tzinfo=timezone.utc), str(path),
                   ["id", "displayName", "lastModifiedDateTime"])


def test_full_extract_heap_does_not_grow_with_the_table(env: Env, tmp_path: Path) -> None:
    mapping = make_mapping(sync_only_coupled=False, direction="to_dataverse")
    reads = {n: _preread(tmp_path / f"preread{n}.jsonl", n) for n in (SMALL, LARGE)}
    # A page repeated by the service (records shifted while it was read) is dropped.
    repeated = _preread(tmp_path / "repeated.jsonl", 12_000)
    write_jsonl(repeated.file, list(read_jsonl(repeated.file))[6000:7000], append=True)
    states: dict[int, PassState] = {}

    def run(n: int, read: PreRead) -> None:
        states[n] = extract(env.ctx, mapping, Direction.TO_DATAVERSE, mode="full",
                            run_id=f"memory{n}", preread=read)

    run(0, reads[SMALL])  # imports, the store's first queries: not part of the figures
    small = _peak(lambda: run(SMALL, reads[SMALL]))
    large = _peak(lambda: run(LARGE, reads[LARGE]))
    assert (states[SMALL].extracted, states[LARGE].extracted) == (SMALL, LARGE)
    assert large - small < ALLOWED, (small, large)
    run(12_000, repeated)
    staged = [r["id"] for r in read_jsonl(states[12_000].source_file)]
    assert states[12_000].extracted == len(staged) == len(set(staged)) == 12_000


def _plan(tmp_path: Path, count: int) -> PassState:
    state = PassState(mapping="CUSTOMER", direction="to_dataverse", mode="full",
                      dry_run=False, job_id="job", run_id="run",
                      directory=str(tmp_path / f"pass{count}"))
    state.save()
    actions = (Ignore(source_id=i) if n % 2 else Skip(source_id=i)
               for n, i in enumerate(_ids(count)))
    write_plan(state.plan_file, {"schema": 2, "mapping": "CUSTOMER",
                                 "direction": "to_dataverse"}, actions)
    return state


def _split_and_merge(state: PassState) -> None:
    for d in split_plan(state.directory, 1000):
        part = PassState.load(d)
        write_jsonl(part.outcomes_file, ({"source_id": a.source_id, "result": None}
                                         for a in read_plan(part.plan_file)))
    merge_chunks(state.directory)


def _split_and_merge_peaks(root: Path) -> dict[int, int]:
    """Each size twice, on plans of its own, keeping the lower peak (run in a child)."""
    peaks: dict[int, int] = {}
    for trial in ("a", "b"):
        plans = {n: _plan(root / trial, n) for n in (SMALL, LARGE)}
        for n, state in plans.items():
            peak = _peak(partial(_split_and_merge, state))
            peaks[n] = min(peaks.get(n, peak), peak)
    return peaks


def test_split_and_merge_hold_one_chunk_at_a_time(tmp_path: Path) -> None:
    # Measured in a process of its own: tracemalloc counts what every thread allocates, and
    # a pytest-xdist worker keeps threads of earlier tests (a CI run once saw 300 KB more at
    # the larger size in both trials, 6 KB alone).
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        peaks = pool.submit(_split_and_merge_peaks, tmp_path).result()
    assert peaks[LARGE] - peaks[SMALL] < ALLOWED, peaks
    plans = {n: PassState.load(str(tmp_path / "b" / f"pass{n}")) for n in (SMALL, LARGE)}
    merged = [r["source_id"] for r in read_jsonl(plans[LARGE].outcomes_file)]
    assert merged == [a.source_id for a in read_plan(plans[LARGE].plan_file)]
    assert not list(Path(plans[LARGE].directory).glob("*.part"))


def _customers(count: int) -> Iterator[dict[str, Any]]:
    """Customers made as they are read (the test holds none of them either)."""
    for n in range(count):
        yield {"id": _id(n), "displayName": f"Customer {n}", "phoneNumber": f"+1 555 {n:07d}",
               "city": "Oslo"}


def test_match_coupling_keeps_only_records_that_could_match(env: Env) -> None:
    mapping = make_mapping(coupling={"match": [
        {"priority": 1, "fields": ["displayName", "phoneNumber"]},
        {"priority": 2, "fields": ["displayName", "city"]}]})
    # One account matches customer 7 by name and city; two accounts share customer 9's
    # name (no unique match); every other customer matches nothing.
    seven = env.dv_new("Customer 7", address1_city="Oslo")
    env.dv_new("Customer 9", address1_city="Oslo")
    env.dv_new("CUSTOMER 9 ", address1_city="oslo")
    reports: dict[int, Any] = {}

    def couple(n: int) -> None:
        reports[n] = match_couple(env.ctx, mapping, run_id=f"match{n}", dry_run=True,
                                  bc_rows=_customers(n))

    couple(10)
    small, large = _peak(lambda: couple(SMALL)), _peak(lambda: couple(LARGE))
    assert large - small < ALLOWED, (small, large)
    report = reports[LARGE]
    customer = _ids(LARGE)
    assert report.pairs == [(customer[7], seven)]
    assert (report.coupled, report.unmatched) == (1, LARGE - 1)
    assert sorted(report.unmatched_ids) == sorted(customer[:7] + customer[8:])


@pytest.mark.parametrize("accounts", [0, 1])
def test_match_coupling_of_an_empty_or_unmatched_table_stages_the_ids(
        env: Env, accounts: int) -> None:
    mapping = make_mapping(coupling={"match": [{"priority": 1, "fields": ["displayName"]}]})
    for n in range(accounts):
        env.dv_new(f"Account {n}")
    report = match_couple(env.ctx, mapping, run_id="empty", bc_rows=_customers(12))
    assert (report.coupled, report.unmatched) == (0, 12)
    assert report.unmatched_ids == _ids(12)
    assert report.unmatched_file is not None and Path(report.unmatched_file).is_file()


def test_a_report_keeps_a_bounded_number_of_problem_records(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(report_module, "RECORDS_KEPT", 3)
    report = PassReport("CUSTOMER", "to_dataverse", "modified", False, "job", 20)
    outcomes = ([("ignore", None)] * 10 + [("insert", "failed")] * 5
                + [("update", "modified")] * 4 + [("skip", "skipped")])
    for n, (action, result) in enumerate(outcomes):
        report.add(RecordOutcome(f"s{n}", None, f"Record {n}", action, result, ""))
    assert (report.ignored, report.failed, report.modified, report.skipped) == (10, 5, 4, 1)
    # A flood of records not coupled does not crowd out the failures.
    assert [r.source_id for r in report.records] == ["s0", "s1", "s2", "s10", "s11", "s12",
                                                     "s19"]
    assert report.records_dropped == 9
    assert report.to_dict()["records_truncated"] == 9
