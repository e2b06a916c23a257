"""Business Central API v2.0: keys, number series, exchange rates, filters, webhooks, values.

Each test follows the Microsoft Learn page in its docstring (and, where Learn is silent, the
AL source of the APIV2 page it names). Everything a test creates carries the test's unique
``name`` and is deleted afterwards, so the suite also runs against a real tenant.
"""
from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import pytest

from .conftest import Created, Target
from .wire import Api, error_of, token

LEARN = "https://learn.microsoft.com/en-us/dynamics365/business-central/dev-itpro"


def _code(name: str, length: int) -> str:
    """A code of ``length`` characters, unique to this test, in lower case."""
    return ("c" + name.rsplit("-", 1)[-1] + uuid.uuid4().hex)[:length]


def _own_contact(company: Api, created: Created, display_name: str) -> None:
    """Register the company contact BC made for a new customer/vendor, deleted last."""
    r = company.get(f"contacts?$filter=displayName eq '{display_name}'&$select=id")
    for row in r.json().get("value", []) if r.status_code == 200 else []:
        created.urls.insert(0, (company, f"contacts({row['id']})"))


@pytest.mark.parametrize("entity_set,length,table", [
    ("salespeoplePurchasers", 20, "Salesperson/Purchaser"), ("currencies", 10, "Currency")])
def test_code_primary_key_required_unique_upper_cased(
        company: Api, created: Created, name: str, entity_set: str, length: int,
        table: str) -> None:
    """``code`` is the table's primary key (Salesperson/Purchaser Code[20], Currency
    Code[10], NotBlank, OnValidate TestField): blank -> 400 Application_FieldValidationException,
    stored upper-cased, too long -> 400 Application_StringExceededLength, taken -> 409
    Internal_EntityWithSameKeyExists "The record in table <T> already exists.".
    https://learn.microsoft.com/en-us/dynamics365/business-central/dev-itpro/api-reference/v2.0/api/dynamics_salespersonpurchaser_create
    https://learn.microsoft.com/en-us/dynamics365/business-central/dev-itpro/webservices/dynamics-error-codes
    """
    blank = company.post(entity_set, json={"code": "", "displayName": name[:30]})
    if blank.status_code == 201:
        created.add(company, f"{entity_set}({blank.json()['id']})")
    assert blank.status_code == 400, blank.text
    err = error_of(blank)
    assert err["code"] == "Application_FieldValidationException"
    assert err["message"].startswith(f"Code must have a value in {table}")

    code = _code(name, length)
    r = company.post(entity_set, json={"code": code, "displayName": name[:30]})
    assert r.status_code == 201, r.text
    created.add(company, f"{entity_set}({r.json()['id']})")
    assert r.json()["code"] == code.upper()

    again = company.post(entity_set, json={"code": code, "displayName": name[:30]})
    if again.status_code == 201:
        created.add(company, f"{entity_set}({again.json()['id']})")
    assert again.status_code == 409, again.text
    err = error_of(again)
    assert err["code"] == "Internal_EntityWithSameKeyExists"
    assert err["message"].startswith(f"The record in table {table} already exists. "
                                     f"Identification fields and values: Code='{code.upper()}'")

    long = company.post(entity_set, json={"code": code + "X", "displayName": name[:30]})
    if long.status_code == 201:
        created.add(company, f"{entity_set}({long.json()['id']})")
    assert long.status_code == 400, long.text
    err = error_of(long)
    assert err["code"] == "Application_StringExceededLength"
    assert err["message"].startswith(f"The length of the string is {length + 1}, but it must "
                                     f"be less than or equal to {length} characters.")


@pytest.mark.parametrize("entity_set", ["customers", "vendors", "contacts"])
def test_number_from_series_and_duplicate_number_refused(
        company: Api, created: Created, name: str, entity_set: str) -> None:
    """Without ``number`` the record gets the next number of its number series; a POST with
    a number that exists fails the page's Rec.Insert() (APIV2 - Customers OnInsertRecord):
    409 Internal_EntityWithSameKeyExists.
    https://learn.microsoft.com/en-us/dynamics365/business-central/dev-itpro/api-reference/v2.0/api/dynamics_customer_create
    https://learn.microsoft.com/en-us/dynamics365/business-central/dev-itpro/webservices/dynamics-error-codes
    """
    r = company.post(entity_set, json={"displayName": name})
    assert r.status_code == 201, r.text
    if entity_set != "contacts":
        _own_contact(company, created, name)
    created.add(company, f"{entity_set}({r.json()['id']})")
    number = r.json()["number"]
    assert number

    dup = company.post(entity_set, json={"displayName": name + " 2", "number": number})
    if dup.status_code == 201:
        created.add(company, f"{entity_set}({dup.json()['id']})")
    assert dup.status_code == 409, dup.text
    err = error_of(dup)
    assert err["code"] == "Internal_EntityWithSameKeyExists"
    assert f"already exists. Identification fields and values: No.='{number}'" in err["message"]


def test_client_chosen_id_on_post_is_refused(company: Api, created: Created, name: str) -> None:
    """API v2.0 pages key on SystemId (ODataKeyFields = SystemId) and declare ``id``
    Editable = false, inserting with Rec.Insert(true): an ``id`` in the POST body is a
    read-only control, 400 BadRequest_InvalidOperation "Control 'Id' is read-only".
    https://learn.microsoft.com/en-us/dynamics365/business-central/dev-itpro/api-reference/v2.0/resources/dynamics_customer
    https://learn.microsoft.com/en-us/dynamics365/business-central/dev-itpro/webservices/dynamics-error-codes
    """
    chosen = str(uuid.uuid4())
    r = company.post("customers", json={"id": chosen, "displayName": name})
    if r.status_code == 201:
        _own_contact(company, created, name)
        created.add(company, f"customers({r.json()['id']})")
    assert r.status_code == 400, r.text
    err = error_of(r)
    assert err["code"] == "BadRequest_InvalidOperation"
    assert err["message"].startswith("Control 'Id' is read-only")
    assert company.get(f"customers({chosen})").status_code == 404


def test_currency_exchange_rates_read_and_filter(company: Api, target: Target) -> None:
    """currencyExchangeRates: GET only (page 30085 is not insertable), the documented
    properties, filters on currencyCode and startingDate.
    https://learn.microsoft.com/en-us/dynamics365/business-central/dev-itpro/api-reference/v2.0/resources/dynamics_currencyexchangerate
    """
    r = company.get("currencyExchangeRates")
    assert r.status_code == 200, r.text
    rows = r.json()["value"]
    props = {"id", "currencyCode", "startingDate", "exchangeRateAmount",
             "relationalCurrencyCode", "relationalExchangeRateAmount", "lastModifiedDateTime"}
    for row in rows:
        assert set(row) - {"@odata.etag"} == props
    if target.is_emulator:
        assert {x["currencyCode"] for x in rows} == {"EUR", "GBP", "CAD", "MXN"}
    code = rows[0]["currencyCode"] if rows else "EUR"
    r = company.get(f"currencyExchangeRates?$filter=currencyCode eq '{code}' and "
                    "startingDate ge 2026-01-01")
    assert r.status_code == 200, r.text
    for row in r.json()["value"]:
        assert row["currencyCode"] == code and row["startingDate"] >= "2026-01-01"
    if target.is_emulator:
        assert len(r.json()["value"]) == 1
    post = company.post("currencyExchangeRates", json={"currencyCode": code})
    assert post.status_code == 405, post.text
    assert error_of(post)["code"] == "BadRequest_MethodNotAllowed"


def test_or_across_fields_and_in_below_schema_21_not_implemented(company: Api) -> None:
    """``or`` over two different fields has no AL filter: 501 BadRequest_MethodNotImplemented
    "The 'OR' operator is not supported on distinct fields on an OData filter."; ``in`` works
    only with $schemaversion=2.1 (501 BadRequest_MethodNotImplemented without it).
    https://learn.microsoft.com/en-us/dynamics365/business-central/dev-itpro/webservices/odata-known-limitations
    https://learn.microsoft.com/en-us/dynamics365/business-central/dev-itpro/webservices/use-filter-expressions-in-odata-uris
    """
    r = company.get("customers?$filter=number eq '10000' or city eq 'Miami'")
    assert r.status_code == 501, r.text
    err = error_of(r)
    assert err["code"] == "BadRequest_MethodNotImplemented"
    assert err["message"].startswith(
        "The 'OR' operator is not supported on distinct fields on an OData filter.")
    assert company.get("customers?$filter=number eq '10000' or number eq '20000'"
                       ).status_code == 200
    r = company.get("customers?$filter=number in ('10000','20000')")
    assert r.status_code == 501, r.text
    assert error_of(r)["code"] == "BadRequest_MethodNotImplemented"
    r = company.get("customers?$schemaversion=2.1&$filter=number in ('10000','20000')")
    assert r.status_code == 200, r.text


def test_enum_value_not_an_option(company: Api, created: Created, name: str) -> None:
    """An enum value that is not a member: 400 code Unknown, "'X' is not an option. The
    existing options are: ..." (the API v2.0 example of the transactional $batch page).
    https://learn.microsoft.com/en-us/dynamics365/business-central/dev-itpro/webservices/use-odata-batch
    """
    r = company.post("customers", json={"displayName": name, "blocked": "Nope"})
    if r.status_code == 201:
        _own_contact(company, created, name)
        created.add(company, f"customers({r.json()['id']})")
    assert r.status_code == 400, r.text
    err = error_of(r)
    assert err["code"] == "Unknown"
    assert err["message"].startswith("'Nope' is not an option. The existing options are: ")
    assert "Ship,Invoice,All" in err["message"]


class _Subscriber(BaseHTTPRequestHandler):
    """Answers BC's handshake and records every request it gets."""

    # Shared by every handler instance (one per request); the test resets it.
    calls: ClassVar[list[tuple[str, str, bytes]]] = []

    def _answer(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        _Subscriber.calls.append((self.command, self.path, raw))
        token_ = parse_qs(urlsplit(self.path).query).get("validationToken", [""])[0]
        body = token_.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *args: Any) -> None:
        """Quiet."""


@pytest.fixture
def webhook_bc(tmp_path: Path) -> Iterator[tuple[Api, str, str]]:
    """Own emulators with a short notification delay, and a local subscriber URL."""
    from bcdv_emulators.testing import run_emulators

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Subscriber)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Subscriber.calls = []
    try:
        with run_emulators(tmp_path, seed="demo", bc_webhook_delay_seconds=0.2) as ep:
            bc_ep = ep["business_central"]
            api = Api(bc_ep["base_url"], token(ep, bc_ep["scope"]), ep["ca_bundle"])
            yield api, bc_ep["company_id"], f"http://127.0.0.1:{server.server_address[1]}/hook"
    finally:
        server.shutdown()


@pytest.mark.emulator_only
def test_webhook_handshake_is_post_with_token_in_query(webhook_bc: tuple[Api, str, str]
                                                       ) -> None:
    """Creating a subscription: BC sends a request to notificationUrl with
    ``validationToken`` on the query string (a POST), the subscriber answers 200 with the
    token as the body, then BC answers 201.
    https://learn.microsoft.com/en-us/dynamics365/business-central/dev-itpro/api-reference/v2.0/dynamics-subscriptions
    """
    bc, cid, url = webhook_bc
    r = bc.post("subscriptions", json={"notificationUrl": url, "clientState": "s",
                                       "resource": f"/api/v2.0/companies({cid})/customers"})
    assert r.status_code == 201, r.text
    method, path, _ = _Subscriber.calls[0]
    assert method == "POST"
    assert parse_qs(urlsplit(path).query)["validationToken"][0]


@pytest.mark.emulator_only
def test_snapshot_batch_rollback_sends_no_notification(webhook_bc: tuple[Api, str, str]
                                                       ) -> None:
    """A $batch with ``Isolation: snapshot`` that fails is reverted "as if the batch request
    never happened": its created customer is never notified; a committed one is.
    https://learn.microsoft.com/en-us/dynamics365/business-central/dev-itpro/webservices/use-odata-batch
    https://learn.microsoft.com/en-us/dynamics365/business-central/dev-itpro/api-reference/v2.0/dynamics-subscriptions
    """
    bc, cid, url = webhook_bc
    r = bc.post("subscriptions", json={"notificationUrl": url,
                                       "resource": f"/api/v2.0/companies({cid})/customers"})
    assert r.status_code == 201, r.text
    ops = [{"id": "1", "method": "POST", "url": f"companies({cid})/customers",
            "body": {"displayName": "Rolled back"}},
           {"id": "2", "method": "POST", "url": f"companies({cid})/customers",
            "body": {"displayName": "X", "foo": 1}}]
    r = bc.post("$batch", json={"requests": ops}, headers={"Isolation": "snapshot"})
    assert [x["status"] for x in r.json()["responses"]] == [201, 400]
    rolled_back = r.json()["responses"][0]["body"]["id"]
    kept = bc.post(f"companies({cid})/customers", json={"displayName": "Kept"}).json()["id"]
    deadline = time.monotonic() + 10
    notified: list[str] = []
    while time.monotonic() < deadline and not any(kept in x for x in notified):
        time.sleep(0.1)
        notified = [item["resource"] for _, path, raw in list(_Subscriber.calls)
                    if "validationToken" not in path and raw
                    for item in json.loads(raw)["value"]]
    assert any(kept in x for x in notified)
    assert not any(rolled_back in x for x in notified)
