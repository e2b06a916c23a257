"""``make bench`` at a tiny size: the report's shape, and its request counts agree with what
the emulators counted (no speed is asserted: speed belongs to ``make bench`` itself)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bcdv import bench


def test_bench_full_sync_report_is_consistent(tmp_path: Path) -> None:
    out = tmp_path / "results"
    doc = bench.run(200, [200], ["curve"], sample=10, throttled_size=0, limits="",
                    latency_size=0, out=out, engine="test", log=lambda _: None)
    assert json.loads((out / "latest.json").read_text()) == doc
    assert doc["engine"] == "test"
    [r] = doc["results"]
    assert r["name"] == "full_bc_to_dv" and r["records"] == 200
    [p] = r["passes"]
    assert p["direction"] == "to_dataverse"
    assert (p["extracted"], p["inserted"], p["failed"]) == (200, 200, 0)
    assert r["seconds"] > 0 and r["rss_mb"] > 0 and r["records_per_s"] > 0
    assert r["extra"]["engine_path"] == str(bench.ROOT / "plugins")  # this checkout's engine
    req = r["requests"]
    # Kinds add up to the total; the engine read Business Central and wrote 200 rows to
    # Dataverse, whatever request kinds it chose.
    assert sum(v for k, v in req["by_kind"].items() if not k.endswith("_ops")) == req["total"]
    # (Business Central's first page comes in the pass's first $batch, with its tables.)
    assert req["by_kind"].get("bc:get_page", 0) + req["by_kind"].get("bc:batch", 0) >= 1
    written = sum(v for k, v in req["rows"].items() if k.startswith("dv:"))
    assert written == 200
    assert req["throttled_429"] == 0
    # 1 BC page + 1 Dataverse read for coupling + 1 CreateMultiple of 200
    assert r["min_requests"] == 3
    assert r["requests_vs_min"] == round(req["total"] / 3, 2)
    # The floor sends exactly the requests it plans (1 page, 1 CreateMultiple), as counted
    # by the emulators; one-per-record one POST per record plus the page.
    assert r["floor"]["requests"] == r["floor"]["planned_requests"] == 2
    assert r["per_record"]["requests"] == 1 + 200
    assert r["per_record"]["sampled_writes"] == 10
    # Where the time went: the sync's own CPU and the emulators' (their process's /proc
    # times), for the sync and for the floor; neither more than the wall time allows
    # (two cores: twice it, and the child's CPU counts its threads).
    x = r["extra"]
    assert 0 < x["sync_cpu_seconds"] <= 2 * r["seconds"] + 0.05
    assert 0 < x["emulator_cpu_seconds"] <= 2 * x["process_seconds"] + 0.05
    assert 0 < r["floor"]["emulator_cpu_seconds"] <= 2 * r["floor"]["seconds"] + 0.05
    table = (out / "latest.md").read_text()
    assert table.startswith("| scenario | records | seconds |")
    assert "| full sync BC -> Dataverse, 200 | 200 |" in table
    assert (out / "latest.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_sustained_run_reports_its_share_of_the_limits(tmp_path: Path) -> None:
    """The sustained scenario at a tiny size: every record once, and the share of the
    limits' throughput from the profile's cost and from the time the service counted."""
    doc = bench.run(0, [], ["sustained"], sample=0, throttled_size=0, limits="",
                    latency_size=300, out=None, engine="test", log=lambda _: None)
    [r] = doc["results"]
    assert r["name"] == "sustained_cloud" and r["passes"][0]["inserted"] == 300
    x = r["extra"]
    assert (x["missing"], x["duplicated"], x["share_429"]) == (0, 0, 0.0)
    assert x["limits"] == bench.SUSTAINED_LIMITS.spec()
    # A 300-row request costs the round trip and 300 rows: per 1,000 rows at least the
    # profile's 10 ms a row.
    assert x["served_request_s"] >= 10.0 and x["request_s"] == 10.1
    # One request's time at the least (a share needs a run of whole rounds: none here).
    assert x["limit_seconds"] == 10.1 and x["served_limit_seconds"] >= 10.0


def test_readme_table_is_replaced_between_markers(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{bench.README_START}\nold\n{bench.README_END}\n\nrest\n")
    assert bench.update_readme("| new |\n", readme)
    assert readme.read_text() == (f"# x\n\n{bench.README_START}\n| new |\n"
                                  f"{bench.README_END}\n\nrest\n")
    readme.write_text("no markers\n")
    assert not bench.update_readme("| new |\n", readme)
    assert readme.read_text() == "no markers\n"


def test_the_sync_child_gets_its_spec_by_file_not_on_its_command_line(
        tmp_path: Path, monkeypatch) -> None:
    """The spec holds the emulators' client secret: a command line is visible to every user
    of the machine (``ps``), so the child is handed a file only this user may read."""
    seen: list[list[str]] = []

    class Stop(Exception):
        pass

    def popen(cmd: list[str], **_: object) -> None:
        seen.append(cmd)
        raise Stop

    monkeypatch.setattr(bench.subprocess, "Popen", popen)
    spec = {"endpoints": {"identity": {"client_secret": "s3cr3t-value"}}}
    with pytest.raises(Stop):
        bench.run_child(spec, tmp_path)
    [cmd] = seen
    assert not any("s3cr3t-value" in part for part in cmd)
    spec_file = Path(cmd[-1])
    assert json.loads(spec_file.read_text()) == spec
    assert spec_file.stat().st_mode & 0o077 == 0


def test_a_sync_child_s_peak_memory_is_its_own_not_the_bench_process_s() -> None:
    """The bench process holds every floor row it read (a million at the top of the memory
    curve); the sync children it starts afterwards must not report that as their peak
    (Linux carries a parent's high-water mark into ``ru_maxrss`` across fork and exec)."""
    import subprocess
    import sys

    held = b"x" * (400 << 20)  # the bench process, big
    done = subprocess.run([sys.executable, "-c", "from bcdv.bench import own_peak_rss_mb; "
                           "print(own_peak_rss_mb())"], capture_output=True, text=True,
                          check=True, timeout=120)
    assert len(held) == 400 << 20
    assert 10 < float(done.stdout) < 250  # a Python with bcdv.bench imported, no more


def test_the_incremental_scenario_is_the_median_of_three_runs_of_its_own_changes(
        tmp_path: Path) -> None:
    """A scheduled run of 1 % takes about a second, which moves by a fifth from one run to
    the next on a shared machine: the table takes the median of three, each run with
    changes of its own (each writes exactly its 1 %, so none re-reads another's as new)."""
    doc = bench.run(100, [], ["chain"], sample=0, throttled_size=0, limits="",
                    latency_size=0, out=tmp_path / "results", engine="test",
                    log=lambda _: None)
    [inc] = [r for r in doc["results"] if r["name"] == "incremental_1pct"]
    runs = inc["extra"]["runs_seconds"]
    assert len(runs) == bench.INCREMENTAL_RUNS == 3
    assert inc["seconds"] == sorted(runs)[1]
    [p] = inc["passes"]
    assert (p["direction"], p["modified"], p["failed"]) == ("to_dataverse", 1, 0)
    # 1 BC page, 1 read of the coupled accounts (conflicts, etags), 1 write
    assert inc["requests"]["total"] >= inc["min_requests"] == 3
    assert inc["floor"]["planned_requests"] == 2
    assert [r["name"] for r in doc["results"]].count("incremental_1pct") == 1


def test_the_minimum_of_coupled_changes_counts_one_read_of_their_targets() -> None:
    """A pass of changes to coupled records reads their targets (BC's engine Gets each
    destination to compare its modified-on; an update's If-Match needs its etag) at the
    target's largest page: 5,000 Dataverse rows, 20,000 Business Central ones."""
    assert bench.min_requests([bench.Move("to_dataverse", 1000)]) == 2
    assert bench.min_requests([bench.Move("to_dataverse", 1000, coupled=True)]) == 3
    assert bench.min_requests([bench.Move("to_dataverse", 12_000, coupled=True)]) == 1 + 3 + 12
    assert bench.min_requests([bench.Move("to_business_central", 5000, coupled=True)]) == \
        1 + 1 + 50
