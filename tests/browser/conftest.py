"""Browser-test fixtures: Debian's Chromium (installed by .ci/install-browser.sh when
missing), the emulators, demo state from real syncs and a real Airflow API server with a
scheduler, all on loopback with free ports. Screenshots go to .artifacts/browser/.

Why a scheduler: "sync now" triggers bcdv_sync_record through Airflow's REST API, as the
page does in production; a LocalExecutor scheduler runs that run for real, so the test sees
the result the page shows. No dag-processor: ``airflow dags reserialize`` puts the DAGs in
the metadata DB once; every DAG stays paused except bcdv_sync_record (the scheduled mapping
DAGs must not change the demo state under the test).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from tests.cli.demo_env import add_refused_records

from . import stack

ROOT = stack.ROOT
ARTIFACTS = ROOT / ".artifacts" / "browser"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-quic"]


@dataclass
class Stack:
    """What a browser test gets: the API server's URL, the demo's skipped record, paths."""

    base: str
    home: Path
    env: dict[str, str]
    skipped: dict[str, str]
    state_url: str

    def token(self, user: str) -> str:
        """A JWT of a known user."""
        return stack.token(self.base, user)


def _ensure_chromium() -> None:
    if CHROMIUM.exists():
        return
    proc = subprocess.run(["bash", str(ROOT / ".ci" / "install-browser.sh")],
                          capture_output=True, text=True, timeout=900, check=False)
    if proc.returncode != 0 or not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed and could not be installed: "
                    + (proc.stderr.strip().splitlines() or ["no output"])[-1])


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Debian Chromium driven by Playwright (never a downloaded browser)."""
    _ensure_chromium()
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="playwright is not installed (requirements.lock)")
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def airflow_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Emulators + demo state + `airflow api-server` + `airflow scheduler`."""
    from bcdv_emulators.testing import run_emulators

    home = tmp_path_factory.mktemp("airflow")
    started = time.monotonic()
    with run_emulators(home / "emulators", seed="demo") as endpoints:
        state_url = f"sqlite:///{home / 'state.db'}"
        add_refused_records(endpoints)  # the demo seed syncs cleanly; the pages need refusals
        skipped = stack.demo_state(endpoints, state_url, home / "staging")
        with stack.api_server(home, endpoints, state_url) as (base, env):
            resp = requests.patch(f"{base}/api/v2/dags/bcdv_sync_record",
                                  json={"is_paused": False}, timeout=30, headers={
                                      "Authorization": f"Bearer {stack.token(base, 'admin')}"})
            resp.raise_for_status()
            with stack.process(env, home / "scheduler.log", "scheduler"):
                print(f"airflow stack up in {time.monotonic() - started:.1f} s: {base}")
                yield Stack(base, home, env, skipped, state_url)


@pytest.fixture
def shots(request: pytest.FixtureRequest) -> Any:
    """``shots(page, "name")`` saves a full-page screenshot under .artifacts/browser/."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def take(page: Any, name: str) -> Path:
        path = ARTIFACTS / f"{request.node.name}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take
