"""Dataverse Web API v9.2 behaviours the sync engine depends on, checked against the target.

Each test creates what it needs (names from the ``name`` fixture) and deletes it; none needs
the emulators' admin API, so the module also runs against a real tenant.
"""
from __future__ import annotations

import uuid
from typing import Any

from .wire import Api, error_of

ACCOUNT = "Microsoft.Dynamics.CRM.account"
PAGE_2 = {"Prefer": "odata.maxpagesize=2"}


def _accounts(dv: Api, created: Any, name: str, n: int) -> list[str]:
    """``n`` accounts named ``<name>-<i>`` (registered for deletion); their ids."""
    ids = []
    for i in range(n):
        r = dv.post("accounts", json={"name": f"{name}-{i}"})
        assert r.status_code == 204, r.text
        ids.append(r.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")"))
        created.add(dv, f"accounts({ids[-1]})")
    return ids


def _pages(dv: Api, url: str, headers: dict[str, str]) -> list[dict[str, Any]]:
    """Every page of a paged read, following @odata.nextLink verbatim."""
    pages: list[dict[str, Any]] = []
    next_url: str | None = url
    while next_url:
        r = dv.get(next_url, headers=headers)
        assert r.status_code == 200, r.text
        pages.append(r.json())
        next_url = pages[-1].get("@odata.nextLink")
        assert len(pages) < 10_000, "paging loop"
    return pages


def test_upsert_multiple_answers_204_without_a_body(dv: Api, created: Any, name: str) -> None:
    """https://learn.microsoft.com/power-apps/developer/data-platform/webapi/reference/upsertmultiple
    "The UpsertMultiple action returns 204 NoContent. The UpsertMultipleResponse complex type
    is not returned." (one target created, one updated: the answer says neither)."""
    existing = _accounts(dv, created, name, 1)[0]
    new = str(uuid.uuid4())
    created.add(dv, f"accounts({new})")
    r = dv.post("accounts/Microsoft.Dynamics.CRM.UpsertMultiple", json={"Targets": [
        {"@odata.type": ACCOUNT, "accountid": existing, "name": f"{name}-upd"},
        {"@odata.type": ACCOUNT, "@odata.id": f"accounts({new})", "name": f"{name}-new"}]})
    assert r.status_code == 204, r.text
    assert r.content == b""
    assert dv.get(f"accounts({existing})?$select=name").json()["name"] == f"{name}-upd"
    assert dv.get(f"accounts({new})?$select=name").json()["name"] == f"{name}-new"


def test_create_multiple_answers_200_with_ids_and_update_multiple_204(
        dv: Api, created: Any, name: str) -> None:
    """https://learn.microsoft.com/power-apps/developer/data-platform/bulk-operations
    CreateMultiple: 200 + CreateMultipleResponse ``Ids`` in target order; UpdateMultiple:
    204 No Content."""
    r = dv.post("accounts/Microsoft.Dynamics.CRM.CreateMultiple", json={"Targets": [
        {"@odata.type": ACCOUNT, "name": f"{name}-{i}"} for i in range(2)]})
    assert r.status_code == 200, r.text
    doc = r.json()
    ids = doc["Ids"]
    for i in ids:
        created.add(dv, f"accounts({i})")
    assert doc["@odata.context"].endswith("$metadata#Microsoft.Dynamics.CRM."
                                          "CreateMultipleResponse")
    assert [dv.get(f"accounts({i})?$select=name").json()["name"] for i in ids] == \
        [f"{name}-0", f"{name}-1"]
    r = dv.post("accounts/Microsoft.Dynamics.CRM.UpdateMultiple", json={"Targets": [
        {"@odata.type": ACCOUNT, "accountid": ids[0], "telephone1": "42"}]})
    assert r.status_code == 204 and r.content == b"", r.text


def test_top_is_ignored_with_maxpagesize(dv: Api, created: Any, name: str) -> None:
    """https://learn.microsoft.com/power-apps/developer/data-platform/webapi/query/page-results
    "Don't use $top with the Prefer: odata.maxpagesize request header. If you include both,
    $top is ignored." ($top alone truncates, without a nextLink.)"""
    _accounts(dv, created, name, 3)
    query = f"accounts?$select=name&$filter=startswith(name,'{name}')&$orderby=name"
    alone = dv.get(f"{query}&$top=1")
    assert [x["name"] for x in alone.json()["value"]] == [f"{name}-0"]
    assert "@odata.nextLink" not in alone.json()
    pages = _pages(dv, f"{query}&$top=1", PAGE_2)
    assert [[x["name"] for x in p["value"]] for p in pages] == \
        [[f"{name}-0", f"{name}-1"], [f"{name}-2"]]


def test_change_tracking_pages_with_next_links_and_a_delta_link_on_the_last_page(
        dv: Api, created: Any, name: str) -> None:
    """https://learn.microsoft.com/power-apps/developer/data-platform/use-change-tracking-synchronize-data-external-systems
    and .../webapi/query/page-results: a track-changes read is paged like any query
    (odata.maxpagesize, @odata.nextLink), the deltaLink comes on the last page; a delta read
    returns changed rows and ``$deletedEntity`` rows, paged the same way."""
    tracked = {"Prefer": "odata.track-changes,odata.maxpagesize=5000"}
    first = _pages(dv, "accounts?$select=name", tracked)
    assert all("@odata.deltaLink" not in p for p in first[:-1])
    delta_link = first[-1]["@odata.deltaLink"]
    ids = _accounts(dv, created, name, 3)
    assert dv.delete(f"accounts({ids[2]})").status_code == 204
    pages = _pages(dv, delta_link, {"Prefer": "odata.track-changes,odata.maxpagesize=1"})
    assert len(pages) >= 3
    for p in pages[:-1]:
        assert len(p["value"]) == 1 and "@odata.deltaLink" not in p
    assert "@odata.deltaLink" in pages[-1]
    rows = [x for p in pages for x in p["value"]]
    changed = [x["accountid"] for x in rows if "accountid" in x]
    deleted = [x["id"] for x in rows if x.get("reason") == "deleted"]
    assert set(ids[:2]) <= set(changed) and ids[2] in deleted
    assert pages[0]["@odata.context"].endswith("/$delta")


def test_count_with_a_delta_token_counts_the_changes(dv: Api, created: Any, name: str) -> None:
    """https://learn.microsoft.com/power-apps/developer/data-platform/use-change-tracking-synchronize-data-external-systems
    "You can add $count to the delta link ... to get the number of changes made.\""""
    first = _pages(dv, "accounts?$select=name",
                   {"Prefer": "odata.track-changes,odata.maxpagesize=5000"})
    token = first[-1]["@odata.deltaLink"].split("$deltatoken=", 1)[1]
    _accounts(dv, created, name, 2)
    changes = [x for p in _pages(dv, first[-1]["@odata.deltaLink"], {}) for x in p["value"]]
    r = dv.get(f"accounts/$count?$deltatoken={token}")
    assert r.status_code == 200, r.text
    assert int(r.text) == len(changes) >= 2


def test_unknown_entity_set_is_404_0x8006088a(dv: Api) -> None:
    """https://learn.microsoft.com/troubleshoot/power-platform/power-apps/web-api-client-errors
    (Resource not found for the segment): entity set names are case-sensitive."""
    r = dv.get("Account")
    assert r.status_code == 404
    assert error_of(r) == {"code": "0x8006088a",
                           "message": "Resource not found for the segment 'Account'."}


def test_unknown_select_property_is_400(dv: Api) -> None:
    """https://learn.microsoft.com/troubleshoot/power-platform/power-apps/web-api-client-errors
    (Could not find a property named ...). The page shows code 0x0; responses recorded in
    2026 carry 0x80060888, which the emulator answers."""
    r = dv.get("accounts?$select=Name")
    assert r.status_code == 400
    err = error_of(r)
    assert err["message"] == f"Could not find a property named 'Name' on type '{ACCOUNT}'."
    assert err["code"] in ("0x80060888", "0x0")


def test_bind_to_a_lookup_name_is_a_payload_error(dv: Api, created: Any, name: str) -> None:
    """https://learn.microsoft.com/troubleshoot/power-platform/power-apps/web-api-client-errors
    (Error identified in Payload provided by the user for Entity): ``parentcustomerid`` is a
    lookup column, not a navigation property (``parentcustomerid_account`` is)."""
    r = dv.post("contacts", json={"lastname": name, "parentcustomerid@odata.bind":
                                  f"accounts({uuid.uuid4()})"})
    if r.status_code == 204:
        created.add(dv, r.headers["OData-EntityId"].rsplit("/", 1)[1])
    assert r.status_code == 400
    err = error_of(r)
    assert err["code"] == "0x80048d19"
    assert err["message"].startswith("Error identified in Payload provided by the user for "
                                      "Entity :'contacts'")
    assert ("InnerException : Microsoft.OData.ODataException: An undeclared property "
            "'parentcustomerid' which only has property annotations in the payload but no "
            "property value was found in the payload.") in err["message"]


def test_undefined_alternate_key_is_400(dv: Api) -> None:
    """https://learn.microsoft.com/power-apps/developer/data-platform/use-alternate-key-reference-record
    (Exceptions when using alternate keys with the Web API)."""
    r = dv.get("accounts(telephone2='bcdv-contract')")
    assert r.status_code == 400
    assert error_of(r) == {"code": "0x80060888", "message": (
        f"The key in the request URI is not valid for resource '{ACCOUNT}'. Ensure that the "
        f"names and number of key properties match the declared or alternate key properties "
        f"for the resource '{ACCOUNT}'.")}


def test_unparsable_json_body_is_400(dv: Api, created: Any, name: str) -> None:
    """https://learn.microsoft.com/power-apps/developer/data-platform/webapi/compose-http-requests-handle-errors
    A body the service cannot read is a client error (4xx in the error shape), never a 500:
    truncated JSON and a lone UTF-16 surrogate escape, on a create, an upsert and a bulk
    message."""
    hdrs = {"Content-Type": "application/json"}
    bodies = [b'{"name": "' + name.encode() + b'"', b'{"name": "\\ud800' + name.encode() + b'"}']
    key = uuid.uuid4()
    created.add(dv, f"accounts({key})")
    for body in bodies:
        for method, path in (("POST", "accounts"), ("PATCH", f"accounts({key})"),
                             ("POST", "accounts/Microsoft.Dynamics.CRM.CreateMultiple")):
            r = dv.request(method, path, headers=hdrs, data=body)
            if r.status_code == 204 and "OData-EntityId" in r.headers:
                created.add(dv, r.headers["OData-EntityId"].rsplit("/", 1)[1])
            for i in (r.json().get("Ids", []) if r.status_code == 200 else []):
                created.add(dv, f"accounts({i})")
            assert r.status_code == 400, (method, path, body, r.status_code, r.text)
            assert error_of(r)["message"]


def test_total_record_count_annotations_only_when_asked(dv: Api, created: Any,
                                                       name: str) -> None:
    """https://learn.microsoft.com/power-apps/developer/data-platform/webapi/query/count-rows
    ``$count=true`` gives @odata.count; the totalrecordcount annotations come with the
    odata.include-annotations preference, and totalrecordcount is -1 without $count."""
    _accounts(dv, created, name, 2)
    query = f"accounts?$select=name&$filter=startswith(name,'{name}')"
    plain = dv.get(f"{query}&$count=true").json()
    assert plain["@odata.count"] == 2
    assert not any(k.startswith("@Microsoft.Dynamics.CRM.totalrecordcount") for k in plain)
    asked = {"Prefer": 'odata.include-annotations="Microsoft.Dynamics.CRM.totalrecordcount,'
                       'Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded"'}
    doc = dv.get(f"{query}&$count=true", headers=asked).json()
    assert doc["@Microsoft.Dynamics.CRM.totalrecordcount"] == 2
    assert doc["@Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded"] is False
    assert dv.get(query, headers=asked).json()["@Microsoft.Dynamics.CRM.totalrecordcount"] == -1
