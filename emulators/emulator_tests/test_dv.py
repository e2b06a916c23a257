"""D.16-D.21: Dataverse basics, create, update/upsert, concurrency, lookups, query and paging."""
from __future__ import annotations

import re
import uuid
from typing import Any

from bcdv_emulators.seeds.dv_demo import APP_USER_ID, BASE_CURRENCY_ID, BU_ID

from .conftest import Api

DV_DT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


def _err(r: Any, status: int, code: str, message: str | None = None) -> None:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == code, err
    if message is not None:
        assert err["message"] == message, err["message"]


def test_d16_dv_basics(dv: Api, ep: dict[str, Any]) -> None:
    r = dv.get("WhoAmI")
    assert r.status_code == 200
    assert r.headers["OData-Version"] == "4.0"
    assert r.headers["Content-Type"].startswith("application/json; odata.metadata=minimal")
    doc = r.json()
    assert doc["@odata.context"] == (f"{ep['dataverse']['api_url']}/$metadata#"
                                     "Microsoft.Dynamics.CRM.WhoAmIResponse")
    assert doc["UserId"] == APP_USER_ID and doc["BusinessUnitId"] == BU_ID
    user = dv.get(f"systemusers({APP_USER_ID})").json()
    assert user["applicationid"] == ep["identity"]["client_id"] and user["accessmode"] == 4
    r = dv.get("accounts?$top=1")
    row = r.json()["value"][0]
    assert re.fullmatch(r'W/"\d+"', row["@odata.etag"])
    assert DV_DT.match(row["modifiedon"]) and DV_DT.match(row["createdon"])
    single = dv.get(f"accounts({row['accountid']})")
    assert single.headers["ETag"] == row["@odata.etag"]
    assert single.json()["@odata.context"].endswith("/$metadata#accounts/$entity")
    for h in ("x-ms-ratelimit-burst-remaining-xrm-requests",
              "x-ms-ratelimit-time-remaining-xrm-requests", "x-ms-dop-hint", "Date"):
        assert h in single.headers


def test_d17_dv_create(dv: Api) -> None:
    r = dv.post("accounts", json={"name": "Created A", "telephone1": "555 0001"})
    assert r.status_code == 204 and r.content == b""
    loc = r.headers["OData-EntityId"]
    assert re.fullmatch(rf"{re.escape(dv.base)}/accounts\([0-9a-f-]{{36}}\)", loc)
    own = str(uuid.uuid4())
    r = dv.post("accounts?$select=name,accountid", json={"accountid": own, "name": "Own Id"},
                headers={"Prefer": "return=representation"})
    assert r.status_code == 201
    assert r.headers["Preference-Applied"] == "return=representation"
    body = r.json()
    assert body["accountid"] == own and body["name"] == "Own Id"
    assert set(body) == {"@odata.context", "@odata.etag", "name", "accountid"}
    full = dv.get(f"accounts({own})").json()
    assert full["_modifiedby_value"] == APP_USER_ID and full["_createdby_value"] == APP_USER_ID
    assert full["_ownerid_value"] == APP_USER_ID and full["statecode"] == 0
    assert full["statuscode"] == 1
    _err(dv.post("accounts", json={"accountid": own, "name": "dup"}), 412, "0x80040237")
    _err(dv.post("accounts", json={"Name": "x"}), 400, "0x0",
         "An error occurred while validating input parameters: Microsoft.Crm.CrmException: "
         "Invalid property 'Name' was found in entity 'Microsoft.Dynamics.CRM.account'. ---> "
         "Microsoft.OData.ODataException: Does not support untyped value in non-open type.")
    _err(dv.post("accounts", json={"name": "x" * 161}), 400, "0x80044331",
         "A validation error occurred.  The length of the 'name' attribute of the 'account' "
         "entity exceeded the maximum allowed length of '160'.")
    r = dv.post("accounts", json={"name": "x", "customertypecode": 99})
    _err(r, 400, "0x80044331")
    assert "outside the valid range" in r.json()["error"]["message"]
    _err(dv.post("accounts", json={"accountid": "not-a-guid", "name": "x"}), 400, "0x0")
    r = dv.post("accounts", json={"name": "Money", "creditlimit": 1000},
                headers={"Prefer": "return=representation"})
    body = r.json()
    assert body["_transactioncurrencyid_value"] == BASE_CURRENCY_ID
    assert body["exchangerate"] == 1.0 and body["creditlimit_base"] == 1000.0


def test_d18_dv_update_and_upsert(dv: Api) -> None:
    missing = str(uuid.uuid4())
    r = dv.patch(f"accounts({missing})", json={"name": "nope"}, headers={"If-Match": "*"})
    _err(r, 404, "0x80040217", f"account With Id = {missing} Does Not Exist")
    r = dv.patch(f"accounts({missing})", json={"name": "Upserted"})
    assert r.status_code == 204
    assert r.headers["OData-EntityId"].endswith(f"accounts({missing})")
    assert dv.get(f"accounts({missing})").json()["name"] == "Upserted"
    r = dv.patch(f"accounts({missing})", json={"name": "Upserted 2"},
                 headers={"Prefer": "return=representation"})
    assert r.status_code == 200 and r.json()["name"] == "Upserted 2"
    new = str(uuid.uuid4())
    r = dv.patch(f"accounts({new})", json={"name": "Upserted 3"},
                 headers={"Prefer": "return=representation"})
    assert r.status_code == 201
    _err(dv.patch(f"accounts({new})", json={"name": "x"}, headers={"If-None-Match": "*"}),
         412, "0x80040237", "A record with matching key values already exists.")
    r = dv.patch(f"accounts({new})", json={"telephone1": "1"}, headers={"If-Match": "*"})
    assert r.status_code == 204
    r = dv.get(f"accounts({missing})", headers={"If-None-Match": dv.get(
        f"accounts({missing})").headers["ETag"]})
    assert r.status_code == 304


def test_d19_dv_optimistic_concurrency(dv: Api) -> None:
    r = dv.post("accounts", json={"name": "Versioned"}, headers={"Prefer": "return=representation"})
    acc = r.json()
    url = f"accounts({acc['accountid']})"
    r = dv.patch(url, json={"name": "V2"}, headers={"If-Match": acc["@odata.etag"]})
    assert r.status_code == 204
    after = dv.get(url).json()
    assert after["@odata.etag"] != acc["@odata.etag"]
    assert int(after["versionnumber"]) > int(acc["versionnumber"])
    msg = "The version of the existing record doesn't match the RowVersion property provided."
    _err(dv.patch(url, json={"name": "V3"}, headers={"If-Match": acc["@odata.etag"]}), 412,
         "0x80060882", msg)
    _err(dv.delete(url, headers={"If-Match": acc["@odata.etag"]}), 412, "0x80060882", msg)
    assert dv.delete(url, headers={"If-Match": after["@odata.etag"]}).status_code == 204
    _err(dv.get(url), 404, "0x80040217")


def test_d20_dv_lookups_and_annotations(dv: Api) -> None:
    parent = dv.post("accounts", json={"name": "Parent Co"},
                     headers={"Prefer": "return=representation"}).json()["accountid"]
    contact = dv.post("contacts", json={"firstname": "Ada", "lastname": "Lovelace",
                                        "parentcustomerid_account@odata.bind":
                                            f"/accounts({parent})"},
                      headers={"Prefer": "return=representation"}).json()
    assert contact["fullname"] == "Ada Lovelace"
    assert contact["_parentcustomerid_value"] == parent
    r = dv.post("accounts", headers={"Prefer": "return=representation,"
                                               'odata.include-annotations="*"'},
                json={"name": "Child Co", "customertypecode": 3, "creditlimit": 10000,
                      "parentaccountid@odata.bind": f"accounts({parent})",
                      "primarycontactid@odata.bind": f"/contacts({contact['contactid']})",
                      "ownerid@odata.bind": f"/systemusers({APP_USER_ID})",
                      "transactioncurrencyid@odata.bind":
                          f"/transactioncurrencies({BASE_CURRENCY_ID})"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["_parentaccountid_value"] == parent
    assert body["_primarycontactid_value"] == contact["contactid"]
    fv = "@OData.Community.Display.V1.FormattedValue"
    assert body["customertypecode" + fv] == "Customer"
    assert body["statecode" + fv] == "Active"
    assert body["creditlimit" + fv] == "$10,000.00"
    assert body["_parentaccountid_value" + fv] == "Parent Co"
    assert body["_primarycontactid_value@Microsoft.Dynamics.CRM.lookuplogicalname"] == "contact"
    assert body["_primarycontactid_value@Microsoft.Dynamics.CRM.associatednavigationproperty"] \
        == "primarycontactid"
    c = dv.get(f"contacts({contact['contactid']})?$select=_parentcustomerid_value",
               headers={"Prefer": 'odata.include-annotations="*"'}).json()
    assert c["_parentcustomerid_value@Microsoft.Dynamics.CRM.associatednavigationproperty"] \
        == "parentcustomerid_account"
    plain = dv.get(f"accounts({parent})").json()
    assert not any("@OData" in k for k in plain)
    dangling = str(uuid.uuid4())
    _err(dv.post("accounts", json={"name": "x", "primarycontactid@odata.bind":
                                   f"/contacts({dangling})"}), 404, "0x80040217",
         f"contact With Id = {dangling} Does Not Exist")
    _err(dv.post("accounts", json={"name": "x", "primarycontactid@odata.bind":
                                   f"/accounts({parent})"}), 400, "0x0")
    r = dv.get("accounts?$select=nosuch")
    _err(r, 400, "0x80060888", "Could not find a property named 'nosuch' on type "
                               "'Microsoft.Dynamics.CRM.account'.")
    _err(dv.get("accounts?$filter=nosuch eq 1"), 400, "0x80060888")


def test_d21_dv_query_and_paging(dv: Api) -> None:
    for i in range(7):
        dv.post("accounts", json={"name": f"Paged {i}", "address1_city": "Pageville"})
    ids: list[str] = []
    url = "accounts?$select=name&$filter=address1_city eq 'pageville'"
    pages = 0
    while url:
        r = dv.get(url, headers={"Prefer": "odata.maxpagesize=3"})
        assert r.status_code == 200, r.text
        assert r.headers["Preference-Applied"] == "odata.maxpagesize=3"
        doc = r.json()
        ids += [x["accountid"] for x in doc["value"]]
        url = doc.get("@odata.nextLink")
        pages += 1
        if url:
            assert "$skiptoken=%3Ccookie%20pagenumber%3D%22" in url
    assert pages == 3 and len(set(ids)) == 7
    r = dv.get("accounts?$filter=contains(name,'PAGED')&$top=2")
    assert len(r.json()["value"]) == 2 and "@odata.nextLink" not in r.json()
    _err(dv.get("accounts?$skip=1"), 400, "0x80060888")
    r = dv.get("accounts?$filter=startswith(name,'paged') and statecode eq 0&$count=true"
               "&$orderby=name desc&$select=name")
    doc = r.json()
    assert doc["@odata.count"] == 7
    assert [x["name"] for x in doc["value"]] == [f"Paged {i}" for i in range(6, -1, -1)]
    r = dv.get(f"accounts?$filter=_ownerid_value eq {APP_USER_ID} and "
               "modifiedon ge 2000-01-01T00:00:00Z&$select=name")
    assert r.status_code == 200 and len(r.json()["value"]) >= 7
    r = dv.get("accounts?$filter=not contains(name,'Paged') and customertypecode eq 11")
    assert [x["name"] for x in r.json()["value"]] == ["Fabrikam, Inc."]


def test_a_column_selected_twice_is_served_once(dv: Api) -> None:
    # The emulator serves a property named twice in $select once, in the order first named
    # (kept when its $select parsing was made linear; Learn, webapi/query/select-columns,
    # does not say what Dataverse does with a repeated name, only that it returns what is
    # selected, the primary key and the etag).
    doc = dv.get("accounts?$select=name,_ownerid_value,name,_ownerid_value&$top=1").json()
    assert doc["@odata.context"].endswith("#accounts(name,_ownerid_value)")
    row = doc["value"][0]
    assert set(row) == {"@odata.etag", "name", "_ownerid_value", "accountid"}
