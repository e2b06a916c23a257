"""The UI's re-couple and sync-now forms refuse an id that is not a GUID (it would reach an
OData URL on the next run)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
GUID = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
INJECTED = "00000000-0000-0000-0000-000000000000 or id ne 00000000-0000-0000-0000-000000000000"


@pytest.fixture
def ui(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    from fastapi.testclient import TestClient

    from bcdv.airflow.ui import app as ui_app
    from bcdv.airflow.ui import security

    monkeypatch.setenv("BCDV_STATE_URL", f"sqlite:///{tmp_path / 'state.db'}")
    monkeypatch.setenv("BCDV_MAPPINGS_DIR", str(ROOT / "include" / "mappings"))
    viewer = security.Viewer(user=SimpleNamespace(get_id=lambda: "1"), name="admin",
                             token="t", can_trigger=True, nonce="n", new_nonce=False)

    async def authenticate(request: Any) -> Any:
        return viewer

    # Sign-in and CSRF are Airflow's and tested elsewhere (tests/browser).
    monkeypatch.setattr(security, "authenticate", authenticate)
    monkeypatch.setattr(security, "is_authorized", lambda *a, **k: True)
    monkeypatch.setattr(security, "check_csrf", lambda *a, **k: None)
    return TestClient(ui_app.create_app()), ui_app


def test_the_recouple_form_refuses_an_id_that_is_not_a_guid(ui: Any) -> None:
    client, ui_app = ui
    resp = client.post("/couplings/recouple", data={"mapping": "customer", "bc_id": INJECTED,
                                                     "dv_id": GUID}, follow_redirects=False)
    assert resp.status_code == 303 and "not+a+GUID" in resp.headers["location"]
    assert "bc_id" in resp.headers["location"]
    assert ui_app.store().couplings("CUSTOMER").empty
    resp = client.post("/couplings/recouple", data={"mapping": "customer", "bc_id": GUID,
                                                     "dv_id": GUID.upper()},
                       follow_redirects=False)
    assert "Coupled" in resp.headers["location"]


def test_the_sync_now_form_refuses_an_id_that_is_not_a_guid(ui: Any) -> None:
    client, _ = ui
    resp = client.post("/sync", data={"mapping": "customer", "side": "dataverse",
                                       "record_id": "x' or 1 eq 1"}, follow_redirects=False)
    assert resp.status_code == 303 and "record_id" in resp.headers["location"]
