"""Issue 13: error rows that say what, where and why.

- A record Business Central refuses (a country name in its 10-character Country/Region Code)
  gets an error row with the record's name, its Dataverse id (no Business Central id: the
  create made nothing), the field ``country``, the value and the API's code.
- The same failure on the next run counts one more attempt on that row; no second row.
- A contact whose company's customer failed to reach Dataverse fails its lookup with an
  error that links to the customer's error (``caused_by``) and says so.
"""

from __future__ import annotations

from typing import Any

from bcdv.engine import sync_mapping
from bcdv.service import views

from .conftest import Env, make_mapping


def _errors(env: Env, mapping: str) -> list[dict[str, Any]]:
    return env.state.errors(mapping)


def test_too_long_country_names_record_field_value_and_code(env: Env) -> None:
    mapping = make_mapping(sync_only_coupled=False)
    account = env.dv_new("Contoso Pharmaceuticals", address1_country="United States",
                         address1_city="Seattle")
    first = env.run(mapping, "to_business_central")
    assert first.failed == 1, first.records
    [row] = _errors(env, "CUSTOMER")
    assert row["name"] == "Contoso Pharmaceuticals"
    assert row["dv_id"] == account and row["source_id"] == account
    assert row["bc_id"] is None  # the refused create made no Business Central record
    assert (row["field"], row["value"], row["code"]) == (
        "country", "United States", "Application_StringExceededLength")
    assert "Value: United States" in row["message"] and row["attempts"] == 1
    assert row["caused_by"] is None
    [failed] = [r for r in first.records if r.result == "failed"]
    assert failed.error_id == row["id"] and failed.name == "Contoso Pharmaceuticals"

    second = env.run(mapping, "to_business_central")
    assert second.failed == 1, second.records
    [again] = _errors(env, "CUSTOMER")
    assert again["id"] == row["id"] and again["attempts"] == 2
    assert again["job_id"] == second.job_id and again["last_seen"] > row["last_seen"]
    assert views.error(env.state, row["id"])["field"] == "country"


def test_update_failure_keeps_ids_and_the_same_cause_one_row(env: Env) -> None:
    mapping = make_mapping()
    bc_id, dv_id = env.coupled_pair(mapping, "Fabrikam Inc")
    env.tick()
    env.dv_edit(dv_id, address1_country="United Kingdom")
    report = env.run(mapping, "to_business_central")
    assert report.failed == 1, report.records
    [row] = _errors(env, "CUSTOMER")
    assert (row["bc_id"], row["dv_id"], row["name"]) == (bc_id, dv_id, "Fabrikam Inc")
    assert (row["field"], row["value"]) == ("country", "United Kingdom")
    # The job's record list carries the update's diff, the error its id.
    [rec] = views.records_of_job(env.state, report.job_id)
    assert rec["action"] == "update" and rec["result"] == "failed"
    assert rec["changes"]["country"][1] == "United Kingdom"


def test_shipped_mapping_states_the_length_and_names_the_field(ctx: Any,
                                                                mappings: Any) -> None:
    """The shipped CUSTOMER mapping bounds country with a max_length rule: the record fails
    before the request, and its row names the field, the value and the record (no code:
    no service answered)."""
    dv = ctx.dataverse.client
    account = dv.create("accounts", {"name": "Northwind Length Test", "customertypecode": 3,
                                     "address1_country": "United States"})
    account_id = str(account["accountid"])
    sync_mapping(ctx, mappings["CUSTOMER"], mode="full")
    [row] = [e for e in ctx.state.errors("CUSTOMER") if e["source_id"] == account_id]
    assert (row["name"], row["field"], row["value"], row["code"]) == (
        "Northwind Length Test", "country", "United States", None)
    assert row["dv_id"] == account_id and row["bc_id"] is None and row["attempts"] == 1
    sync_mapping(ctx, mappings["CUSTOMER"], mode="full")
    [again] = [e for e in ctx.state.errors("CUSTOMER") if e["source_id"] == account_id]
    assert again["id"] == row["id"] and again["attempts"] == 2


def test_contact_failing_because_its_customer_failed_links_to_that_error(
        ctx: Any, mappings: Any) -> None:
    bc = ctx.business_central.client
    name = "Zephyr Test Traders"
    bc.create("customers", {"displayName": name, "city": "Oslo"})
    company = bc.create("contacts", {"type": "Company", "displayName": name})
    person = bc.create("contacts", {"type": "Person", "displayName": "Ada Lovelace",
                                    "companyNumber": company["number"],
                                    "email": "ada.lovelace@zephyr.example"})
    _faults(ctx, {"rules": [{"entity": "accounts", "match": {"name": name},
                             "status": 400, "code": "0x80040265",
                             "message": "Accounts named like this are refused (test).",
                             "methods": ["POST", "PATCH"]}]})
    sync_mapping(ctx, mappings["CUSTOMER"], mode="full")
    customer_error = next(e for e in ctx.state.errors("CUSTOMER")
                          if e["name"] == name and e["direction"] == "to_dataverse")
    assert customer_error["code"] == "0x80040265" and customer_error["dv_id"] is None

    sync_mapping(ctx, mappings["CONTACT"], mode="full")
    [contact_error] = [e for e in ctx.state.errors("CONTACT") if e["source_id"] == person["id"]]
    assert contact_error["name"] == "Ada Lovelace"
    assert contact_error["caused_by"] == customer_error["id"]
    assert contact_error["value"] == name
    assert (f"The Business Central customer {name} it refers to failed to synchronise: "
            f"see error {customer_error['id']}") in contact_error["message"]


def _faults(ctx: Any, body: dict[str, Any]) -> None:
    import requests

    client = ctx.dataverse.client
    base = client.url("accounts").split("/api/data")[0]
    resp = requests.put(f"{base}/_emulator/faults", json=body,
                        verify=client.http.verify, timeout=30)
    resp.raise_for_status()


def test_one_row_per_record_and_cause_and_records_go_with_their_job(tmp_path: Any) -> None:
    from bcdv.state.store import StateStore

    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    tail = "  CorrelationId:  {}."
    message = "The length of the string is 13, but it must be less than or equal to 10 " \
              "characters. Value: United States"
    first = store.record_error("CUSTOMER", "to_business_central", "job-1", source_id="s1",
                               bc_id=None, dv_id="s1", name="Contoso",
                               message=message + tail.format("3f1c5a0e-2b7d-4c1e-9a57-"
                                                             "0d7b3e2f8c11"),
                               code="Application_StringExceededLength", field="country",
                               value="United States")
    again = store.record_error("CUSTOMER", "to_business_central", "job-2", source_id="s1",
                               bc_id=None, dv_id="s1", name="Contoso",
                               message=message + tail.format("9a1c5a0e-2b7d-4c1e-9a57-"
                                                             "0d7b3e2f8c11"),
                               code="Application_StringExceededLength", field="country",
                               value="United States")
    other = store.record_error("CUSTOMER", "to_business_central", "job-2", source_id="s1",
                               bc_id=None, dv_id="s1", name="Contoso",
                               message="The field Salesperson Code of table Customer contains "
                                       "a value (ZZ) that cannot be found in the related table",
                               code="Internal_InvalidTableRelation", field="salespersonCode")
    assert first == again != other
    rows = {r["id"]: r for r in store.errors("CUSTOMER")}
    assert rows[first]["attempts"] == 2 and rows[first]["job_id"] == "job-2"
    assert rows[other]["attempts"] == 1

    job = store.start_job("CUSTOMER", "to_dataverse", mode="modified")
    store.record_job_records(job, "CUSTOMER", "to_dataverse", [
        {"source_id": "a", "target_id": "b", "name": "Fabrikam", "action": "update",
         "result": "modified", "changes": {"telephone1": [None, "+1 425"]}}])
    store.record_job_records(job, "CUSTOMER", "to_dataverse", [
        {"source_id": "a", "target_id": "b", "name": "Fabrikam", "action": "update",
         "result": "modified", "changes": {"telephone1": [None, "+1 425"]}}])
    [rec] = views.records_of_job(store, job)
    assert (rec["bc_id"], rec["dv_id"], rec["changes"]) == ("a", "b",
                                                            {"telephone1": [None, "+1 425"]})
    assert store.delete_jobs_older_than(-1) >= 1
    assert views.records_of_job(store, job) == []
    store.close()


def test_rule_failures_name_the_field_of_the_shipped_rule(mappings: Any) -> None:
    """A planned failure's message names the value, not the field: the field is the pass's
    one field whose rule has that limit or table (no emulators needed)."""
    from types import SimpleNamespace

    from bcdv.engine.apply import _rule_failure
    from bcdv.engine.context import PassSides
    from bcdv.mapping.model import Direction

    mapping = mappings["CUSTOMER"]
    sides = PassSides.of(mapping, Direction.TO_BUSINESS_CENTRAL)
    state: Any = SimpleNamespace(direction="to_business_central")
    detail = _rule_failure(mapping, state, sides, "The data could not be transferred: "
                           "'United States' has 13 characters; the destination holds at most 10")
    assert (detail.field, detail.value) == ("country", "United States")
    detail = _rule_failure(mapping, state, sides, "The data could not be transferred: no "
                           "paymentTerms record with code = 'NET45'")
    assert (detail.field, detail.value) == ("paymentTermsId", "NET45")
    assert _rule_failure(mapping, state, sides, "something else").field is None
