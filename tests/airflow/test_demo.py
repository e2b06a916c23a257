"""``make demo`` works: two Airflow runs of bcdv_sync_customer with the expected summaries."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.airflow
def test_demo_runs_through_airflow() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    proc = subprocess.run([sys.executable, "-m", "bcdv.demo"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "demo OK" in out
    run1, run2 = out.split("== run 1")[1].split("== run 2")
    total1 = re.search(r"total\s+inserted (\d+) \| modified (\d+) \| unchanged (\d+) \| "
                       r"skipped (\d+) \| failed (\d+)", run1)
    total2 = re.search(r"total\s+inserted (\d+) \| modified (\d+) \| unchanged (\d+) \| "
                       r"skipped (\d+) \| failed (\d+)", run2)
    assert total1 and total2, out
    assert int(total1.group(1)) > 0
    to_dv = re.search(r"to_dataverse\s+inserted (\d+) \| modified (\d+) \| unchanged \d+ \| "
                      r"skipped \d+ \| failed (\d+)", run1)
    assert to_dv and int(to_dv.group(1)) > 0 and int(to_dv.group(3)) == 0, run1
    # Records that fail become error rows with the API's message; the rest go through.
    failed1 = int(total1.group(5))
    if failed1:
        assert f"{failed1} record(s) failed and are kept as error rows" in run1
    assert (int(total2.group(1)), int(total2.group(2)), int(total2.group(5))) == (0, 1, 0)
