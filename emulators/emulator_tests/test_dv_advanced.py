"""D.22-D.25: Dataverse alternate keys, $batch, bulk messages, change tracking, limits."""
from __future__ import annotations

import re
import uuid
from typing import Any
from urllib.parse import unquote

import pytest

from .conftest import Api, admin


def _err(r: Any, status: int, code: str, message: str | None = None) -> None:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == code, err
    if message is not None:
        assert err["message"] == message


@pytest.fixture(scope="module")
def keyed(ep: dict[str, Any]) -> None:
    r = admin(ep, "dataverse", "PUT", "keys", {"accounts": [["accountnumber"]]})
    assert r.status_code == 200


def test_d22_dv_alternate_keys(dv: Api, ep: dict[str, Any]) -> None:
    admin(ep, "dataverse", "PUT", "keys", {})
    r = dv.get("accounts(accountnumber='AK-1')")
    assert r.status_code == 400 and r.json()["error"]["code"] == "0x80060888"
    admin(ep, "dataverse", "PUT", "keys", {"accounts": [["accountnumber"]]})
    r = dv.patch("accounts(accountnumber='AK-1')", json={"name": "Alt Key One"})
    assert r.status_code == 204
    acc = dv.get("accounts(accountnumber='AK-1')").json()
    assert acc["name"] == "Alt Key One" and acc["accountnumber"] == "AK-1"
    r = dv.patch("accounts(accountnumber='AK-1')", json={"name": "Alt Key 1b"},
                 headers={"Prefer": "return=representation"})
    assert r.status_code == 200 and r.json()["accountid"] == acc["accountid"]
    r = dv.patch("accounts(accountnumber='O''Brien/1')", json={"name": "Quote"})
    assert r.status_code == 204
    assert dv.get("accounts(accountnumber='O''Brien/1')").json()["name"] == "Quote"
    _err(dv.post("accounts", json={"name": "dup", "accountnumber": "AK-1"}), 412, "0x80040237")
    c = dv.post("contacts", json={"lastname": "Keyed", "parentcustomerid_account@odata.bind":
                                  "/accounts(accountnumber='AK-1')"},
                headers={"Prefer": "return=representation"}).json()
    assert c["_parentcustomerid_value"] == acc["accountid"]
    assert dv.delete("accounts(accountnumber='AK-1')").status_code == 204
    _err(dv.get("accounts(accountnumber='AK-1')"), 404, "0x80040217")
    meta = dv.get("EntityDefinitions(LogicalName='account')?$expand=Keys").json()
    assert meta["Keys"][0]["KeyAttributes"] == ["accountnumber"]


def _batch(parts: list[str], boundary: str = "batch_AAA") -> str:
    return "".join(f"--{boundary}\r\n{p}\r\n" for p in parts) + f"--{boundary}--\r\n"


def _req(method: str, url: str, body: str = "", extra: str = "") -> str:
    head = (f"Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n{extra}"
            f"\r\n{method} {url} HTTP/1.1\r\n")
    if body:
        head += f"Content-Type: application/json; type=entry\r\n\r\n{body}"
    else:
        head += "\r\n"
    return head


def test_d23_dv_batch(dv: Api) -> None:
    cs = _batch([_req("POST", "/api/data/v9.2/contacts", '{"lastname":"Batchson"}',
                      "Content-ID: 1\r\n"),
                 _req("POST", "accounts", '{"name":"Batch Co","primarycontactid@odata.bind":'
                                          '"$1"}', "Content-ID: 2\r\n")],
                "changeset_BBB")
    body = _batch([f"Content-Type: multipart/mixed; boundary=changeset_BBB\r\n\r\n{cs}",
                   _req("GET", "accounts?$select=name&$filter=name eq 'Batch Co'")])
    r = dv.post("$batch", data=body.encode(),
                headers={"Content-Type": "multipart/mixed; boundary=batch_AAA"})
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("multipart/mixed; boundary=batchresponse_")
    assert r.text.count("HTTP/1.1 204 No Content") == 2
    assert "changesetresponse_" in r.text and "Content-ID: 2" in r.text
    assert '"name":"Batch Co"' in r.text
    acc = dv.get("accounts?$filter=name eq 'Batch Co'").json()["value"][0]
    assert acc["_primarycontactid_value"] is not None
    # a failing change set rolls back; without continue-on-error the batch stops there
    cs = _batch([_req("POST", "accounts", '{"name":"Rolled Back"}', "Content-ID: 1\r\n"),
                 _req("POST", "accounts", '{"nosuch":1}', "Content-ID: 2\r\n")], "changeset_C")
    body = _batch([f"Content-Type: multipart/mixed; boundary=changeset_C\r\n\r\n{cs}",
                   _req("POST", "accounts", '{"name":"After Failure"}')])
    r = dv.post("$batch", data=body, headers={"Content-Type": "multipart/mixed; "
                                                             "boundary=batch_AAA"})
    assert r.status_code == 400 and "HTTP/1.1 400" in r.text and "0x0" in r.text
    assert dv.get("accounts?$filter=name eq 'Rolled Back'").json()["value"] == []
    assert dv.get("accounts?$filter=name eq 'After Failure'").json()["value"] == []
    r = dv.post("$batch", data=body, headers={"Content-Type": "multipart/mixed; "
                                                             "boundary=batch_AAA",
                                              "Prefer": "odata.continue-on-error"})
    assert r.status_code == 200 and "HTTP/1.1 400" in r.text and "HTTP/1.1 204" in r.text
    assert len(dv.get("accounts?$filter=name eq 'After Failure'").json()["value"]) == 1
    too_many = _batch([_req("GET", "WhoAmI")] * 1001)
    r = dv.post("$batch", data=too_many, headers={"Content-Type": "multipart/mixed; "
                                                                 "boundary=batch_AAA"})
    assert r.status_code == 400


def test_d24_dv_bulk(dv: Api, keyed: None) -> None:
    t = "Microsoft.Dynamics.CRM.account"
    r = dv.post("accounts/Microsoft.Dynamics.CRM.CreateMultiple",
                json={"Targets": [{"@odata.type": t, "name": f"Bulk {i}"} for i in range(5)]})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["@odata.context"].endswith("$metadata#Microsoft.Dynamics.CRM."
                                          "CreateMultipleResponse")
    ids = doc["Ids"]
    assert len(ids) == 5
    assert dv.get(f"accounts({ids[3]})").json()["name"] == "Bulk 3"
    r = dv.post("accounts/Microsoft.Dynamics.CRM.UpdateMultiple",
                json={"Targets": [{"@odata.type": t, "accountid": i, "telephone1": "42"}
                                  for i in ids]})
    assert r.status_code == 204
    assert dv.get(f"accounts({ids[0]})").json()["telephone1"] == "42"
    missing = str(uuid.uuid4())
    r = dv.post("accounts/Microsoft.Dynamics.CRM.UpdateMultiple",
                json={"Targets": [{"@odata.type": t, "accountid": ids[0], "telephone1": "43"},
                                  {"@odata.type": t, "accountid": missing, "name": "x"}]})
    _err(r, 404, "0x80040217")
    assert dv.get(f"accounts({ids[0]})").json()["telephone1"] == "42"  # rolled back
    r = dv.post("accounts/Microsoft.Dynamics.CRM.UpsertMultiple", json={"Targets": [
        {"@odata.type": t, "@odata.id": "accounts(accountnumber='UP-1')", "name": "Up 1"},
        {"@odata.type": t, "@odata.id": f"accounts({ids[1]})", "name": "Up 2"}]})
    # 204 and no body: the Web API does not return UpsertMultipleResponse (Learn:
    # webapi/reference/upsertmultiple).
    assert r.status_code == 204 and r.content == b"", r.text
    assert dv.get("accounts(accountnumber='UP-1')").json()["name"] == "Up 1"
    assert dv.get(f"accounts({ids[1]})").json()["name"] == "Up 2"
    r = dv.post("accounts/Microsoft.Dynamics.CRM.CreateMultiple",
                json={"Targets": [{"name": "no type"}]})
    _err(r, 400, "0x80040203")
    r = dv.post("accounts/Microsoft.Dynamics.CRM.CreateMultiple",
                json={"Targets": [{"@odata.type": t, "name": "ok"},
                                  {"@odata.type": t, "name": "x" * 200}]})
    _err(r, 400, "0x80044331")
    assert dv.get("accounts?$filter=name eq 'ok'").json()["value"] == []


def test_d25_dv_change_tracking(dv: Api) -> None:
    r = dv.get("contacts?$select=fullname", headers={"Prefer": "odata.track-changes"})
    assert r.status_code == 200
    assert "odata.track-changes" in r.headers["Preference-Applied"]
    link = r.json()["@odata.deltaLink"]
    token = unquote(link.split("$deltatoken=")[1])
    assert re.fullmatch(r"\d+!\d{2}/\d{2}/\d{4} \d{2}:\d{2}:\d{2}", token)
    r = dv.get(link)
    assert r.json()["value"] == []
    assert r.json()["@odata.context"].endswith("$metadata#contacts(fullname)/$delta")
    new = dv.post("contacts", json={"lastname": "Delta"},
                  headers={"Prefer": "return=representation"}).json()
    old = dv.get("contacts?$filter=lastname eq 'Chen'").json()["value"][0]
    assert dv.delete(f"contacts({old['contactid']})").status_code == 204
    doc = dv.get(link).json()
    rows = {x.get("contactid") or x.get("id"): x for x in doc["value"]}
    assert rows[new["contactid"]]["fullname"] == "Delta"
    assert rows[old["contactid"]] == {"@odata.context": f"{dv.base}/$metadata#contacts/"
                                                        "$deletedEntity",
                                      "id": old["contactid"], "reason": "deleted"}
    assert dv.get(doc["@odata.deltaLink"]).json()["value"] == []
    r = dv.get("contacts?$filter=lastname eq 'x'", headers={"Prefer": "odata.track-changes"})
    assert r.status_code == 400
    assert r.json()["error"]["message"] == ('The "$filter" query parameter isn\'t supported '
                                            'when Change Tracking is enabled.')
    r = dv.get("contacts?$deltatoken=" + "1000%2101%2F01%2F2020%2000%3A00%3A00")
    assert r.status_code == 400  # older than 7 days


def test_d25_dv_service_protection(dv: Api, ep: dict[str, Any]) -> None:
    admin(ep, "dataverse", "PUT", "throttling", {"requests": 3, "window_seconds": 60})
    try:
        codes = [dv.get("WhoAmI") for _ in range(5)]
        assert [c.status_code for c in codes[:3]] == [200, 200, 200]
        r = codes[3]
        _err(r, 429, "0x80072322", "Number of requests exceeded the limit of 3 over time "
                                   "window of 60 seconds.")
        assert int(r.headers["Retry-After"]) >= 1
        assert codes[2].headers["x-ms-ratelimit-burst-remaining-xrm-requests"] == "0"
    finally:
        admin(ep, "dataverse", "PUT", "throttling", {"requests": 6000, "window_seconds": 300})


def test_dv_metadata_consistent_with_data(dv: Api) -> None:
    r = dv.get("$metadata")
    assert r.status_code == 200 and "<EntityType Name=\"account\">" in r.text
    assert '<Property Name="name" Type="Edm.String" MaxLength="160"/>' in r.text
    assert '<Property Name="_primarycontactid_value" Type="Edm.Guid"/>' in r.text
    attrs = dv.get("EntityDefinitions(LogicalName='account')/Attributes").json()["value"]
    by_name = {a["LogicalName"]: a for a in attrs}
    assert by_name["name"]["MaxLength"] == 160 and by_name["name"]["AttributeType"] == "String"
    assert by_name["customertypecode"]["AttributeType"] == "Picklist"
    assert by_name["statecode"]["AttributeType"] == "State"
    assert by_name["primarycontactid"]["Targets"] == ["contact"]
    row = dv.get("accounts?$top=1").json()["value"][0]
    served = {k for k in row if not k.startswith("@")}
    declared = {a["LogicalName"] if a["AttributeType"] not in ("Lookup", "Owner")
                else f"_{a['LogicalName']}_value" for a in attrs}
    assert served == declared
    tracked = dv.get("EntityDefinitions?$select=LogicalName&$filter=ChangeTrackingEnabled eq "
                     "true").json()["value"]
    assert {"account", "contact"} <= {t["LogicalName"] for t in tracked}


def test_d25_dv_execution_time_limit(dv: Api, ep: dict[str, Any]) -> None:
    admin(ep, "dataverse", "PUT", "throttling", {"execution_ms": 1, "window_seconds": 60})
    admin(ep, "dataverse", "PUT", "faults", {"latency_ms": 20})
    try:
        first, second = dv.get("WhoAmI"), dv.get("WhoAmI")
    finally:
        admin(ep, "dataverse", "DELETE", "faults")
        admin(ep, "dataverse", "PUT", "throttling", {"execution_ms": 1_200_000,
                                                     "window_seconds": 300})
    assert first.status_code == 200
    _err(second, 429, "0x80072321", "Combined execution time of incoming requests exceeded "
                                    "limit of 1 milliseconds over time window of 60 seconds. "
                                    "Decrease number of concurrent requests or reduce the "
                                    "duration of requests and try again later.")
    assert int(second.headers["Retry-After"]) >= 1
