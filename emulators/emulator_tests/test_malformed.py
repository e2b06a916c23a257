"""Malformed bodies, filters, headers and ids on every route: only documented 4xx shapes.

A client mistake must never produce a 5xx; every 4xx carries ``{"error": {"code", "message"}}``
(BC's wrong-environment 404 is XML, by design).
"""
from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from .conftest import Api

BODIES: list[Any] = ["not json", "[1,2]", '"str"', "null", "{", '{"a":{"b":[1]}}', "1e999",
                     "\xff\xfe", '{"displayName": null}', '{"displayName": 5}',
                     '{"name": ["x"]}', '{"@odata.type": 5}', '{"Targets": "x"}',
                     '{"Targets": [1, null]}', '{"requests": {}}', '{"requests": [1]}',
                     '{"requests": [{"method": "GET"}]}',
                     '{"requests": [{"method": "GET", "url": 5}]}', '{"creditLimit": NaN}',
                     '{"creditlimit": Infinity}']
FILTERS = ["name eq", "eq 'x'", "(((", "name eq 'x' and", "contains(name)", "name eq 'x",
           "startswith(name, 5)", "name eq 5", "foo/bar eq 1", "name eq 'a' or or",
           "tolower(1) eq 'a'", "name gt 2020-13-45T99:99:99Z", "not", "name in ()",
           "substringof('a', name)", "name eq null", "1 eq 1", "creditlimit eq 'abc'",
           "accountid eq 'x'", "id eq 123", "displayName eq true"]
HEADERS = [{"If-Match": "garbage"}, {"If-Match": 'W/"'}, {"If-None-Match": "*"},
           {"Prefer": "odata.maxpagesize=abc"}, {"Prefer": "odata.maxpagesize=-1"},
           {"Prefer": 'odata.include-annotations="'}, {"Content-Type": "text/plain"},
           {"Content-Type": "multipart/mixed"}, {"Data-Access-Intent": "Bogus"},
           {"Isolation": "bogus"}]
BAD_KEYS = ["(x)", "(1)", "('a')", "(accountnumber='a'", "(00000000-0000)", "()",
            "(name='x',name='y')", "(id=)"]


def _check(r: Any) -> None:
    assert r.status_code < 500, (r.request.method, r.request.url, r.status_code, r.text[:300])
    # Every error is an OData error document, except the hosting layer's NoEnvironment 404.
    if r.status_code >= 400 and (r.status_code != 404 or "NoEnvironment" not in r.text):
        doc = r.json()
        assert set(doc) == {"error"}, doc
        assert isinstance(doc["error"]["code"], str) and doc["error"]["message"], doc


def _routes(company: str, bc_sets: list[str], dv_sets: list[str]) -> list[tuple[str, str]]:
    routes = [("bc", ""), ("bc", "companies"), ("bc", f"companies({company})"),
              ("bc", "$batch"), ("bc", "$metadata")]
    for s in bc_sets:
        routes += [("bc", f"companies({company})/{s}"),
                   ("bc", f"companies({company})/{s}({uuid.uuid4()})"),
                   ("bc", f"{s}?company={company}")]
    routes += [("dv", ""), ("dv", "WhoAmI"), ("dv", "$batch"), ("dv", "EntityDefinitions"),
               ("dv", "$metadata")]
    for s in dv_sets:
        routes += [("dv", s), ("dv", f"{s}({uuid.uuid4()})"),
                   ("dv", f"{s}/Microsoft.Dynamics.CRM.UpsertMultiple"),
                   ("dv", f"{s}/Microsoft.Dynamics.CRM.CreateMultiple")]
    return routes


BC_SETS = ["customers", "vendors", "contacts", "currencies", "paymentTerms", "shipmentMethods",
           "paymentMethods", "salespeoplePurchasers"]
DV_SETS = ["accounts", "contacts", "systemusers", "transactioncurrencies", "teams",
           "businessunits"]


@pytest.mark.parametrize("method", ["POST", "PATCH", "PUT", "DELETE"])
def test_malformed_bodies_on_every_route(bc: Api, dv: Api, company: str, method: str) -> None:
    for api, path in _routes(company, BC_SETS, DV_SETS):
        client = bc if api == "bc" else dv
        for body in BODIES:
            ctype = "multipart/mixed; boundary=b" if path == "$batch" and api == "dv" \
                else "application/json"
            r = client.request(method, path, data=body.encode("utf-8", "surrogateescape"),
                               headers={"Content-Type": ctype, "If-Match": "*"})
            _check(r)


def test_malformed_filters_and_options(bc: Api, dv: Api, company: str) -> None:
    for flt in FILTERS:
        for s in BC_SETS:
            _check(bc.get(f"companies({company})/{s}", params={"$filter": flt}))
        for s in DV_SETS:
            _check(dv.get(s, params={"$filter": flt}))
    for opt, val in [("$top", "-1"), ("$top", "x"), ("$skip", "x"), ("$select", ""),
                     ("$select", "a,,b"), ("$orderby", "name sideways"), ("$orderby", ""),
                     ("$count", "maybe"), ("$expand", "nothing"), ("$skiptoken", "abc"),
                     ("$deltatoken", "abc"), ("$bogus", "1"), ("$apply", "x")]:
        _check(bc.get(f"companies({company})/customers", params={opt: val}))
        _check(dv.get("accounts", params={opt: val}))


def test_malformed_headers(bc: Api, dv: Api, company: str) -> None:
    cust = bc.post(f"companies({company})/customers", json={"displayName": "Hdr"}).json()
    acc = dv.post("accounts", json={"name": "Hdr"},
                  headers={"Prefer": "return=representation"}).json()
    for h in HEADERS:
        for method in ("GET", "PATCH", "DELETE", "POST"):
            body = json.dumps({"city": "X"} if method != "POST" else {"displayName": "Y"})
            _check(bc.request(method, f"companies({company})/customers({cust['id']})"
                              if method != "POST" else f"companies({company})/customers",
                              headers={"Content-Type": "application/json", **h}, data=body))
            dbody = json.dumps({"address1_city": "X"} if method != "POST" else {"name": "Y"})
            _check(dv.request(method, f"accounts({acc['accountid']})"
                              if method != "POST" else "accounts",
                              headers={"Content-Type": "application/json", **h}, data=dbody))
    for h in ({"Authorization": "Basic abc"}, {"Authorization": "Bearer"},
              {"Authorization": "Bearer a.b.c"}):
        _check(Api(bc.base, None, bc.ca).get("companies", headers=h))
        _check(Api(dv.base, None, dv.ca).get("WhoAmI", headers=h))


def test_malformed_ids(bc: Api, dv: Api, company: str) -> None:
    for key in BAD_KEYS:
        for s in BC_SETS:
            _check(bc.get(f"companies({company})/{s}{key}"))
            _check(bc.patch(f"companies({company})/{s}{key}", json={}, headers={"If-Match": "*"}))
        for s in DV_SETS:
            _check(dv.get(f"{s}{key}"))
            _check(dv.patch(f"{s}{key}", json={}))
            _check(dv.delete(f"{s}{key}"))
    for path in ("companies(nope)/customers", "companies()/customers", "nothing", "a/b/c/d",
                 "customers(1)/x/y", "companies(%ZZ)"):
        _check(bc.get(path))
    for path in ("nothing", "accounts/x/y/z", "accounts(1)/name/extra", "WhoAmI/x",
                 "EntityDefinitions(LogicalName='nope')", "EntityDefinitions(x)/Foo"):
        _check(dv.get(path))
    for payload in ({"primarycontactid@odata.bind": 5}, {"primarycontactid@odata.bind": "junk"},
                    {"primarycontactid@odata.bind": "/contacts(not-a-guid)"},
                    {"foo@odata.bind": "/accounts(1)"}, {"ownerid@odata.bind": "/accounts()"}):
        _check(dv.post("accounts", json={"name": "bind", **payload}))
