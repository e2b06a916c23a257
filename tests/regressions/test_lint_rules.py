"""The lint rules that carry architecture, not style: the core never imports Airflow (only
bcdv.airflow, the plugin file and the DAGs may), and production code does not assert for
control flow (tests may). Checked through ruff with the project's own configuration, on
code given on stdin under the path it would have, so a change to pyproject.toml that drops
or widens a rule fails here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUFF = Path(sys.executable).with_name("ruff")
AIRFLOW_IMPORTS = "from airflow.sdk import DAG\n\n\ndef f() -> object:\n    import airflow\n\n" \
                  "    return DAG, airflow\n"
ASSERTION = "def f(x: int | None) -> int:\n    assert x is not None\n    return x\n"


def _codes(path: str, source: str) -> list[str]:
    if not RUFF.exists():
        pytest.skip(f"ruff is not installed next to {sys.executable} (make venv installs it)")
    done = subprocess.run([str(RUFF), "check", "--output-format", "json", "--no-cache",
                           "--stdin-filename", path, "-"], input=source, text=True,
                          capture_output=True, cwd=ROOT, timeout=60, check=False)
    assert done.returncode in (0, 1), done.stderr
    return sorted(finding["code"] for finding in json.loads(done.stdout))


@pytest.mark.parametrize("path", ["plugins/bcdv/engine/plan.py", "plugins/bcdv/clients/x.py",
                                  "plugins/bcdv/service/new_module.py", "plugins/bcdv/cli.py",
                                  "plugins/bcdv/settings.py"])
def test_the_core_cannot_import_airflow(path: str) -> None:
    assert _codes(path, AIRFLOW_IMPORTS) == ["TID251", "TID251"]


@pytest.mark.parametrize("path", ["plugins/bcdv/airflow/tasks.py",
                                  "plugins/bcdv/airflow/ui/app.py", "plugins/bcdv_plugin.py",
                                  "dags/bcdv_sync_customer.py", "tests/airflow/test_x.py"])
def test_the_airflow_shell_dags_and_tests_may(path: str) -> None:
    assert _codes(path, AIRFLOW_IMPORTS) == []


def test_production_code_does_not_assert_but_tests_do() -> None:
    assert _codes("plugins/bcdv/mapping/model.py", ASSERTION) == ["S101"]
    assert _codes("emulators/bcdv_emulators/tokens.py", ASSERTION) == ["S101"]
    assert _codes("tests/unit/test_x.py", ASSERTION) == []
    assert _codes("emulators/emulator_tests/test_x.py", ASSERTION) == []
