"""More behaviours of section 6: templates, lookups, coupling, connections, clocks."""

from __future__ import annotations

import pytest

from bcdv.engine.records import couple_record
from bcdv.errors import BcdvError, MappingError, RetriableApiError
from bcdv.mapping import load_mappings
from bcdv.mapping.loader import load_mapping_file
from bcdv.mapping.model import Direction
from bcdv.service import records as service

from .conftest import BASE, make_mapping

ROOT_MAPPINGS = __import__("pathlib").Path(__file__).resolve().parents[2] / "include" / "mappings"


def _with_currency(env, on_failure: str):
    fields = [f for f in BASE["fields"] if f["business_central"] != "creditLimit"] + [
        {"business_central": "currencyCode", "dataverse": "transactioncurrencyid",
         "lookup": {"mapping": "CURRENCY", "match_on": "code", "on_failure": on_failure}}]
    mapping = make_mapping(sync_only_coupled=False, fields=fields)
    currency = load_mappings(ROOT_MAPPINGS)["CURRENCY"]
    env.ctx.mappings = {"CUSTOMER": mapping, "CURRENCY": currency}
    return mapping, currency


def test_b10_create_values_are_applied_to_created_records(env) -> None:
    mapping = make_mapping(sync_only_coupled=False, create_values={
        "dataverse": {"customertypecode": 3, "description": "Created by bcdv"}})
    customer = env.bc_new("Templated")
    env.sync(mapping)
    account = env.dv_get(env.coupling(mapping, bc_id=customer["id"])["dv_id"])
    assert (account["customertypecode"], account["description"]) == (3, "Created by bcdv")


def test_b23_clear_value_on_failed_sync(env) -> None:
    mapping, _ = _with_currency(env, "clear")
    env.bc.create("currencies", {"code": "EUR", "displayName": "Euro", "symbol": "€"})
    customer = env.bc_new("Euro Buyer", currencyCode="EUR")
    report = env.sync(mapping)["to_dataverse"]
    assert (report.inserted, report.failed) == (1, 0)
    account = env.dv_get(env.coupling(mapping, bc_id=customer["id"])["dv_id"])
    assert account["_transactioncurrencyid_value"] in (None, env.dv.list(
        "transactioncurrencies", filter="isocurrencycode eq 'USD'")[0]["transactioncurrencyid"])


def test_b24_lookup_failure_without_clear_value_fails_the_record(env) -> None:
    mapping, _ = _with_currency(env, "error")
    env.bc.create("currencies", {"code": "EUR", "displayName": "Euro", "symbol": "€"})
    customer = env.bc_new("Euro Buyer", currencyCode="EUR")
    report = env.sync(mapping)["to_dataverse"]
    assert (report.inserted, report.failed) == (0, 1)
    assert "EUR must be coupled to a record in Dataverse" in report.records[0].message
    assert env.coupling(mapping, bc_id=customer["id"]) is None


def test_b25_lookup_on_failure_options_are_exclusive_and_validated(tmp_path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(
        "name: CUSTOMER\n"
        "business_central: {entity_set: customers, key: id, modified_on: lastModifiedDateTime}\n"
        "dataverse: {entity_set: accounts, key: accountid, modified_on: modifiedon}\n"
        "direction: to_dataverse\n"
        "fields:\n"
        "  - {business_central: displayName, dataverse: name, direction: to_dataverse}\n"
        "  - business_central: currencyCode\n"
        "    dataverse: transactioncurrencyid\n"
        "    direction: to_dataverse\n"
        "    lookup: {mapping: CUSTOMER, on_failure: clear_and_keep}\n")
    with pytest.raises(MappingError) as err:
        load_mapping_file(path)
    assert "fields[1].lookup.on_failure" in str(err.value)
    assert "'clear'" in str(err.value) and "'keep'" in str(err.value)


def test_b27_currency_lookups_both_ways(env) -> None:
    mapping, currency = _with_currency(env, "error")
    eur = env.bc.create("currencies", {"code": "EUR", "displayName": "Euro", "symbol": "€"})
    env.dv.create("transactioncurrencies", {"isocurrencycode": "EUR", "currencyname": "Euro",
                                            "currencysymbol": "€", "exchangerate": 0.92})
    from bcdv.engine import sync_mapping

    sync_mapping(env.ctx, currency, mode="full")  # couples EUR by ISO code (match-based)
    dv_eur = env.coupling(currency, bc_id=eur["id"])["dv_id"]
    euro_customer = env.bc_new("Euro Buyer", currencyCode="EUR")
    local_customer = env.bc_new("Dollar Buyer")
    env.sync(mapping)
    euro_account = env.dv_get(env.coupling(mapping, bc_id=euro_customer["id"])["dv_id"])
    assert euro_account["_transactioncurrencyid_value"] == dv_eur
    local_account = env.dv_get(env.coupling(mapping, bc_id=local_customer["id"])["dv_id"])
    base = env.dv.list("transactioncurrencies", filter="isocurrencycode eq 'USD'")[0]
    assert local_account["_transactioncurrencyid_value"] == base["transactioncurrencyid"]
    # Back to BC: the coupled currency gives its code; the base (local) currency is LCY.
    account_id = env.dv_new("From Dynamics", **{
        "transactioncurrencyid@odata.bind": f"/transactioncurrencies({dv_eur})"})
    env.dv_new("Local From Dynamics", **{
        "transactioncurrencyid@odata.bind":
            f"/transactioncurrencies({base['transactioncurrencyid']})"})
    env.sync(mapping)
    created = env.bc_get(env.coupling(mapping, dv_id=account_id)["bc_id"])
    assert created["currencyCode"] == "EUR"
    local = env.bc.list("customers", filter="displayName eq 'Local From Dynamics'")[0]
    assert local["currencyId"] == "00000000-0000-0000-0000-000000000000"


def test_b33_coupling_is_unique_and_can_be_redone_after_removal(env) -> None:
    mapping = make_mapping()
    bc_id, _dv_id = env.coupled_pair(mapping)
    other_dv = env.dv_new("Other")
    with pytest.raises(BcdvError, match="already coupled"):
        couple_record(env.ctx, mapping, bc_id=bc_id, dv_id=other_dv)
    service.uncouple(env.state, mapping, bc_id, side="business_central")
    couple_record(env.ctx, mapping, bc_id=bc_id, dv_id=other_dv,
                  synchronize=Direction.TO_DATAVERSE)
    assert env.coupling(mapping, bc_id=bc_id)["dv_id"] == other_dv
    assert env.dv_get(other_dv)["name"] == "Pair Ltd"


def test_b42_unreachable_service_fails_the_run_and_loses_nothing(env) -> None:
    mapping = make_mapping(sync_only_coupled=False)
    env.bc_new("Waiting Customer")
    env.admin("dv", "PUT", "faults", {"next": ["reset"] * 20})
    env.ctx.dataverse.client.http.retry = type(env.ctx.dataverse.client.http.retry)(
        max_attempts=2, budget_seconds=2)
    with pytest.raises(RetriableApiError):
        env.sync(mapping)
    job = env.state.jobs("CUSTOMER")[0]
    assert job["status"] in ("failed", "running")
    assert env.state.get_watermark("CUSTOMER", "to_dataverse") is None
    env.admin("dv", "DELETE", "faults")
    assert env.sync(mapping)["to_dataverse"].inserted == 1


@pytest.mark.parametrize("offset", [300, -300])
def test_b43_clock_skew_between_systems(env, offset: int) -> None:
    mapping = make_mapping()
    env.admin("dv", "PUT", "clock", {"offset_seconds": offset})
    bc_id, dv_id = env.coupled_pair(mapping)
    env.sync(mapping)
    env.bc_edit(bc_id, city="After sync in BC")
    assert env.sync(mapping)["to_dataverse"].modified == 1
    env.dv_edit(dv_id, telephone1="after sync in Dataverse")
    assert env.sync(mapping)["to_business_central"].modified == 1
    assert env.bc_get(bc_id)["phoneNumber"] == "after sync in Dataverse"
    assert env.dv_get(dv_id)["address1_city"] == "After sync in BC"


def test_b60_match_based_coupling_job_and_sync_after_coupling(env) -> None:
    mapping = make_mapping(
        conflicts={"update": "business_central_wins"},
        coupling={"match": [{"fields": ["phoneNumber"]}], "sync_after_coupling": True})
    customer = env.bc_new("Match Me", phoneNumber="555-0160", city="BC City")
    account = env.dv_new("Match Me Inc", telephone1="555-0160", address1_city="DV City")
    report, syncs = service.couple_by_match(env.ctx, mapping)
    assert report.coupled == 1 and report.pairs == [(customer["id"], account)]
    job = next(j for j in env.state.jobs("CUSTOMER") if j["type"] == "coupling")
    assert job["coupled"] == 1
    assert [s.direction for s in syncs] == ["to_dataverse"]
    assert env.dv_get(account)["address1_city"] == "BC City"


def test_b60_no_sync_after_coupling_when_switched_off(env) -> None:
    mapping = make_mapping(coupling={"match": [{"fields": ["phoneNumber"]}],
                                     "sync_after_coupling": False})
    env.bc_new("Match Me", phoneNumber="555-0161", city="BC City")
    account = env.dv_new("Match Me Inc", telephone1="555-0161", address1_city="DV City")
    report, syncs = service.couple_by_match(env.ctx, mapping)
    assert report.coupled == 1 and syncs == []
    assert env.dv_get(account)["address1_city"] == "DV City"


def test_b62_currency_creation_fails_without_an_exchange_rate(env) -> None:
    """BC sets a new Dataverse currency's exchange rate from its own latest rate
    (currencyExchangeRates); with no rate for the currency the record fails with BC's message
    ("Exchange Rate must have a value") and nothing else is lost."""
    from bcdv.engine import sync_mapping

    currency = load_mappings(ROOT_MAPPINGS)["CURRENCY"]
    env.bc.create("currencies", {"code": "CHF", "displayName": "Swiss Franc", "symbol": "CHF"})
    report = sync_mapping(env.ctx, currency, mode="full")[0]
    assert (report.inserted, report.failed) == (0, 1)
    assert "Exchange Rate must have a value" in report.records[0].message
    assert "CHF" in report.records[0].message
    assert env.state.errors("CURRENCY")[0]["message"] == report.records[0].message


def test_b59_dataverse_contact_needs_a_coupled_parent_account(ctx, mappings) -> None:
    from bcdv.engine import sync_mapping

    sync_mapping(ctx, mappings["CUSTOMER"], mode="full")
    dv = ctx.dataverse.client
    coupled = ctx.state.couplings("CUSTOMER").dropna(subset=["dv_id"])
    parent = dv.get("accounts", coupled["dv_id"].iloc[0])
    lonely = dv.create("accounts", {"name": "Never Coupled Ltd", "customertypecode": 3},
                       select=["accountid"])
    ok = dv.create("contacts", {"firstname": "Ada", "lastname": "Coupled",
                                "parentcustomerid_account@odata.bind":
                                    f"/accounts({parent['accountid']})"},
                   select=["contactid"])
    orphan = dv.create("contacts", {"firstname": "Otto", "lastname": "Orphan",
                                    "parentcustomerid_account@odata.bind":
                                        f"/accounts({lonely['accountid']})"},
                       select=["contactid"])
    report = sync_mapping(ctx, mappings["CONTACT"], mode="full")[1]
    by_source = {r.source_id: r for r in report.records}
    assert by_source[orphan["contactid"]].result == "failed"
    assert "must be coupled" in by_source[orphan["contactid"]].message
    assert ctx.state.couplings("CONTACT", dv_ids=[orphan["contactid"]]).empty
    created = ctx.state.couplings("CONTACT", dv_ids=[ok["contactid"]])
    contact = ctx.business_central.client.get("contacts", created.at[0, "bc_id"])
    company = ctx.business_central.client.list(
        "contacts", filter=f"number eq '{contact['companyNumber']}'")[0]
    assert (contact["displayName"], company["displayName"]) == ("Ada Coupled", parent["name"])
