"""A third-party Dataverse client: dynamics-web-api (npm, by Aleksandr Rogov) run by Node.js.

The script tests/contract/node/dwa.mjs uses the library as its README shows; only the server
URL, the token callback (a token from the token endpoint, passed in BCDV_DV_TOKEN) and the CA
(NODE_EXTRA_CA_CERTS) differ from a real tenant. ``make test`` installs the pinned package
(npm ci, tests/contract/node/package-lock.json) before pytest runs.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from .conftest import Created, Target
from .wire import Api, token

NODE_DIR = Path(__file__).parent / "node"


def _run_script(target: Target, name: str) -> dict[str, Any]:
    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js is not installed (needed to run the dynamics-web-api client)")
    assert (NODE_DIR / "node_modules" / "dynamics-web-api").is_dir(), (
        "tests/contract/node/node_modules is missing: run `make node` "
        "(npm ci in tests/contract/node)")
    ep = target.endpoints
    dv_ep = ep["dataverse"]
    scope = dv_ep.get("scope") or f"{dv_ep['base_url'].rstrip('/')}/.default"
    env = {**os.environ, "BCDV_DV_URL": dv_ep["base_url"], "BCDV_DV_TOKEN": token(ep, scope),
           "BCDV_NAME": name}
    if ep.get("ca_bundle"):
        env["NODE_EXTRA_CA_CERTS"] = str(ep["ca_bundle"])
    proc = subprocess.run([node, "dwa.mjs"], cwd=NODE_DIR, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.stdout.strip(), f"no summary (exit {proc.returncode}): {proc.stderr[-2000:]}"
    summary: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    assert proc.returncode == 0 and "error" not in summary, (summary, proc.stderr[-2000:])
    return summary


def test_dynamics_web_api_crud_paging_upsert_batch_delete(target: Target, dv: Api,
                                                          created: Created, name: str) -> None:
    """dynamics-web-api (create, retrieve, retrieveMultiple with maxPageSize following
    @odata.nextLink, update, upsert, a $batch of two operations, deleteRecord, and the 404 of
    a deleted record) works unchanged.
    https://learn.microsoft.com/power-apps/developer/data-platform/webapi/overview"""
    summary = _run_script(target, name)
    for key in summary["made"]:
        created.add(dv, f"accounts({key})")  # safety net: the script deletes them itself
    assert summary["retrieved"]["name"] == f"{name}-main"
    assert summary["retrieved"]["telephone1"] == "555 0100"
    assert summary["paging"]["sizes"] == [2, 2, 1]
    assert summary["paging"]["names"] == [f"{name}-page-{i}" for i in range(5)]
    assert summary["updated"]["telephone1"] == "555 0199"
    assert summary["upserted"]["name"] == f"{name}-upsert"
    assert summary["upserted"]["telephone1"] == "555 0111"
    assert summary["batch"]["count"] == 2
    assert summary["batch"]["created"]["name"] == f"{name}-batch"
    assert summary["batch"]["updated"]["description"] == "batched"
    assert summary["deleted"]["status"] == 404
    assert summary["deleted"]["code"] == "0x80040217"
    leftovers = dv.get("accounts", params={"$select": "name",
                                           "$filter": f"startswith(name,'{name}')"})
    assert leftovers.status_code == 200 and leftovers.json()["value"] == []
