"""Issue 14, as a data engineer meets it: ``bcdv sync`` of the CUSTOMER mapping after a few
customers changed costs one request to Business Central (its reference tables, the signpost
and the changed customers in one JSON ``$batch``: Learn, business-central
dynamics-batch-requests) and two to Dataverse (its reference tables, WhoAmI and the accounts
the changes are compared with in one ``$batch``, Learn: execute-batch-operations-using-web-api;
then the updates). The emulators count the requests; the changes are checked in Dataverse
over its API."""

from __future__ import annotations

import json
import time
from typing import Any

import requests

from .demo_env import Demo


def _admin(env: Demo, service: str, method: str, path: str) -> Any:
    base = {"bc": env.endpoints["business_central"]["base_url"].split("/v2.0")[0],
            "dv": env.endpoints["dataverse"]["base_url"]}[service]
    resp = requests.request(method, f"{base}/_emulator/{path}",
                            verify=env.endpoints["ca_bundle"], timeout=30)
    resp.raise_for_status()
    return resp.json() if resp.content else None


def test_a_scheduled_sync_of_three_changed_customers_costs_three_requests(
        fresh: Demo, bcdv: Any) -> None:
    from bcdv.clients.business_central import BusinessCentralClient
    from bcdv.clients.dataverse import DataverseClient
    from bcdv.settings import endpoints_from_dict

    bcdv(fresh, "sync", "customer", "--full")
    rows = json.loads(bcdv(fresh, "couplings", "list", "customer", "--json")[1])
    coupled = [r for r in rows if r["bc_id"] and r["dv_id"]][:3]
    assert len(coupled) == 3, rows
    time.sleep(1.2)  # Dataverse stamps whole seconds: the changes come after the full sync
    settings = endpoints_from_dict(fresh.endpoints)
    bc = BusinessCentralClient(settings.business_central)
    dv = DataverseClient(settings.dataverse)
    try:
        phones = {}
        for n, pair in enumerate(coupled):
            customer = bc.get("customers", pair["bc_id"])
            assert customer is not None
            phones[pair["dv_id"]] = f"+1 425 555 01{n:02d}"
            bc.update("customers", pair["bc_id"], {"phoneNumber": phones[pair["dv_id"]]},
                      etag=customer["@odata.etag"])
        time.sleep(1.2)
        for service in ("bc", "dv"):
            _admin(fresh, service, "DELETE", "stats")
        code, out, err = bcdv(fresh, "sync", "customer", "--direction", "to_dataverse",
                              "--json")
        assert code == 0, err
        report = json.loads(out)[0]
        assert report["modified"] == 3 and report["failed"] == 0, report
        bc_stats, dv_stats = (_admin(fresh, s, "GET", "stats") for s in ("bc", "dv"))
        assert bc_stats["requests"] == 1, bc_stats["by_kind"]
        assert dv_stats["requests"] == 2, dv_stats["by_kind"]
        for dv_id, phone in phones.items():
            row = dv.get("accounts", dv_id, select=["telephone1"])
            assert row is not None and row["telephone1"] == phone, row
    finally:
        bc.close()
        dv.close()
