"""``make demo`` works: two Airflow runs of bcdv_sync_customer that synchronise every record,
then the error-handling example: one explained failure, fixed and retried."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOTAL = (r"total\s+inserted (\d+) \| modified (\d+) \| unchanged (\d+) \| skipped (\d+) \| "
         r"failed (\d+)")


def _total(section: str, out: str) -> tuple[int, ...]:
    found = re.search(TOTAL, section)
    assert found, out
    return tuple(int(g) for g in found.groups())


@pytest.mark.airflow
def test_demo_runs_through_airflow() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    proc = subprocess.run([sys.executable, "-m", "bcdv.demo"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "demo OK" in out
    run1, rest = out.split("== run 1")[1].split("== run 2")
    run2, run3 = rest.split("== run 3")
    # Runs 1 and 2: every record goes through on the demo data with the shipped defaults.
    inserted, _, _, _, failed = _total(run1, out)
    assert inserted > 0 and failed == 0, run1
    assert "record(s) failed" not in run1
    to_dv = re.search(r"to_dataverse\s+inserted (\d+) \| modified \d+ \| unchanged \d+ \| "
                      r"skipped \d+ \| failed (\d+)", run1)
    assert to_dv and int(to_dv.group(1)) > 0 and int(to_dv.group(2)) == 0, run1
    total2 = _total(run2, out)
    assert (total2[0], total2[1], total2[4]) == (0, 1, 0), run2
    # Run 3: the deliberate failure, shown with the record's name and the message, explained.
    assert _total(run3, out)[4] == 1, run3
    error = re.search(r"error #(\d+): to_business_central Trey Research \(.+\).*: .*"
                      r"'United States' has 13 characters; the destination holds at most 10",
                      run3)
    assert error, run3
    assert "Airflow marks this run failed" in run3  # what sends the failure alert
    assert "What happened:" in run3 and "How to fix it:" in run3
    assert "bcdv errors retry N" in run3
    # Then fixed and retried: the retry synchronises the record and no error is left.
    assert f"$ bcdv errors retry {error.group(1)}" in run3
    assert re.search(r"CUSTOMER to_business_central: read 1 \| inserted 0 \| modified 1 \| "
                     r"unchanged 0 \| skipped 0 \| failed 0", run3), run3
    assert "open errors now: 0 (the retry synchronised the record)" in run3
