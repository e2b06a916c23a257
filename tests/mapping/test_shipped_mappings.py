"""The five shipped mappings are BC's defaults (reference bc-integration-engine.md section 3).

The expected tables below are section 3 translated to API v2.0 property names and Dataverse
logical names; every BC default field mapping that has no API v2.0 counterpart is listed in
OMITTED with the reason, so a field can neither appear nor disappear unnoticed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bcdv.mapping import load_mappings
from bcdv.mapping.loader import DEFAULTS_DIR, mapping_files
from bcdv.mapping.model import Direction, TableMapping

ROOT = Path(__file__).resolve().parents[2]
BI, TO, FROM = "bidirectional", "to_dataverse", "to_business_central"

# name -> (BC set, Dataverse set, direction, BC filter, Dataverse filter, depends_on)
TABLES: dict[str, tuple[str, str, str, str | None, str | None, list[str]]] = {
    "SALESPEOPLE": ("salespeoplePurchasers", "systemusers", FROM, None,
                    "isdisabled eq false and islicensed eq true and isintegrationuser eq false",
                    []),
    "CUSTOMER": ("customers", "accounts", BI, "blocked eq ' '",
                 "statecode eq 0 and customertypecode eq 3", ["SALESPEOPLE", "CURRENCY"]),
    "VENDOR": ("vendors", "accounts", BI, "blocked eq ' '",
               "statecode eq 0 and customertypecode eq 11", ["SALESPEOPLE", "CURRENCY"]),
    "CONTACT": ("contacts", "contacts", BI, "type eq 'Person' and companyNumber ne ''",
                "_parentcustomerid_value ne null and statecode eq 0", ["CUSTOMER", "VENDOR"]),
    "CURRENCY": ("currencies", "transactioncurrencies", TO, None, None, []),
}

# name -> [(BC property, Dataverse column, direction, constant, extra)], in file order.
# extra: lookup "MAPPING.match_on/on_failure", value map "map:NAME", transform "rules:N".
# Text fields longer in Dataverse than in BC carry one max_length rule (BC's limit).
FIELDS: dict[str, list[tuple[str | None, str | None, str, Any, str]]] = {
    "SALESPEOPLE": [
        ("email", "internalemailaddress", FROM, None, "rules:1"),  # E-Mail <- InternalEMailAddress
        ("displayName", "fullname", FROM, None, "rules:1"),       # Name <- FullName
        ("phoneNo", "mobilephone", FROM, None, "rules:1"),        # Phone No. <- MobilePhone
    ],
    "CUSTOMER": [
        ("salespersonCode", "ownerid", TO, None, "SALESPEOPLE.code/keep"),  # Not Null, Person
        ("displayName", "name", BI, None, "rules:1"),
        ("addressLine1", "address1_line1", BI, None, "rules:1"),
        ("addressLine2", "address1_line2", BI, None, "rules:1"),
        ("postalCode", "address1_postalcode", BI, None, ""),
        ("city", "address1_city", BI, None, "rules:1"),
        ("country", "address1_country", BI, None, "rules:1"),
        ("state", "address1_stateorprovince", BI, None, "rules:1"),
        ("currencyCode", "transactioncurrencyid", BI, None, "CURRENCY.code/error"),
        ("email", "emailaddress1", BI, None, "rules:1"),
        ("website", "websiteurl", BI, None, "rules:1"),
        ("phoneNumber", "telephone1", BI, None, "rules:1"),
        ("shipmentMethodId", "address1_freighttermscode", BI, None, "map:SHIPMENT_METHOD rules:2"),
        ("paymentTermsId", "paymenttermscode", BI, None, "map:PAYMENT_TERMS rules:2"),
        ("creditLimit", "creditlimit", TO, None, ""),
    ],
    "VENDOR": [
        ("displayName", "name", BI, None, "rules:1"),
        ("addressLine1", "address1_line1", BI, None, "rules:1"),
        ("addressLine2", "address1_line2", BI, None, "rules:1"),
        ("postalCode", "address1_postalcode", BI, None, ""),
        ("city", "address1_city", BI, None, "rules:1"),
        ("country", "address1_country", BI, None, "rules:1"),
        ("state", "address1_stateorprovince", BI, None, "rules:1"),
        ("currencyCode", "transactioncurrencyid", BI, None, "CURRENCY.code/error"),
        ("email", "emailaddress1", BI, None, "rules:1"),
        ("website", "websiteurl", BI, None, "rules:1"),
        ("phoneNumber", "telephone1", BI, None, "rules:1"),
        ("paymentTermsId", "paymenttermscode", BI, None, "map:PAYMENT_TERMS rules:2"),
    ],
    "CONTACT": [
        ("type", None, FROM, "Person", ""),                       # Type <- constant Person
        ("addressLine1", "address1_line1", BI, None, "rules:1"),
        ("addressLine2", "address1_line2", BI, None, "rules:1"),
        ("postalCode", "address1_postalcode", BI, None, ""),
        ("city", "address1_city", BI, None, "rules:1"),
        ("country", "address1_country", BI, None, "rules:1"),
        ("state", "address1_stateorprovince", BI, None, "rules:1"),
        ("email", "emailaddress1", BI, None, "rules:1"),
        ("displayName", "firstname", TO, None, "rules:2"),        # First Name (from the Name)
        ("displayName", "lastname", TO, None, "rules:1"),         # Surname (from the Name)
        ("displayName", "fullname", FROM, None, "rules:1"),       # Name <- composed full name
        ("website", "websiteurl", BI, None, "rules:1"),
        ("mobilePhoneNumber", "mobilephone", BI, None, "rules:1"),
        ("phoneNumber", "telephone1", BI, None, "rules:1"),
        ("companyNumber", "parentcustomerid", BI, None, "CUSTOMER.displayName/error rules:2"),
    ],
    "CURRENCY": [
        ("code", "isocurrencycode", TO, None, "rules:1"),
        ("symbol", "currencysymbol", TO, None, ""),
        ("displayName", "currencyname", TO, None, ""),
    ],
}

# BC default field mappings left out, and why (each must be named in the file's comments).
OMITTED: dict[str, list[tuple[str, str]]] = {
    "SALESPEOPLE": [],
    "CUSTOMER": [("owneridtype", "not a Web API column"),
                 ("address1_primarycontactname", "no API v2.0 property"),
                 ("Fax No.", "no API v2.0 property"),
                 ("Shipping Agent Code", "no API v2.0 property"),
                 ("Primary Contact No.", "no API v2.0 property")],
    "VENDOR": [("Purchaser Code", "no API v2.0 property"),
               ("owneridtype", "not a Web API column"),
               ("address1_primarycontactname", "no API v2.0 property"),
               ("Fax No.", "no API v2.0 property"),
               ("Shipment Method Code, Shipping Agent Code", "no API v2.0 property"),
               ("Primary Contact No.", "no API v2.0 property")],
    "CONTACT": [("Salesperson Code", "no salespersonCode on contacts"),
                ("Currency Code", "no currency on contacts"),
                ("Fax No. (-> fax), Pager (-> pager)", "no fax or pager on contacts"),
                ("parentcustomeridtype", "not a Web API column"),
                ("First Name, Middle Name, Surname", "API v2.0 has only displayName")],
    "CURRENCY": [],
}

VALUE_MAPS = {
    "PAYMENT_TERMS": {"NET30": 1, "2%10NET30": 2, "NET45": 3, "NET60": 4},
    "SHIPMENT_METHOD": {"FOB": 1, "NOCHARGE": 2},
    "SHIPPING_AGENT": {"AIRBORNE": 1, "DHL": 2, "FEDEX": 3, "UPS": 4, "POSTALMAIL": 5,
                       "FULLLOAD": 6, "WILLCALL": 7},
}
MAPS_OF = {"CUSTOMER": ["PAYMENT_TERMS", "SHIPMENT_METHOD", "SHIPPING_AGENT"],
           "VENDOR": ["PAYMENT_TERMS"], "CONTACT": [], "CURRENCY": [], "SALESPEOPLE": []}
CREATE_VALUES = {"CUSTOMER": {"customertypecode": 3}, "VENDOR": {"customertypecode": 11}}
MATCH = {"CURRENCY": ([["code"]], True), "SALESPEOPLE": ([["email"]], False)}


@pytest.fixture(scope="module")
def shipped() -> dict[str, TableMapping]:
    return load_mappings(DEFAULTS_DIR)


def _extra(f: Any) -> str:
    parts = []
    if f.lookup:
        parts.append(f"{f.lookup.mapping}.{f.lookup.match_on}/{f.lookup.on_failure.value}")
    if f.value_map:
        parts.append(f"map:{f.value_map}")
    if f.transform:
        parts.append(f"rules:{len(f.transform)}")
    return " ".join(parts)


def test_exactly_the_five_standard_mappings(shipped: dict[str, TableMapping]) -> None:
    assert set(shipped) == set(TABLES)


@pytest.mark.parametrize("name", sorted(TABLES))
def test_table_settings(shipped: dict[str, TableMapping], name: str) -> None:
    m = shipped[name]
    bc_set, dv_set, direction, bc_filter, dv_filter, deps = TABLES[name]
    assert (m.business_central.entity_set, m.dataverse.entity_set) == (bc_set, dv_set)
    assert m.direction is Direction(direction)
    assert (m.business_central.filter, m.dataverse.filter) == (bc_filter, dv_filter)
    assert m.depends_on == deps
    assert m.sync_only_coupled is True
    assert m.schedule == "*/30 * * * *"
    assert (m.conflicts.update.value, m.conflicts.deletion.value) == ("none", "none")
    assert m.business_central.key == "id" and m.business_central.modified_on == \
        "lastModifiedDateTime"
    assert m.dataverse.modified_on == "modifiedon"
    assert m.dataverse.key == {"systemusers": "systemuserid", "accounts": "accountid",
                               "contacts": "contactid",
                               "transactioncurrencies": "transactioncurrencyid"}[dv_set]


@pytest.mark.parametrize("name", sorted(FIELDS))
def test_field_mappings(shipped: dict[str, TableMapping], name: str) -> None:
    actual = [(f.business_central, f.dataverse, f.effective_direction.value, f.constant,
               _extra(f)) for f in shipped[name].fields]
    assert actual == FIELDS[name]
    assert all(f.enabled for f in shipped[name].fields)


@pytest.mark.parametrize("name", sorted(OMITTED))
def test_omitted_fields_are_explained_in_the_file(name: str) -> None:
    text = (DEFAULTS_DIR / f"{name.lower()}.yaml").read_text()
    for what, why in OMITTED[name]:
        assert what in text and why in text, (what, why)


@pytest.mark.parametrize("name", sorted(MAPS_OF))
def test_value_maps_and_create_values(shipped: dict[str, TableMapping], name: str) -> None:
    m = shipped[name]
    assert sorted(m.value_maps) == sorted(MAPS_OF[name])
    for vm_name, vm in m.value_maps.items():
        assert {e.business_central: e.dataverse for e in vm.values} == VALUE_MAPS[vm_name]
    assert m.create_values_for("dataverse") == CREATE_VALUES.get(name, {})
    assert m.create_values_for("business_central") == {}


def test_currency_and_salespeople_coupling(shipped: dict[str, TableMapping]) -> None:
    for name, (groups, create_new) in MATCH.items():
        m = shipped[name]
        assert [g.fields for g in m.coupling.match] == groups
        assert m.coupling.create_new_if_no_match is create_new
        assert m.coupling.sync_after_coupling is True


def test_dependency_waves(shipped: dict[str, TableMapping]) -> None:
    done: set[str] = set()
    waves = []
    while len(done) < len(shipped):
        wave = sorted(n for n, m in shipped.items() if n not in done and set(m.depends_on) <= done)
        assert wave
        waves.append(wave)
        done |= set(wave)
    assert waves == [["CURRENCY", "SALESPEOPLE"], ["CUSTOMER", "VENDOR"], ["CONTACT"]]


def test_effective_copies_are_the_shipped_defaults() -> None:
    shipped = {p.name: p.read_bytes() for p in mapping_files(DEFAULTS_DIR)}
    local = {p.name: p.read_bytes() for p in mapping_files(ROOT / "include" / "mappings")}
    assert local == shipped


def test_lookup_helpers(shipped: dict[str, TableMapping]) -> None:
    customer = shipped["CUSTOMER"]
    owner = next(f for f in customer.fields if f.dataverse == "ownerid")
    assert owner.dataverse_read_column == "_ownerid_value"
    assert owner.dataverse_bind_property == "ownerid@odata.bind"
    assert [f.dataverse for f in customer.lookups(Direction.TO_BUSINESS_CENTRAL)] == \
        ["transactioncurrencyid"]
    terms = next(f for f in customer.fields if f.value_map == "PAYMENT_TERMS")
    vm = customer.value_map_of(terms)
    assert vm is not None and vm.to_dataverse("net30") == 1 and vm.to_business_central(4) == "NET60"
    tables = {"paymentTerms.id->code": {"g1": "NET45"}, "paymentTerms.code->id": {"NET45": "g1"}}
    from bcdv.mapping.rules import apply_chain
    assert apply_chain(terms.rules_for(Direction.TO_DATAVERSE), "g1", tables) == "NET45"
    assert apply_chain(terms.rules_for(Direction.TO_BUSINESS_CENTRAL), "NET45", tables) == "g1"
