"""The transform stage as tables of input -> output (no network: reference tables given)."""

from __future__ import annotations

import pandas as pd
import pytest

from bcdv.engine.lookups import LookupTable, Tables
from bcdv.engine.transform import to_wire, transform
from bcdv.mapping.model import Direction, TableMapping

EUR_DV = "0b6c1f0e-0000-4000-8000-00000000e0e0"  # the Dataverse id of the EUR transaction currency

MAPPING = TableMapping.model_validate({
    "name": "CUSTOMER",
    "business_central": {"entity_set": "customers", "key": "id",
                         "modified_on": "lastModifiedDateTime"},
    "dataverse": {"entity_set": "accounts", "key": "accountid", "modified_on": "modifiedon"},
    "direction": "bidirectional",
    "value_maps": {"TERMS": {"unmapped": "keep", "values": [
        {"business_central": "NET30", "dataverse": 1}, {"business_central": "NET60",
                                                         "dataverse": 4}]}},
    "fields": [
        {"business_central": "displayName", "dataverse": "name",
         "transform": [{"type": "trim"}, {"type": "uppercase", "direction": "to_dataverse"}]},
        {"business_central": "paymentTermsId", "dataverse": "paymenttermscode",
         "value_map": "TERMS", "transform": [
             {"type": "field_lookup", "entity_set": "paymentTerms", "key": "id", "field": "code",
              "direction": "to_dataverse"},
             {"type": "field_lookup", "entity_set": "paymentTerms", "key": "code",
              "field": "id", "direction": "to_business_central"}]},
        {"business_central": "currencyCode", "dataverse": "transactioncurrencyid",
         "lookup": {"mapping": "CUSTOMER", "match_on": "code", "on_failure": "error"}},
    ],
})
NULL = "00000000-0000-0000-0000-000000000000"
TABLES = Tables(
    field_lookups={"paymentTerms.id->code": {"p30": "NET30", "p14": "14 DAYS"},
                   "paymentTerms.code->id": {"NET30": "p30", "NET60": "p60"}},
    lookups={"currencyCode -> transactioncurrencyid": LookupTable(
        target_entity_set="transactioncurrencies", value_to_bc_id={"EUR": "bc-eur"},
        bc_id_to_value={"bc-eur": "EUR"}, bc_to_dv={"bc-eur": EUR_DV},
        dv_to_bc={EUR_DV: "bc-eur"})},
)


@pytest.mark.parametrize(("row", "expected", "keep", "error"), [
    ({"displayName": " Adatum ", "paymentTermsId": "p30", "currencyCode": "EUR"},
     {"name": "ADATUM", "paymenttermscode": 1, "transactioncurrencyid@odata.bind": EUR_DV},
     [], None),
    ({"displayName": "X", "paymentTermsId": NULL, "currencyCode": ""},
     {"name": "X", "paymenttermscode": None, "transactioncurrencyid@odata.bind": None}, [], None),
    ({"displayName": "Y", "paymentTermsId": "p14", "currencyCode": ""},  # 14 DAYS: no option
     {"name": "Y", "transactioncurrencyid@odata.bind": None}, ["paymenttermscode"], None),
    ({"displayName": "Z", "paymentTermsId": "p30", "currencyCode": "GBP"},
     None, [], "currencyCode GBP must be coupled to a record in Dataverse"),
])
def test_to_dataverse(row, expected, keep, error) -> None:
    out = transform(pd.DataFrame([row], index=["r"]), MAPPING, Direction.TO_DATAVERSE, TABLES)
    if error:
        assert error in out.errors["r"]
        return
    assert out.errors["r"] is None
    assert [c for c in out.keep.columns if out.keep.at["r", c]] == keep
    assert {k: v for k, v in out.values.loc["r"].items() if k not in keep} == expected


@pytest.mark.parametrize(("row", "expected", "keep"), [
    ({"name": " Adatum ", "paymenttermscode": 4, "_transactioncurrencyid_value": EUR_DV},
     {"displayName": "Adatum", "paymentTermsId": "p60", "currencyCode": "EUR"}, []),
    ({"name": "B", "paymenttermscode": None, "_transactioncurrencyid_value": None},
     {"displayName": "B", "currencyCode": ""}, ["paymentTermsId"]),  # blank choice keeps BC
])
def test_to_business_central(row, expected, keep) -> None:
    out = transform(pd.DataFrame([row], index=["r"]), MAPPING, Direction.TO_BUSINESS_CENTRAL,
                    TABLES)
    assert out.errors["r"] is None
    assert [c for c in out.keep.columns if out.keep.at["r", c]] == keep
    assert {k: v for k, v in out.values.loc["r"].items() if k not in keep} == expected


def test_lookup_ids_become_binds_on_the_wire() -> None:
    wire = to_wire({"name": "A", "transactioncurrencyid@odata.bind": EUR_DV}, MAPPING,
                   Direction.TO_DATAVERSE, TABLES)
    assert wire == {"name": "A",
                    "transactioncurrencyid@odata.bind": f"/transactioncurrencies({EUR_DV})"}


def test_blank_code_is_blank_not_unmapped() -> None:
    out = transform(pd.DataFrame([{"displayName": "Q", "paymentTermsId": "",
                                   "currencyCode": ""}], index=["r"]),
                    MAPPING, Direction.TO_DATAVERSE, TABLES)
    assert out.errors["r"] is None and not out.keep.at["r", "paymenttermscode"]
    assert out.values.at["r", "paymenttermscode"] is None


def test_a_whole_chunk_in_one_call() -> None:
    rows = [{"displayName": f"N{i}", "paymentTermsId": "p30" if i % 2 else "p14",
             "currencyCode": "EUR" if i % 3 else ""} for i in range(300)]
    out = transform(pd.DataFrame(rows), MAPPING, Direction.TO_DATAVERSE, TABLES)
    assert out.errors.isna().all()
    assert int(out.keep["paymenttermscode"].sum()) == 150  # '14 DAYS' has no option: kept
    assert (out.values["transactioncurrencyid@odata.bind"] == EUR_DV).sum() == 200
