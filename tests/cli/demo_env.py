"""CLI test environment: the emulators with demo data and a state store filled by real syncs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def add_refused_records(endpoints: dict[str, Any]) -> None:
    """Two Dataverse-only customer accounts that Business Central refuses, as a data engineer
    meets them (the demo seed itself synchronises cleanly): a person typed Contoso's country
    as a name (BC's country is a Country/Region Code[10]), and the company lacks NET45, Fourth
    Coffee's payment terms."""
    from bcdv.clients.business_central import BusinessCentralClient
    from bcdv.clients.dataverse import DataverseClient
    from bcdv.settings import endpoints_from_dict
    from bcdv_emulators.seeds.dv_demo import ADMIN_OBJECT_ID

    settings = endpoints_from_dict(endpoints)
    dv = DataverseClient(settings.dataverse)
    bc = BusinessCentralClient(settings.business_central)
    try:
        contoso = dv.list("accounts", filter="name eq 'Contoso Pharmaceuticals'")[0]
        dv.http.request("PATCH", dv.url("accounts", contoso["accountid"]),
                        json={"address1_country": "United States"},
                        headers={"Content-Type": "application/json", "If-Match": "*",
                                 "CallerObjectId": ADMIN_OBJECT_ID}).raise_for_status()
        net45 = bc.list("paymentTerms", filter="code eq 'NET45'")[0]
        bc.delete("paymentTerms", net45["id"])
    finally:
        dv.close()
        bc.close()


def fill_demo_state(endpoints: dict[str, Any], state_url: str, staging: Path) -> dict[str, str]:
    """A full CUSTOMER sync (two records fail on the way back: BC refuses them, see
    add_refused_records), then a
    coupled account deleted in Dataverse and its customer changed, synced twice: the same
    deletion conflict twice marks it Skipped. Returns that record's ids."""
    from bcdv.engine import SyncContext, sync_mapping
    from bcdv.mapping import load_mappings
    from bcdv.settings import endpoints_from_dict

    mappings = load_mappings(ROOT / "include" / "mappings")
    ctx = SyncContext.create(endpoints_from_dict(endpoints), state_url, staging, mappings)
    try:
        sync_mapping(ctx, mappings["CUSTOMER"], mode="full", run_id="demo__full")
        frame = ctx.state.couplings("CUSTOMER")
        victim = frame[frame["to_dv_result"] == "success"].sort_values("bc_id").iloc[0]
        customer = ctx.business_central.client.get("customers", victim["bc_id"])
        ctx.dataverse.client.delete("accounts", victim["dv_id"])
        ctx.business_central.client.update("customers", victim["bc_id"],
                                           {"phoneNumber": "+1 425 555 0142"},
                                           etag=customer["@odata.etag"])
        for n in (1, 2):
            sync_mapping(ctx, mappings["CUSTOMER"], run_id=f"demo__scheduled_{n}")
        return {"bc_id": str(victim["bc_id"]), "dv_id": str(victim["dv_id"])}
    finally:
        ctx.close()


class Demo:
    """Settings of one demo environment for ``bcdv`` (env vars) plus what is in it."""

    def __init__(self, root: Path, endpoints: dict[str, Any], state_url: str) -> None:
        self.root = root
        self.endpoints = endpoints
        self.state_url = state_url
        self.endpoints_file = root / "endpoints.json"
        self.endpoints_file.write_text(json.dumps(endpoints))
        self.skipped: dict[str, str] = {}

    def env(self) -> dict[str, str]:
        """What a user would export."""
        return {"BCDV_ENDPOINTS": str(self.endpoints_file), "BCDV_STATE_URL": self.state_url,
                "BCDV_STAGING_DIR": str(self.root / "staging"),
                "BCDV_MAPPINGS_DIR": str(ROOT / "include" / "mappings")}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """Read-only demo environment shared by a module's tests."""
    from bcdv_emulators.testing import run_emulators

    root = tmp_path_factory.mktemp("cli-demo")
    with run_emulators(root / "emulators", seed="demo") as endpoints:
        add_refused_records(endpoints)
        d = Demo(root, endpoints, f"sqlite:///{root / 'state.db'}")
        d.skipped = fill_demo_state(endpoints, d.state_url, root / "staging")
        yield d


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[Demo]:
    """A demo environment of one's own (for commands that change things)."""
    from bcdv_emulators.testing import run_emulators

    with run_emulators(tmp_path / "emulators", seed="demo") as endpoints:
        add_refused_records(endpoints)
        yield Demo(tmp_path, endpoints, f"sqlite:///{tmp_path / 'state.db'}")


@pytest.fixture
def bcdv(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Any:
    """``bcdv(demo, *argv)`` runs the CLI in-process with demo's settings; returns
    (exit code, stdout, stderr)."""
    from bcdv.cli import main

    def run(env: Demo, *argv: str) -> tuple[int, str, str]:
        for key, value in env.env().items():
            monkeypatch.setenv(key, value)
        capsys.readouterr()
        code = main(list(argv))
        out = capsys.readouterr()
        return code, out.out, out.err

    return run
