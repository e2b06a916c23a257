"""The /_emulator admin API, fault injection, clock offsets, persistence and the CLI."""
from __future__ import annotations

import email.utils
import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from bcdv_emulators.cli import env_exports
from bcdv_emulators.testing import run_emulators

from .conftest import Api, admin, get_token


def test_faults_next_statuses_reset_and_timeout(ep: dict[str, Any], dv: Api) -> None:
    admin(ep, "dataverse", "PUT", "faults", {"next": [429, 500, 502], "retry_after": 3})
    r429, r500, r502, ok = (dv.get("WhoAmI") for _ in range(4))
    assert r429.status_code == 429 and r429.headers["Retry-After"] == "3"
    assert r429.json()["error"]["code"] == "0x80072322"
    assert r500.status_code == 500 and "Retry-After" not in r500.headers
    assert r502.status_code == 502 and ok.status_code == 200
    admin(ep, "dataverse", "PUT", "faults", {"next": ["reset"]})
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"{dv.base}/WhoAmI", headers={"Authorization": f"Bearer {dv.token}"},
                     verify=dv.ca, timeout=10)
    admin(ep, "dataverse", "PUT", "faults", {"next": ["timeout"], "timeout_seconds": 1})
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.get(f"{dv.base}/WhoAmI", headers={"Authorization": f"Bearer {dv.token}"},
                     verify=dv.ca, timeout=0.3)
    admin(ep, "dataverse", "PUT", "faults", {"error_rates": {"503": 1.0}})
    assert dv.get("WhoAmI").status_code == 503
    admin(ep, "dataverse", "DELETE", "faults")
    assert dv.get("WhoAmI").status_code == 200
    admin(ep, "dataverse", "PUT", "faults", {"latency_ms": 150})
    start = time.monotonic()
    dv.get("WhoAmI")
    assert time.monotonic() - start >= 0.15
    admin(ep, "dataverse", "DELETE", "faults")


def test_fault_rule_for_chosen_records(ep: dict[str, Any], dv: Api, cust: Api) -> None:
    rule = {"entity": "accounts", "match": {"name": "Poison"}, "status": 400,
            "code": "0x80040265", "message": "Plug-in says no."}
    admin(ep, "dataverse", "PUT", "faults", {"rules": [rule]})
    r = dv.post("accounts", json={"name": "Poison"})
    assert r.status_code == 400
    assert r.json()["error"] == {"code": "0x80040265", "message": "Plug-in says no."}
    assert dv.post("accounts", json={"name": "Fine"}).status_code == 204
    t = "Microsoft.Dynamics.CRM.account"
    r = dv.post("accounts/Microsoft.Dynamics.CRM.CreateMultiple", json={"Targets": [
        {"@odata.type": t, "name": "Rule Bulk OK"}, {"@odata.type": t, "name": "Poison"}]})
    assert r.status_code == 400
    assert dv.get("accounts?$filter=name eq 'Rule Bulk OK'").json()["value"] == []
    admin(ep, "dataverse", "DELETE", "faults")
    admin(ep, "business_central", "PUT", "faults", {"rules": [
        {"entity": "customers", "match": {"city": "Nowhere"}, "status": 400,
         "code": "Application_DialogException", "message": "Blocked city."}]})
    r = cust.post("customers", json={"displayName": "Rule", "city": "Nowhere"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "Application_DialogException"
    assert r.json()["error"]["message"].startswith("Blocked city.  CorrelationId:  ")
    admin(ep, "business_central", "DELETE", "faults")


def test_clock_offset_moves_date_and_timestamps(ep: dict[str, Any], dv: Api,
                                               cust: Api) -> None:
    admin(ep, "dataverse", "PUT", "clock", {"offset_seconds": -3600})
    admin(ep, "business_central", "PUT", "clock", {"offset_seconds": 7200})
    try:
        r = dv.post("accounts", json={"name": "Clocked"},
                    headers={"Prefer": "return=representation"})
        served = email.utils.parsedate_to_datetime(r.headers["Date"]).timestamp()
        assert abs(served - (time.time() - 3600)) < 5
        modified = datetime.fromisoformat(r.json()["modifiedon"].replace("Z", "+00:00"))
        assert abs(modified.timestamp() - (time.time() - 3600)) < 5
        c = cust.post("customers", json={"displayName": "Clocked"})
        lm = datetime.fromisoformat(c.json()["lastModifiedDateTime"].replace("Z", "+00:00"))
        assert abs(lm.timestamp() - (time.time() + 7200)) < 5
        served = email.utils.parsedate_to_datetime(c.headers["Date"]).timestamp()
        assert abs(served - (time.time() + 7200)) < 5
    finally:
        admin(ep, "dataverse", "PUT", "clock", {"offset_seconds": 0})
        admin(ep, "business_central", "PUT", "clock", {"offset_seconds": 0})


def test_request_counters_and_records(ep: dict[str, Any], dv: Api) -> None:
    admin(ep, "dataverse", "DELETE", "requests")
    dv.get("accounts?$top=1")
    dv.get("accounts(00000000-0000-0000-0000-000000000000)")
    rows = admin(ep, "dataverse", "GET", "requests").json()["requests"]
    assert {"service": "dataverse", "method": "GET", "entity": "accounts", "status": 200,
            "count": 1} in rows
    assert any(r["status"] == 404 and r["entity"] == "-" for r in rows)
    recs = admin(ep, "dataverse", "GET", "records/systemusers").json()
    assert recs["count"] >= 3 and all("systemuserid" in r for r in recs["value"])
    assert admin(ep, "dataverse", "GET", "records/nope").status_code == 404
    assert admin(ep, "business_central", "PUT", "faults", {"bogus": 1}).status_code == 400


def test_reset_seed_and_persistence(tmp_path: Path) -> None:
    with run_emulators(tmp_path, seed="empty") as ep:
        bc = Api(ep["business_central"]["base_url"], get_token(ep, ep["business_central"]
                                                                   ["scope"]), ep["ca_bundle"])
        company = ep["business_central"]["company_id"]
        assert bc.get(f"companies({company})/customers").json()["value"] == []
        bc.post(f"companies({company})/customers", json={"displayName": "Kept"})
        secret = ep["identity"]["client_secret"]
        ca_pem = Path(ep["ca_bundle"]).read_bytes()
    with run_emulators(tmp_path, seed="demo") as ep:  # existing data wins over the seed
        assert ep["identity"]["client_secret"] == secret
        assert Path(ep["ca_bundle"]).read_bytes() == ca_pem
        assert ep["business_central"]["company_id"] == company
        assert json.loads((tmp_path / "endpoints.json").read_text()) == ep
        bc = Api(ep["business_central"]["base_url"], get_token(ep, ep["business_central"]
                                                                   ["scope"]), ep["ca_bundle"])
        names = [c["displayName"] for c in bc.get(f"companies({company})/customers").json()
                 ["value"]]
        assert names == ["Kept"]
        assert admin(ep, "business_central", "POST", "seed", {"seed": "demo"}).status_code == 200
        assert len(bc.get(f"companies({company})/customers").json()["value"]) == 8
        admin(ep, "business_central", "POST", "reset")
        assert bc.get(f"companies({company})/customers").json()["value"] == []
        assert admin(ep, "dataverse", "POST", "seed", {"seed": "synthetic:25"}).status_code == 200
        dv = Api(ep["dataverse"]["api_url"], get_token(ep, ep["dataverse"]["scope"]),
                 ep["ca_bundle"])
        n = dv.get("accounts?$filter=startswith(accountnumber,'SA')&$count=true").json()
        assert n["@odata.count"] == 25
        assert admin(ep, "dataverse", "POST", "seed", {"seed": "bogus"}).status_code == 400


def test_cli_start_env_admin_and_sigterm(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-m", "bcdv_emulators", "start", "--data-dir",
                             str(tmp_path), "--seed", "demo", "--identity-port", "0",
                             "--bc-port", "0", "--dataverse-port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "endpoints.json").exists():
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline
            time.sleep(0.05)
        ep = json.loads((tmp_path / "endpoints.json").read_text())
        for _ in range(200):
            try:
                requests.get(f"{ep['dataverse']['base_url']}/_emulator/health",
                             verify=ep["ca_bundle"], timeout=5)
                break
            except requests.exceptions.ConnectionError:
                time.sleep(0.05)
        exports = env_exports(tmp_path)
        assert f"export BCDV_ENDPOINTS={tmp_path / 'endpoints.json'}" in exports
        conn = json.loads(exports.split("AIRFLOW_CONN_BCDV_BUSINESS_CENTRAL=")[1]
                          .split("\n")[0].strip("'"))
        assert conn["conn_type"] == "bcdv_business_central"
        assert conn["host"] == ep["business_central"]["base_url"]
        assert conn["extra"]["company_id"] == ep["business_central"]["company_id"]
        out = subprocess.run([sys.executable, "-m", "bcdv_emulators", "faults", str(tmp_path),
                              "--service", "dv", "--next", "503"], capture_output=True,
                             text=True, env=env, timeout=60)
        assert out.returncode == 0, out.stderr
        tok = get_token(ep, ep["dataverse"]["scope"])
        r = Api(ep["dataverse"]["api_url"], tok, ep["ca_bundle"]).get("WhoAmI")
        assert r.status_code == 503
        out = subprocess.run([sys.executable, "-m", "bcdv_emulators", "reset", str(tmp_path)],
                             capture_output=True, text=True, env=env, timeout=60)
        assert out.returncode == 0, out.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
