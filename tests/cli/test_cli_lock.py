"""`bcdv sync` takes the same run locks as the DAGs."""

from __future__ import annotations

import os

from bcdv.cli import main
from bcdv.state import StateStore


def test_sync_refuses_while_another_run_holds_the_lock(tmp_path, emulators, capsys,
                                                       monkeypatch) -> None:
    endpoints = tmp_path / "emulators" / "endpoints.json"
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    monkeypatch.setenv("BCDV_ENDPOINTS", str(endpoints))
    monkeypatch.setenv("BCDV_STATE_URL", state_url)
    monkeypatch.setenv("BCDV_STAGING_DIR", str(tmp_path / "staging"))
    monkeypatch.setenv("BCDV_MAPPINGS_DIR", os.path.join(os.path.dirname(__file__), "..", "..",
                                                         "include", "mappings"))
    store = StateStore(state_url)
    with store.mapping_lock("CUSTOMER", "scheduled__2026-11-25T07:00:00"):
        code = main(["sync", "customer"])
    err = capsys.readouterr().err
    assert code == 1
    assert "scheduled__2026-11-25T07:00:00" in err
    assert store.jobs("CUSTOMER") == []  # nothing ran
    assert main(["sync", "customer", "--dry-run"]) == 0  # a dry run writes nothing: no lock


def test_locks_list_and_release(tmp_path, capsys, monkeypatch) -> None:
    import json

    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    monkeypatch.setenv("BCDV_STATE_URL", state_url)
    monkeypatch.setenv("BCDV_MAPPINGS_DIR", os.path.join(os.path.dirname(__file__), "..", "..",
                                                         "include", "mappings"))
    store = StateStore(state_url)
    assert store.acquire_lock("CUSTOMER", "dead-run")
    assert main(["--json", "locks", "list"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["owner"] == "dead-run"
    assert main(["locks", "release", "customer"]) == 2  # needs --force
    assert main(["locks", "release", "customer", "--force"]) == 0
    assert "held by 'dead-run'" in capsys.readouterr().out
    assert store.lock_holder("CUSTOMER") is None
    assert main(["locks", "list"]) == 0
    assert "no mapping is locked" in capsys.readouterr().out
