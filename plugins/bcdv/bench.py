"""``make bench``: benchmarks of the emulators alone and of the sync engine end to end.

1. Emulators alone (``python -m bcdv_emulators.bench``): UpsertMultiple and paging of
   100,000 accounts, paging 100,000 BC customers, and "BC create cost at 2,000 and 50,000
   customers" (ms per single POST at each size; that run fails if the ratio reaches 1.2).
2. Engine: a full synchronisation of N synthetic Business Central customers to Dataverse
   (match, create, commit) and then an incremental run with 1 % of them changed, through the
   real clients over HTTPS, with the wall time, records per second and the peak memory of
   this process (tracemalloc: Python allocations, which the chunked plan keeps bounded).

Prints JSON; no thresholds (figures are for the issue notes, not pass/fail).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def _emulator_process(data_dir: Path, seed: str) -> Iterator[dict[str, Any]]:
    """The emulators in their own process (as a real service would be), on free ports."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "bcdv_emulators", "start", "--data-dir", str(data_dir),
         "--seed", seed, "--identity-port", "0", "--bc-port", "0", "--dataverse-port", "0",
         "--no-throttling"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    endpoints = data_dir / "endpoints.json"
    try:
        deadline = time.monotonic() + 300
        while not endpoints.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"emulators did not start: {proc.stderr.read().decode()}")
            time.sleep(0.2)
        time.sleep(0.5)
        yield json.loads(endpoints.read_text())
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def engine_bench(rows: int) -> dict[str, Any]:
    """Full sync of ``rows`` customers, then an incremental run with 1 % changed."""
    from bcdv.engine import SyncContext, sync_mapping
    from bcdv.mapping import load_mappings
    from bcdv.settings import endpoints_from_dict

    root = Path(__file__).resolve().parents[2]
    mappings = load_mappings(root / "include" / "mappings")
    customer = mappings["CUSTOMER"].model_copy(update={"direction": mappings[
        "CUSTOMER"].direction})
    out: dict[str, Any] = {"rows": rows}
    with tempfile.TemporaryDirectory() as tmp, _emulator_process(
            Path(tmp) / "emulators", f"synthetic:{rows}") as ep:
        ctx = SyncContext.create(endpoints_from_dict(ep), f"sqlite:///{tmp}/state.db",
                                 Path(tmp) / "staging", mappings)
        tracemalloc.start()
        started = time.perf_counter()
        full = sync_mapping(ctx, customer, mode="full", run_id="bench-full")
        seconds = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        out["full_sync"] = {
            "seconds": round(seconds, 1),
            "passes": [r.summary() for r in full],
            "records_per_second": round(sum(r.extracted for r in full) / seconds, 1),
            "peak_python_memory_mb": round(peak / 2**20, 1)}
        bc = ctx.business_central.client
        changed = bc.list("customers", select=["id"], page_size=5000)[: max(1, rows // 100)]
        for row in changed:
            bc.update("customers", row["id"], {"phoneNumber": "+1 555 0199"})
        tracemalloc.reset_peak()
        started = time.perf_counter()
        incr = sync_mapping(ctx, customer, run_id="bench-incremental")
        seconds = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        out["incremental"] = {"changed": len(changed), "seconds": round(seconds, 1),
                              "passes": [r.summary() for r in incr],
                              "peak_python_memory_mb": round(peak / 2**20, 1)}
        tracemalloc.stop()
        ctx.close()
    return out


def main(argv: list[str] | None = None) -> int:
    """Run both benchmarks and print their figures."""
    from bcdv.local_emulators import emulators_module

    emulators_module("server")  # the benchmarks run against the emulators: installed?
    parser = argparse.ArgumentParser(prog="python -m bcdv.bench")
    parser.add_argument("--emulator-rows", type=int, default=100_000)
    parser.add_argument("--engine-rows", type=int, default=10_000)
    parser.add_argument("--skip-emulators", action="store_true")
    args = parser.parse_args(argv)
    result: dict[str, Any] = {}
    if not args.skip_emulators:
        proc = subprocess.run([sys.executable, "-m", "bcdv_emulators.bench", "--rows",
                               str(args.emulator_rows)], capture_output=True, text=True,
                              check=True)
        result["emulators"] = json.loads(proc.stdout)
    result["engine"] = engine_bench(args.engine_rows)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
