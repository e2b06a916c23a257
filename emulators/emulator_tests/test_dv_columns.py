"""Dataverse details: single-column PUT/DELETE, $ref, state changes, polymorphic lookups,
$expand, concurrency limit, user filters of the seed mapping."""
from __future__ import annotations

import threading
from typing import Any

from bcdv_emulators.seeds.dv_demo import APP_USER_ID

from .conftest import Api, admin


def _new(dv: Api, set_name: str, body: dict[str, Any]) -> dict[str, Any]:
    r = dv.post(set_name, json=body, headers={"Prefer": "return=representation"})
    assert r.status_code == 201, r.text
    return dict(r.json())


def test_dv_single_property_and_ref(dv: Api) -> None:
    parent = _new(dv, "accounts", {"name": "Ref Parent"})
    bind = f"/accounts({parent['accountid']})"
    child = _new(dv, "accounts", {"name": "Ref Child", "description": "d",
                                  "parentaccountid@odata.bind": bind})
    url = f"accounts({child['accountid']})"
    assert dv.request("PUT", f"{url}/name", json={"value": "Renamed"}).status_code == 204
    assert dv.get(f"{url}/name").json()["value"] == "Renamed"
    assert dv.delete(f"{url}/description").status_code == 204
    assert dv.get(url).json()["description"] is None
    assert dv.delete(f"{url}/parentaccountid/$ref").status_code == 204
    assert dv.get(url).json()["_parentaccountid_value"] is None


def test_dv_state_changes_and_filters(dv: Api) -> None:
    acc = _new(dv, "accounts", {"name": "Stateful"})
    r = dv.patch(f"accounts({acc['accountid']})", json={"statecode": 1, "statuscode": 2},
                 headers={"If-Match": "*", "Prefer": "return=representation"})
    assert r.status_code == 200 and r.json()["statecode"] == 1
    r = dv.patch(f"accounts({acc['accountid']})", json={"statecode": 0, "statuscode": 2},
                 headers={"If-Match": "*"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "0x80040203"
    inactive = dv.get("accounts?$filter=statecode eq 1&$select=name").json()["value"]
    assert {"Proseware, Inc.", "Stateful"} <= {a["name"] for a in inactive}
    users = dv.get("systemusers?$filter=isdisabled eq false and islicensed eq true and "
                   "isintegrationuser eq false&$select=fullname").json()["value"]
    names = {u["fullname"] for u in users}
    assert {"Peter Saddow", "Jim Olive", "Alicia Thomber"} <= names
    assert "Otis Falls" not in names and "Sync Integration" not in names


def test_dv_contact_parent_contact_and_expand(dv: Api) -> None:
    boss = _new(dv, "contacts", {"firstname": "Big", "lastname": "Boss"})
    sub = _new(dv, "contacts", {"lastname": "Minion", "parentcustomerid_contact@odata.bind":
                                f"contacts({boss['contactid']})"})
    assert sub["_parentcustomerid_value"] == boss["contactid"] and sub["fullname"] == "Minion"
    r = dv.get(f"contacts({sub['contactid']})?$select=lastname&$expand="
               "parentcustomerid_contact($select=fullname),parentcustomerid_account")
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["parentcustomerid_contact"]["fullname"] == "Big Boss"
    assert doc["parentcustomerid_account"] is None
    r = dv.get("accounts?$filter=name eq 'Adatum Corporation'&$select=name"
               "&$expand=primarycontactid($select=fullname),ownerid")
    row = r.json()["value"][0]
    assert row["primarycontactid"]["fullname"] == "Robert Townes"
    assert row["ownerid"]["systemuserid"] == APP_USER_ID


def test_d25_dv_concurrency_limit(dv: Api, ep: dict[str, Any]) -> None:
    admin(ep, "dataverse", "PUT", "throttling", {"concurrent": 2})
    admin(ep, "dataverse", "PUT", "faults", {"latency_ms": 400})
    results: list[Any] = []

    def call() -> None:
        results.append(Api(dv.base, dv.token, dv.ca).get("WhoAmI"))

    try:
        threads = [threading.Thread(target=call) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        admin(ep, "dataverse", "DELETE", "faults")
        admin(ep, "dataverse", "PUT", "throttling", {"concurrent": 52})
    limited = [r for r in results if r.status_code == 429]
    assert limited and len(limited) <= 2
    assert limited[0].json()["error"] == {
        "code": "0x80072326",
        "message": "Number of concurrent requests exceeded the limit of 2."}


def test_dv_query_functions(dv: Api) -> None:
    r = dv.get("accounts?$select=name&$filter=Microsoft.Dynamics.CRM.In(PropertyName='name',"
               "PropertyValues=['Trey Research','Fourth Coffee'])")
    assert r.status_code == 200, r.text
    assert sorted(a["name"] for a in r.json()["value"]) == ["Fourth Coffee", "Trey Research"]
    r = dv.get("accounts?$select=name&$filter=Microsoft.Dynamics.CRM.In(PropertyName="
               "'customertypecode',PropertyValues=['11','1'])")
    assert sorted(a["name"] for a in r.json()["value"]) == ["Fabrikam, Inc.", "Northwind Traders"]
    r = dv.get("accounts?$filter=Microsoft.Dynamics.CRM.In(PropertyName='nosuch',"
               "PropertyValues=['x'])")
    assert r.status_code == 400 and r.json()["error"]["code"] == "0x80060888"
