"""The service layer without the network: settings (one object, one set of defaults, read at
call time, nothing relative to the current directory), input validation, and the record
operations that need only the state store (uncouple, restore, recouple) under the run lock;
the CLI and the UI uncouple through the same service function."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from bcdv.errors import ConfigError, SafetyStopError

ROOT = Path(__file__).resolve().parents[2]
BC = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
DV = "9a1c7e52-0d3b-4c8e-a0f1-6b2d4e8c1a77"
STATE_VARS = ("BCDV_HOME", "BCDV_STATE_URL", "BCDV_STAGING_DIR", "BCDV_MAPPINGS_DIR",
              "AIRFLOW_HOME", "XDG_DATA_HOME")


# -- settings ---------------------------------------------------------------------------------
def test_defaults_live_under_one_home_never_the_current_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bcdv.settings import load_settings

    for name in STATE_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    s = load_settings()
    assert s.home == tmp_path / "home" / ".local" / "share" / "bcdv"
    assert s.staging_dir == s.home / "staging"
    assert s.state_url == f"sqlite:///{s.home / 'state.db'}"
    assert s.mappings_dir == ROOT / "include" / "mappings"  # the project bcdv runs from
    assert s.home.is_absolute() and s.staging_dir.is_absolute()

    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow"))  # under Airflow
    assert load_settings().home == tmp_path / "airflow" / "bcdv"
    monkeypatch.setenv("BCDV_HOME", "relative/home")  # made absolute at once, not later
    assert load_settings().home == tmp_path / "relative" / "home"


def test_settings_are_read_at_call_time_and_name_a_bad_number(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from bcdv.settings import load_settings
    from bcdv.state.locks import lock_heartbeat_seconds, lock_stale_seconds

    monkeypatch.setenv("BCDV_LOCK_STALE_SECONDS", "12.5")
    monkeypatch.setenv("BCDV_TASK_RETRIES", "5")
    monkeypatch.setenv("BCDV_ALERT_WEBHOOK_URL", "https://hooks.example/x")
    s = load_settings()
    assert (s.lock_stale_seconds, s.task_retries) == (12.5, 5)
    assert s.alerts == {"bcdv_alert_webhook_url": "https://hooks.example/x"}
    assert lock_stale_seconds() == 12.5
    monkeypatch.setenv("BCDV_LOCK_HEARTBEAT_SECONDS", "0.5")
    assert lock_heartbeat_seconds() == 0.5
    monkeypatch.delenv("BCDV_LOCK_STALE_SECONDS")
    assert lock_stale_seconds() == 180.0
    monkeypatch.setenv("BCDV_TASK_RETRIES", "many")
    with pytest.raises(ConfigError, match="BCDV_TASK_RETRIES='many' is not a number"):
        load_settings()


def test_no_bcdv_variable_is_read_outside_settings() -> None:
    """One function reads the environment (the engine's batch size is the engine's own
    business; the Airflow glue reads Airflow's variables through one helper)."""
    allowed = {"settings.py", "engine/apply.py", "airflow/connections.py", "commands/up.py",
               "state/store.py"}
    offenders = []
    for path in (ROOT / "plugins" / "bcdv").rglob("*.py"):
        rel = path.relative_to(ROOT / "plugins" / "bcdv").as_posix()
        text = path.read_text()
        if rel not in allowed and ("os.environ" in text or "getenv(" in text):
            offenders.append(rel)
    assert offenders == []


# -- validation -------------------------------------------------------------------------------
def test_window_and_ids_are_validated_before_anything_happens() -> None:
    from bcdv.clients.odata import InvalidValue
    from bcdv.service import validate

    since, until = validate.window("2026-01-01T00:00:00Z", "2026-01-02")
    assert since.tzinfo is not None and (until - since).days == 1
    with pytest.raises(InvalidValue, match="empty window"):
        validate.window("2026-01-02", "2026-01-01")
    with pytest.raises(InvalidValue, match="since 'yesterday' is not an ISO 8601"):
        validate.window("yesterday", "2026-01-01")
    assert validate.record_id(BC.upper()) == BC
    with pytest.raises(InvalidValue, match="not a GUID"):
        validate.record_id("x' or 1 eq 1")
    with pytest.raises(ConfigError, match="allowed: business_central, dataverse"):
        validate.side("sideways")


def test_the_service_imports_without_airflow() -> None:
    script = textwrap.dedent("""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name == "airflow" or name.startswith("airflow."):
                    raise ImportError(name)
        sys.meta_path.insert(0, Block())
        import bcdv.service, bcdv.service.stages, bcdv.commands.sync, bcdv.commands.couplings
        print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.stdout.strip() == "ok", proc.stderr


# -- record operations under the run lock ---------------------------------------------------
@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    from bcdv.state.store import StateStore

    url = f"sqlite:///{tmp_path / 'state.db'}"
    monkeypatch.setenv("BCDV_STATE_URL", url)
    monkeypatch.setenv("BCDV_MAPPINGS_DIR", str(ROOT / "include" / "mappings"))
    s = StateStore(url)
    assert s.couple("CUSTOMER", BC, DV)
    return s


@pytest.fixture
def customer() -> Any:
    from bcdv.mapping import load_mappings

    return load_mappings(ROOT / "include" / "mappings")["CUSTOMER"]


def test_uncouple_refuses_while_another_run_holds_the_lock(store: Any, customer: Any) -> None:
    from bcdv import service

    store.acquire_lock("CUSTOMER", "scheduled__running")
    with pytest.raises(SafetyStopError, match="scheduled__running"):
        service.uncouple(store, customer, BC, run_id="cli__second")
    with pytest.raises(SafetyStopError):
        service.restore(store, customer, BC, run_id="cli__second")
    assert store.coupling("CUSTOMER", bc_id=BC)  # nothing written

    # The run that holds the lock may (re-entrant); its lock stays held afterwards.
    done = service.uncouple(store, customer, DV, run_id="scheduled__running")
    assert (done.bc_id, done.dv_id, done.changed) == (BC, DV, 1)
    assert store.lock_holder("CUSTOMER").owner == "scheduled__running"
    store.release_lock("CUSTOMER", "scheduled__running")

    assert service.recouple(store, customer, bc_id=BC, dv_id=DV, run_id="ui__a")
    assert not service.recouple(store, customer, bc_id=BC, dv_id=DV, run_id="ui__a")
    assert service.uncouple(store, customer, BC, side="dataverse").coupling is None
    assert service.uncouple(store, customer, BC, side="business_central").changed == 1
    assert store.lock_holder("CUSTOMER") is None  # a lock taken by the call is released


def test_cli_and_ui_uncouple_through_the_same_function_with_the_same_result(
        store: Any, customer: Any, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from fastapi.testclient import TestClient

    from bcdv import service
    from bcdv.airflow.ui import app as ui_app
    from bcdv.airflow.ui import security
    from bcdv.cli import main

    calls: list[tuple[str, str | None]] = []
    real = service.uncouple

    def spy(st: Any, mapping: Any, record_id: str, **kw: Any) -> Any:
        result = real(st, mapping, record_id, **kw)
        calls.append((kw.get("run_id", "").split("__")[0], result.bc_id))
        return result

    monkeypatch.setattr(service, "uncouple", spy)
    assert main(["couplings", "uncouple", "customer", DV, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"mapping": "CUSTOMER", "bc_id": BC,
                                                  "dv_id": DV, "removed": 1}
    cli_state = store.couplings("CUSTOMER")

    assert store.couple("CUSTOMER", BC, DV)
    viewer = security.Viewer(user=SimpleNamespace(get_id=lambda: "1"), name="admin",
                             token="t", can_trigger=True, nonce="n", new_nonce=False)

    async def authenticate(request: Any) -> Any:
        return viewer

    monkeypatch.setattr(security, "authenticate", authenticate)
    monkeypatch.setattr(security, "is_authorized", lambda *a, **k: True)
    monkeypatch.setattr(security, "check_csrf", lambda *a, **k: None)
    ui_app._store.cache_clear()
    client = TestClient(ui_app.create_app())
    resp = client.post("/couplings/uncouple", data={"mapping": "CUSTOMER", "record_id": DV},
                       follow_redirects=False)
    assert resp.status_code == 303 and "Uncoupled" in resp.headers["location"]
    assert calls == [("cli", BC), ("ui", BC)]
    assert store.couplings("CUSTOMER").equals(cli_state)  # both: the coupling is gone
    assert store.lock_holder("CUSTOMER") is None

    store.acquire_lock("CUSTOMER", "scheduled__running")  # the UI refuses like the CLI
    assert store.couple("CUSTOMER", BC, DV)
    resp = client.post("/couplings/uncouple", data={"mapping": "CUSTOMER", "record_id": DV},
                       follow_redirects=False)
    assert "locked+by+another+run" in resp.headers["location"]
    assert main(["couplings", "uncouple", "customer", DV]) == 1
    assert "locked by another run" in capsys.readouterr().err
    assert store.coupling("CUSTOMER", bc_id=BC)
