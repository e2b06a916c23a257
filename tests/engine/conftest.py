"""A small harness for the behaviour tests: empty emulators, a state store, helpers that
create and edit records on either side and run passes."""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from bcdv.engine import SyncContext, run_pass, sync_mapping
from bcdv.engine.report import PassReport
from bcdv.mapping.model import Direction, TableMapping
from bcdv.settings import endpoints_from_dict

ADMIN_OBJECT_ID = "0d5a7c3e-9b1f-4e2d-8c6a-5f4e3d2c1b0a"  # the emulated org's admin

BASE: dict[str, Any] = {
    "name": "CUSTOMER",
    "business_central": {"entity_set": "customers", "key": "id",
                         "modified_on": "lastModifiedDateTime", "name_field": "displayName",
                         "filter": "blocked eq ' '"},
    "dataverse": {"entity_set": "accounts", "key": "accountid", "modified_on": "modifiedon",
                  "name_field": "name", "filter": "statecode eq 0 and customertypecode eq 3"},
    "direction": "bidirectional",
    "sync_only_coupled": True,
    "fields": [
        {"business_central": "displayName", "dataverse": "name"},
        {"business_central": "phoneNumber", "dataverse": "telephone1"},
        {"business_central": "city", "dataverse": "address1_city"},
        {"business_central": "state", "dataverse": "address1_stateorprovince"},
        {"business_central": "country", "dataverse": "address1_country"},
        {"business_central": "creditLimit", "dataverse": "creditlimit",
         "direction": "to_dataverse"},
    ],
}


def make_mapping(**changes: Any) -> TableMapping:
    """BASE with top-level keys replaced (``fields`` replaced whole when given)."""
    data = copy.deepcopy(BASE)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return TableMapping.model_validate(data)


class Env:
    """Both systems, the state store and shortcuts used by the behaviour tests."""

    def __init__(self, endpoints: dict[str, Any], state_url: str, staging: Path) -> None:
        self.endpoints = endpoints
        self.ctx = SyncContext.create(endpoints_from_dict(endpoints), state_url, staging)
        self.bc = self.ctx.business_central.client
        self.dv = self.ctx.dataverse.client
        self.state = self.ctx.state

    # -- records ------------------------------------------------------------------------
    def bc_new(self, name: str, **fields: Any) -> dict[str, Any]:
        return self.bc.create("customers", {"displayName": name, **fields})

    def bc_edit(self, record_id: str, **fields: Any) -> dict[str, Any]:
        current = self.bc.get("customers", record_id)
        assert current is not None
        return self.bc.update("customers", record_id, fields, etag=current["@odata.etag"])

    def bc_get(self, record_id: str) -> dict[str, Any] | None:
        return self.bc.get("customers", record_id)

    def _as_person(self, method: str, url: str, body: dict[str, Any]) -> requests.Response:
        """Write as the org admin (impersonated), as a person editing in Dynamics would."""
        return self.dv.http.request(method, url, json=body, headers={
            "Content-Type": "application/json", "CallerObjectId": ADMIN_OBJECT_ID,
            "Prefer": "return=representation", **({"If-Match": "*"} if method == "PATCH"
                                                  else {})})

    def dv_new(self, name: str, **cols: Any) -> str:
        row = self._as_person("POST", self.dv.url("accounts"),
                              {"name": name, "customertypecode": 3, **cols}).json()
        return str(row["accountid"])

    def dv_edit(self, record_id: str, **cols: Any) -> None:
        self._as_person("PATCH", self.dv.url("accounts", record_id), cols)

    def dv_edit_as_integration_user(self, record_id: str, **cols: Any) -> None:
        self.dv.update("accounts", record_id, cols)

    def dv_get(self, record_id: str) -> dict[str, Any] | None:
        return self.dv.get("accounts", record_id)

    # -- runs -----------------------------------------------------------------------------
    def sync(self, mapping: TableMapping, **kw: Any) -> dict[str, PassReport]:
        return {r.direction: r for r in sync_mapping(self.ctx, mapping, **kw)}

    def run(self, mapping: TableMapping, direction: str, **kw: Any) -> PassReport:
        return run_pass(self.ctx, mapping, Direction(direction), **kw)

    def coupled_pair(self, mapping: TableMapping, name: str = "Pair Ltd",
                     **bc_fields: Any) -> tuple[str, str]:
        """A BC customer coupled to a Dataverse account by a full sync of just that record."""
        customer = self.bc_new(name, **bc_fields)
        self.state.couple(mapping.name, customer["id"], self.dv_new(name))
        report = self.run(mapping, "to_dataverse", mode="record", record_ids=[customer["id"]])
        assert report.failed == 0, report.records
        dv_id = self.coupling(mapping, bc_id=customer["id"])["dv_id"]
        return customer["id"], dv_id

    def coupling(self, mapping: TableMapping, *, bc_id: str | None = None,
                 dv_id: str | None = None) -> dict[str, Any] | None:
        frame = self.state.couplings(mapping.name, **({"bc_ids": [bc_id]} if bc_id
                                                      else {"dv_ids": [dv_id]}))
        return None if frame.empty else frame.iloc[0].to_dict()

    def admin(self, service: str, method: str, path: str, body: Any = None) -> Any:
        base = {"bc": self.endpoints["business_central"]["base_url"].split("/v2.0")[0],
                "dv": self.endpoints["dataverse"]["base_url"],
                "id": self.endpoints["identity"]["authority"].rsplit("/", 1)[0]}[service]
        resp = requests.request(method, f"{base}/_emulator/{path}", json=body,
                                verify=self.endpoints["ca_bundle"], timeout=30)
        resp.raise_for_status()
        return resp.json() if resp.content else None

    @staticmethod
    def tick() -> None:
        """Let the clocks move on (Dataverse stamps whole seconds)."""
        time.sleep(1.05)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    """Empty emulators (just the company and base currency) and a fresh state store."""
    from bcdv_emulators.testing import run_emulators

    with run_emulators(tmp_path / "emulators", seed="empty") as endpoints:
        e = Env(endpoints, f"sqlite:///{tmp_path / 'state.db'}", tmp_path / "staging")
        yield e
        e.ctx.close()


class WriteCrash(RuntimeError):
    """Stands for the process dying (or the answer being lost) after a write reached the
    service and before its coupling was committed."""


@pytest.fixture
def crash_after_write() -> Iterator[dict[str, bool]]:
    """The next write reaches the service, then the run dies with ``WriteCrash`` before
    recording it (the engine's after-write hook)."""
    from bcdv.engine import apply

    state = {"armed": True}

    def hook(action: dict[str, Any]) -> None:
        if state["armed"]:
            state["armed"] = False
            raise WriteCrash(action["source_id"])

    apply.after_write_hook = hook
    yield state
    apply.after_write_hook = None
