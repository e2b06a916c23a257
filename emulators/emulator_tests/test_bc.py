"""D.4-D.12: Business Central routing, envelopes, shapes, CRUD, concurrency, filters, paging."""
from __future__ import annotations

import base64
import re
from datetime import datetime
from typing import Any

from bcdv_emulators.config import TENANT_DOMAIN, TENANT_ID

from .conftest import Api

GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
BC_DT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,2}[1-9]|\.[1-9]|\.\d[1-9])?Z$")
CUSTOMER_PROPS = ["id", "number", "displayName", "type", "addressLine1", "addressLine2", "city",
                  "state", "country", "postalCode", "phoneNumber", "email", "website",
                  "salespersonCode", "balanceDue", "creditLimit", "taxLiable", "taxAreaId",
                  "taxAreaDisplayName", "taxRegistrationNumber", "currencyId", "currencyCode",
                  "paymentTermsId", "shipmentMethodId", "paymentMethodId", "blocked",
                  "lastModifiedDateTime"]


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _err(r: Any, status: int, code: str, message: str | None = None) -> None:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == code, err
    if message is not None:
        assert err["message"].startswith(message + "  CorrelationId:  "), err["message"]


def test_d04_bc_routing(ep: dict[str, Any], bc: Api, company: str) -> None:
    r = bc.get("companies")
    assert r.status_code == 200
    row = r.json()["value"][0]
    assert list(row)[1:] == ["id", "systemVersion", "timestamp", "name", "displayName",
                             "businessProfileId", "systemCreatedAt", "systemCreatedBy",
                             "systemModifiedAt", "systemModifiedBy"]
    assert row["id"] == company and row["name"] == "CRONUS USA, Inc."
    origin = bc.base.split("/v2.0/")[0]
    for base in (f"{origin}/v2.0/Production/api/v2.0", f"{origin}/v2.0/{TENANT_DOMAIN}/"
                 "production/api/v2.0", f"{origin}/v2.0/{TENANT_ID}/Production/api/v2.0"):
        r = Api(base, bc.token, bc.ca).get(f"companies({company})/customers?$top=1")
        assert r.status_code == 200, base
        assert r.json()["@odata.context"].startswith(base + "/$metadata#")
    r = Api(f"{origin}/v2.0/{TENANT_ID}/Sandbox/api/v2.0", bc.token, bc.ca).get("companies")
    assert r.status_code == 404
    assert r.text == ('<error xmlns="http://docs.oasis-open.org/odata/ns/metadata"><code>'
                      'NoEnvironment</code><message>Environment does not exist.</message>'
                      '</error>')
    by_param = bc.get(f"customers?company={company}&$top=1")
    assert by_param.status_code == 200 and len(by_param.json()["value"]) == 1
    _err(bc.post("companies", json={"name": "x"}), 405, "BadRequest_MethodNotAllowed")
    _err(bc.get("companies(00000000-0000-0000-0000-000000000001)/customers"), 404,
         "BadRequest_ResourceNotFound", "Resource not found for the segment 'companies'.")
    _err(bc.get("customers"), 400, "Internal_CompanyNotFound")


def test_d05_bc_envelopes(bc: Api, cust: Api, company: str) -> None:
    r = cust.get("customers")
    assert r.headers["Content-Type"] == ("application/json; odata.metadata=minimal; "
                                         "odata.streaming=true")
    assert r.headers["OData-Version"] == "4.0" and GUID.match(r.headers["request-id"])
    assert r.headers["Date"].endswith(" GMT")
    doc = r.json()
    assert doc["@odata.context"] == f"{bc.base}/$metadata#companies({company})/customers"
    for row in doc["value"]:
        tag = row["@odata.etag"]
        assert tag.startswith('W/"') and tag.endswith('"')
        raw = base64.b64decode(tag[3:-1]).decode()
        assert re.fullmatch(r"'(\d+);(\d+);00;'", raw)
        n, digits = raw[1:].split(";")[:2]
        assert int(n) == len(digits) - 1
    one = cust.get(f"customers({doc['value'][0]['id']})").json()
    assert one["@odata.context"] == f"{bc.base}/$metadata#companies({company})/customers/$entity"
    assert one["@odata.etag"] == doc["value"][0]["@odata.etag"]


def test_d06_bc_field_shapes(cust: Api) -> None:
    rows = cust.get("customers").json()["value"]
    by_no = {r["number"]: r for r in rows}
    adatum = by_no["10000"]
    assert list(adatum)[1:] == CUSTOMER_PROPS
    assert adatum["blocked"] == "_x0020_" and by_no["70000"]["blocked"] == "All"
    assert adatum["currencyId"] == "00000000-0000-0000-0000-000000000000"
    assert adatum["currencyCode"] == "USD"
    assert by_no["60000"]["currencyCode"] == "EUR" and GUID.match(by_no["60000"]["currencyId"])
    assert isinstance(adatum["creditLimit"], (int, float)) and adatum["taxLiable"] is True
    assert adatum["addressLine2"] == "" and adatum["taxAreaDisplayName"] == ""
    assert BC_DT.match(adatum["lastModifiedDateTime"])
    contact = cust.get("contacts?$filter=type eq 'Person'&$top=1").json()["value"][0]
    assert contact["lastInteractionDate"] == "0001-01-01"
    r = cust.patch(f"customers({adatum['id']})", headers={"If-Match": "*"},
                   json={"balanceDue": 5})
    _err(r, 400, "BadRequest_InvalidOperation")


def test_d07_bc_create(bc: Api, cust: Api, company: str) -> None:
    r = cust.post("customers", json={"displayName": "Northwind Test", "phoneNumber": "555",
                                     "currencyCode": "GBP", "country": "gb"})
    assert r.status_code == 201
    body = r.json()
    assert r.headers["Location"] == f"{bc.base}/companies({company})/customers({body['id']})"
    assert re.fullmatch(r"C\d{5}", body["number"]) and body["country"] == "GB"
    assert body["currencyCode"] == "GBP" and GUID.match(body["currencyId"])
    assert body["@odata.etag"] and BC_DT.match(body["lastModifiedDateTime"])
    assert list(body)[2:] == CUSTOMER_PROPS
    _err(cust.post("customers", json={"phoneNumber": "1"}), 400, "Application_DialogException",
         'A "displayName" must be provided.')
    _err(cust.post("customers", json={"displayName": "X", "currencyCode": "XXX"}), 400,
         "Application_DialogException", 'The "currencyCode" does not match to a Currency.')
    _err(cust.post("customers", json={"displayName": "X",
                                      "paymentTermsId": "00000000-0000-0000-0000-000000000009"}),
         400, "Application_DialogException",
         'The "paymentTermsId" does not match to a Payment Term.')
    _err(cust.post("customers", json={"displayName": "X" * 101}), 400,
         "Application_StringExceededLength",
         "The length of the string is 101, but it must be less than or equal to 100 characters."
         f" Value: {'X' * 101}")
    _err(cust.post("customers", json={"displayName": "X", "foo": 1}), 400, "BadRequest",
         "The property 'foo' does not exist on type 'Microsoft.NAV.customer'. Make sure to only "
         "use property names that are defined by the type.")
    _err(cust.post("customers", json={"displayName": "X", "blocked": "Nope"}), 400,
         "Unknown")  # use-odata-batch.md: "'X' is not an option. The existing options are: .."
    _err(cust.post("customers", json={"displayName": "X", "number": "10000"}), 409,
         "Internal_EntityWithSameKeyExists")
    _err(cust.post("customers", json={"displayName": "X", "salespersonCode": "ZZ"}), 400,
         "Internal_InvalidTableRelation")


def test_d08_bc_read_missing(cust: Api) -> None:
    _err(cust.get("customers(00000000-0000-0000-0000-00000000abcd)"), 404,
         "BadRequest_ResourceNotFound", "Resource not found for the segment 'customers'.")


def test_d09_bc_patch_concurrency(cust: Api) -> None:
    created = cust.post("customers", json={"displayName": "Etag Test"}).json()
    url = f"customers({created['id']})"
    _err(cust.patch(url, json={"city": "X"}), 400, "BadRequest_InvalidToken",
         "Could not validate the client concurrency token required by the service. Please "
         "provide a valid token in the client request.")
    _err(cust.patch(url, headers={"If-Match": 'W/"garbage"'}, json={"city": "X"}), 400,
         "BadRequest_InvalidToken")
    r = cust.patch(url, headers={"If-Match": created["@odata.etag"]}, json={"city": "Oslo"})
    assert r.status_code == 200
    updated = r.json()
    assert updated["city"] == "Oslo" and updated["displayName"] == "Etag Test"
    assert updated["@odata.etag"] != created["@odata.etag"]
    assert _ts(updated["lastModifiedDateTime"]) >= _ts(created["lastModifiedDateTime"])
    _err(cust.patch(url, headers={"If-Match": created["@odata.etag"]}, json={"city": "Y"}), 409,
         "Request_EntityChanged", "Another user has already changed the record.")
    r = cust.patch(url, headers={"If-Match": "*"}, json={"city": "Bergen"})
    assert r.status_code == 200 and r.json()["city"] == "Bergen"
    _err(cust.patch(url, headers={"If-Match": "*"}, json={"displayName": " "}), 400,
         "Application_DialogException", 'The blank "displayName" is not allowed.')


def test_d10_bc_delete(cust: Api) -> None:
    a = cust.post("customers", json={"displayName": "Delete A"}).json()
    b = cust.post("customers", json={"displayName": "Delete B"}).json()
    cust.patch(f"customers({a['id']})", headers={"If-Match": "*"}, json={"city": "Z"})
    _err(cust.delete(f"customers({a['id']})", headers={"If-Match": a["@odata.etag"]}), 409,
         "Request_EntityChanged")
    r = cust.delete(f"customers({a['id']})", headers={"If-Match": "*"})
    assert r.status_code == 204 and r.content == b""
    assert cust.get(f"customers({a['id']})").status_code == 404
    assert cust.delete(f"customers({b['id']})").status_code == 204  # no If-Match: accepted


def test_d11_bc_filtering(cust: Api) -> None:
    def numbers(flt: str, extra: str = "") -> list[str]:
        r = cust.get(f"customers?$filter={flt}&$select=number{extra}")
        assert r.status_code == 200, r.text
        return sorted(x["number"] for x in r.json()["value"])

    assert numbers("number eq '10000'") == ["10000"]
    assert numbers("number ge '70000' and number lt '90000'") == ["70000", "80000"]
    assert numbers("number eq '10000' or number eq '20000'") == ["10000", "20000"]
    assert numbers("startswith(displayName,'Adatum')") == ["10000"]
    assert numbers("contains(displayName,'Ski')") == ["40000"]
    assert numbers("contains(displayName,'ski')") == []
    r = cust.get("customers?$filter=contains(tolower(displayName),'ski')")
    assert r.status_code == 400  # nested functions need $schemaversion=2.1
    assert numbers("contains(tolower(displayName),'ski')", "&$schemaversion=2.1") == ["40000"]
    assert numbers("number in ('10000','20000')", "&$schemaversion=2.1") == ["10000", "20000"]
    assert numbers("tolower(displayName) eq 'trey research'") == ["20000"]
    assert numbers("endswith(displayName,'Research')") == ["20000"]
    assert numbers("blocked eq 'All'") == ["70000"]
    assert "70000" not in numbers("blocked eq ' '") and "10000" in numbers("blocked eq ' '")
    assert numbers("blocked eq ' '") == numbers("blocked eq '_x0020_'")
    assert numbers("lastModifiedDateTime gt 2100-01-01T00:00:00Z") == []
    assert "10000" in numbers("lastModifiedDateTime ge 2026-01-01T00:00:00.000Z")
    cur = cust.get("customers?$filter=number eq '60000'").json()["value"][0]["currencyId"]
    assert numbers(f"currencyId eq {cur}") == ["60000"]
    assert numbers("creditLimit gt 49999 and number lt '90000'") == ["10000", "50000"]
    r = cust.get("customers?$filter=foo eq 1")
    _err(r, 400, "BadRequest", "Could not find a property named 'foo' on type "
                               "'Microsoft.NAV.customer'.")
    r = cust.get("customers?$filter=number eq '10000' or city eq 'Miami'")
    # odata-known-limitations.md; live tenants answer 501 BadRequest_MethodNotImplemented
    _err(r, 501, "BadRequest_MethodNotImplemented",
         "The 'OR' operator is not supported on distinct fields on an OData filter.")
    assert cust.get("customers?$filter=number eq").status_code == 400
    r = cust.get("customers?$select=number,displayName&$orderby=displayName desc&$top=2"
                 "&$skip=1&$count=true")
    doc = r.json()
    assert doc["@odata.count"] >= 8 and len(doc["value"]) == 2
    assert list(doc["value"][0]) == ["@odata.etag", "number", "displayName"]
    assert doc["@odata.context"].endswith("/customers(number,displayName)")
    names = [x["displayName"] for x in cust.get("customers?$orderby=displayName desc")
             .json()["value"]]
    assert doc["value"][0]["displayName"] == names[1]
    expanded = cust.get("customers?$filter=number eq '60000'&$expand=currency").json()
    assert expanded["value"][0]["currency"]["code"] == "EUR"


def test_d12_bc_paging(cust: Api) -> None:
    for i in range(7):
        cust.post("vendors", json={"displayName": f"Paging Vendor {i}", "city": "Pagetown"})
    seen: list[str] = []
    url = "vendors?$filter=city eq 'Pagetown'&$select=id,displayName"
    pages = 0
    while url:
        r = cust.get(url, headers={"Prefer": "odata.maxpagesize=3"})
        assert r.status_code == 200, r.text
        doc = r.json()
        seen += [x["id"] for x in doc["value"]]
        url = doc.get("@odata.nextLink")
        pages += 1
        if url:
            assert "aid=FIN" in url and f"$skiptoken={doc['value'][-1]['id']}" in url
            assert "city" in url and url.startswith("https://")
    assert pages == 3 and len(seen) == 7 and seen == sorted(seen)
    r = cust.get("vendors", headers={"Prefer": "odata.maxpagesize=0"})
    assert r.status_code == 400
