"""D.13-D.14 and the other BC entities: JSON $batch, throttling, vendors, contacts,
salespeoplePurchasers, currencies, $metadata."""
from __future__ import annotations

from typing import Any

from .conftest import Api, admin


def test_d13_bc_batch(bc: Api, company: str) -> None:
    ops = [{"id": "r1", "method": "POST", "url": f"companies({company})/customers",
            "headers": {"Content-Type": "application/json"}, "body": {"displayName": "Batch A"}},
           {"id": "r2", "method": "GET",
            "url": f"companies({company})/customers?$filter=displayName eq 'Batch A'"},
           {"id": "r3", "method": "POST", "url": f"companies({company})/customers",
            "body": {"phoneNumber": "1"}},
           {"id": "r4", "method": "POST", "url": f"companies({company})/customers",
            "body": {"displayName": "Batch B"}}]
    r = bc.post("$batch", json={"requests": ops})
    assert r.status_code == 200
    res = r.json()["responses"]
    assert [x["id"] for x in res] == ["r1", "r2", "r3"]  # stops after the first failure
    assert res[0]["status"] == 201 and res[0]["headers"]["location"].startswith("https://")
    assert res[1]["body"]["value"][0]["displayName"] == "Batch A"
    assert res[2]["status"] == 400
    assert res[2]["body"]["error"]["code"] == "Application_DialogException"
    r = bc.post("$batch", json={"requests": ops}, headers={"Prefer": "odata.continue-on-error"})
    assert [x["status"] for x in r.json()["responses"]] == [201, 200, 400, 201]
    snap = [{"id": "s1", "method": "POST", "url": f"companies({company})/customers",
             "body": {"displayName": "Snapshot A"}},
            {"id": "s2", "method": "POST", "url": f"companies({company})/customers",
             "body": {"displayName": "X", "foo": 1}}]
    r = bc.post("$batch", json={"requests": snap}, headers={"Isolation": "snapshot"})
    assert [x["status"] for x in r.json()["responses"]] == [201, 400]
    found = bc.get(f"companies({company})/customers?$filter=displayName eq 'Snapshot A'")
    assert found.json()["value"] == []  # rolled back
    upd = r.json()["responses"][0]
    assert upd["body"]["displayName"] == "Snapshot A"
    r = bc.post("$batch", json={"requests": [ops[1]] * 101})
    assert r.status_code == 400 and r.json()["error"]["code"] == "BadRequest"
    r = bc.post("$batch", json={"requests": [{**ops[1], "atomicityGroup": "g1"}]})
    assert r.status_code == 400
    r = bc.post("$batch", data="not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400


def test_d14_bc_throttling(bc: Api, ep: dict[str, Any]) -> None:
    admin(ep, "business_central", "PUT", "throttling", {"requests": 2, "window_seconds": 60})
    try:
        codes = [bc.get("companies") for _ in range(3)]
        assert [c.status_code for c in codes] == [200, 200, 429]
        err = codes[2].json()["error"]
        assert err["code"] == "Application_TooManyRequests"
        assert err["message"].startswith("Too many requests reached. Actual (3). Maximum (2).")
        assert int(codes[2].headers["Retry-After"]) >= 1
    finally:
        admin(ep, "business_central", "PUT", "throttling", {"requests": 6000,
                                                            "window_seconds": 300})
    admin(ep, "business_central", "PUT", "faults", {"next": [503, 504], "retry_after": 7})
    first, second, third = (bc.get("companies") for _ in range(3))
    assert first.status_code == 503 and first.headers["Retry-After"] == "7"
    assert second.status_code == 504 and third.status_code == 200
    counters = admin(ep, "business_central", "GET", "requests").json()["requests"]
    assert any(c["status"] == 503 and c["count"] >= 1 for c in counters)


def test_bc_vendors_contacts_salespeople(cust: Api) -> None:
    v = cust.post("vendors", json={"displayName": "New Vendor", "blocked": "Payment",
                                   "currencyCode": "CAD"})
    assert v.status_code == 201
    body = v.json()
    assert body["number"].startswith("V") and body["blocked"] == "Payment"
    assert body["currencyCode"] == "CAD" and body["balance"] == 0
    assert list(body)[2:] == ["id", "number", "displayName", "addressLine1", "addressLine2",
                              "city", "state", "country", "postalCode", "phoneNumber", "email",
                              "website", "taxRegistrationNumber", "currencyId", "currencyCode",
                              "irs1099Code", "paymentTermsId", "paymentMethodId", "taxLiable",
                              "blocked", "balance", "lastModifiedDateTime"]
    company = cust.get("contacts?$filter=displayName eq 'Adatum Corporation'").json()["value"][0]
    assert company["type"] == "Company" and company["contactBusinessRelation"] == "Customer"
    p = cust.post("contacts", json={"displayName": "Pat Person", "type": "Person",
                                    "companyNumber": company["number"]}).json()
    assert p["companyName"] == "Adatum Corporation" and p["searchName"] == "PAT PERSON"
    assert p["contactBusinessRelation"] == "None" and p["number"].startswith("CT")
    sp = cust.get("salespeoplePurchasers?$filter=code eq 'PS'").json()["value"][0]
    assert sp["displayName"] == "Peter Saddow" and sp["blocked"] is False
    assert "commisionPercent" in sp
    new = cust.post("salespeoplePurchasers", json={"code": "zz", "displayName": "Zed"}).json()
    assert new["code"] == "ZZ"
    r = cust.post("customers", json={"displayName": "With SP", "salespersonCode": "ZZ"})
    assert r.status_code == 201
    cur = cust.get("currencies").json()["value"]
    assert {c["code"] for c in cur} >= {"EUR", "GBP", "CAD"} and "USD" not in {c["code"]
                                                                              for c in cur}
    assert cur[0]["amountDecimalPlaces"] == "2:2"
    assert cust.get("paymentTerms").status_code == 200
    assert cust.get("shipmentMethods").status_code == 200


def test_bc_metadata(bc: Api) -> None:
    r = bc.get("$metadata")
    assert r.status_code == 200
    assert '<EntityType Name="customer">' in r.text
    assert '<Property Name="displayName" Type="Edm.String" MaxLength="100"/>' in r.text
    assert '<Property Name="blocked" Type="Microsoft.NAV.customerBlocked"/>' in r.text
    assert '<Member Name="_x0020_" Value="0"/>' in r.text
    assert '<EntitySet Name="salespeoplePurchasers"' in r.text


def test_bc_top_across_pages_and_count_path(cust: Api) -> None:
    rows: list[str] = []
    url = "contacts?$top=5&$select=number"
    while url:
        doc = cust.get(url, headers={"Prefer": "odata.maxpagesize=2"}).json()
        rows += [r["number"] for r in doc["value"]]
        url = doc.get("@odata.nextLink")
    assert len(rows) == 5
    r = cust.get("customers/$count")
    assert r.status_code == 200 and int(r.text) >= 8
    nav = cust.get("customers?$filter=number eq '60000'").json()["value"][0]["id"]
    r = cust.get(f"customers({nav})/currency")
    assert r.status_code == 200 and r.json()["code"] == "EUR"


def test_bc_strict_delete_option(tmp_path: Any) -> None:
    from bcdv_emulators.testing import run_emulators

    from .conftest import get_token
    with run_emulators(tmp_path, seed="demo", bc_delete_requires_if_match=True,
                       bc_read_only="ignore") as ep:
        api = Api(f"{ep['business_central']['base_url']}/companies("
                  f"{ep['business_central']['company_id']})",
                  get_token(ep, ep["business_central"]["scope"]), ep["ca_bundle"])
        c = api.post("customers", json={"displayName": "Strict", "balanceDue": 99}).json()
        assert c["balanceDue"] == 0  # read-only ignored in this mode
        r = api.delete(f"customers({c['id']})")
        assert r.status_code == 400 and r.json()["error"]["code"] == "BadRequest_InvalidToken"
        assert api.delete(f"customers({c['id']})", headers={"If-Match": c["@odata.etag"]}
                          ).status_code == 204


def test_bc_metadata_matches_served_properties(bc: Api, cust: Api) -> None:
    import re
    xml = bc.get("$metadata").text
    for set_name, type_name in (("customers", "customer"), ("vendors", "vendor"),
                                ("contacts", "contact"), ("currencies", "currency"),
                                ("salespeoplePurchasers", "salespersonPurchaser"),
                                ("paymentTerms", "paymentTerm"),
                                ("shipmentMethods", "shipmentMethod")):
        body = re.search(rf'<EntityType Name="{type_name}">(.*?)</EntityType>', xml).group(1)
        declared = re.findall(r'<Property Name="(\w+)"', body)
        row = cust.get(f"{set_name}?$top=1").json()["value"][0]
        assert [k for k in row if not k.startswith("@")] == declared, set_name


def test_bc_customer_company_contact_follows(cust: Api) -> None:
    c = cust.post("customers", json={"displayName": "Related Co", "phoneNumber": "1"}).json()
    contact = cust.get("contacts?$filter=displayName eq 'Related Co'").json()["value"][0]
    assert contact["type"] == "Company" and contact["contactBusinessRelation"] == "Customer"
    assert contact["phoneNumber"] == "1" and contact["companyNumber"] == contact["number"]
    person = cust.post("contacts", json={"displayName": "Rel Person", "type": "Person",
                                         "companyNumber": contact["number"]}).json()
    cust.patch(f"customers({c['id']})", json={"displayName": "Related Co 2", "city": "Oslo"},
               headers={"If-Match": "*"})
    after = cust.get(f"contacts({contact['id']})").json()
    assert after["displayName"] == "Related Co 2" and after["city"] == "Oslo"
    assert cust.get(f"contacts({person['id']})").json()["companyName"] == "Related Co 2"
    cust.delete(f"customers({c['id']})")
    assert cust.get(f"contacts({contact['id']})").json()["contactBusinessRelation"] == "None"
    seeded = cust.get("customers?$filter=number eq '10000'").json()["value"][0]
    cust.patch(f"customers({seeded['id']})", json={"email": "new@adatum.example.com"},
               headers={"If-Match": "*"})
    adatum = cust.get("contacts?$filter=displayName eq 'Adatum Corporation'").json()["value"][0]
    assert adatum["email"] == "new@adatum.example.com"
