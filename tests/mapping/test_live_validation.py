"""``bcdv mappings validate --live`` against the emulators' $metadata and EntityDefinitions."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bcdv.cli import main
from bcdv.mapping import load_mapping_set
from bcdv.mapping.live import Column, DataverseMetadata, dataverse_column, parse_csdl, validate_live
from bcdv.mapping.loader import DEFAULTS_DIR


@pytest.fixture
def mdir(tmp_path: Path) -> Path:
    d = tmp_path / "mappings"
    shutil.copytree(DEFAULTS_DIR, d)
    return d


@pytest.fixture
def live_env(emulators, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "endpoints.json"
    path.write_text(json.dumps(emulators))
    monkeypatch.setenv("BCDV_ENDPOINTS", str(path))


def _errors(mdir: Path, endpoints) -> list[str]:
    return [str(f) for f in validate_live(load_mapping_set(mdir), endpoints)
            if f.level == "error"]


def test_shipped_mappings_pass(mdir: Path, endpoints) -> None:
    assert _errors(mdir, endpoints) == []


def test_renamed_field_fails_with_file_line_and_path(mdir: Path, endpoints) -> None:
    path = mdir / "currency.yaml"
    path.write_text(path.read_text().replace("dataverse: currencysymbol",
                                             "dataverse: currencysign"))
    line = next(i for i, t in enumerate(path.read_text().splitlines(), 1) if "currencysign" in t)
    errors = _errors(mdir, endpoints)
    assert f"{path}:{line}: fields[1].dataverse: error: 'currencysign' does not exist on " \
           "Dataverse transactioncurrencies" in errors


def test_filters_are_tried_on_the_services(mdir: Path, endpoints) -> None:
    path = mdir / "vendor.yaml"
    path.write_text(path.read_text().replace("customertypecode eq 11", "customertype eq 11"))
    line = next(i for i, t in enumerate(path.read_text().splitlines(), 1)
                if "customertype eq 11" in t)
    errors = _errors(mdir, endpoints)
    assert any(e.startswith(f"{path}:{line}: dataverse.filter: error: Dataverse rejects the "
                            "filter: ") and "customertype" in e for e in errors), errors


def test_bc_field_and_value_map_option_are_checked(mdir: Path, endpoints) -> None:
    path = mdir / "customer.yaml"
    text = path.read_text().replace("business_central: phoneNumber, dataverse: telephone1",
                                    "business_central: phone, dataverse: telephone1")
    text = text.replace("{business_central: NET60, dataverse: 4,", "{business_central: NET60, "
                        "dataverse: 9,")
    path.write_text(text.replace("[displayName, phoneNumber]", "[displayName, phone]"))
    errors = "\n".join(_errors(mdir, endpoints))
    assert "fields[11].business_central: error: 'phone' does not exist on Business Central " \
           "customers" in errors
    assert "value_maps.PAYMENT_TERMS: error: option value(s) 9 are not in the option set of " \
           "'paymenttermscode' (1, 2, 3, 4)" in errors


def test_cli_validate_live(capsys, mdir: Path, live_env) -> None:
    code = main(["--mappings", str(mdir), "--json", "mappings", "validate", "--live"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0 and doc["valid"] is True
    assert [f for f in doc["findings"] if f["level"] == "error"] == []
    warnings = [f for f in doc["findings"] if f["level"] == "warning"]
    assert any("'isocurrencycode' can only be set when the Dataverse record is created"
               in f["message"] for f in warnings)
    path = mdir / "salespeople.yaml"
    path.write_text(path.read_text().replace("business_central: phoneNo,",
                                             "business_central: phoneNumber,"))
    code = main(["--mappings", str(mdir), "mappings", "validate", "--live"])
    out = capsys.readouterr().out
    assert code == 1
    assert "fields[2].business_central: error: 'phoneNumber' does not exist on Business " \
           "Central salespeoplePurchasers" in out


CSDL = """<?xml version="1.0" encoding="utf-8"?>
<edmx:Edmx Version="4.0" xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx">
 <edmx:DataServices>
  <Schema Namespace="Microsoft.NAV" xmlns="http://docs.oasis-open.org/odata/ns/edm">
   <EnumType Name="customerBlocked"><Member Name="_x0020_" Value="0"/></EnumType>
   <EntityType Name="customer">
    <Key><PropertyRef Name="id"/></Key>
    <Property Name="id" Type="Edm.Guid" Nullable="false"/>
    <Property Name="displayName" Type="Edm.String" MaxLength="100"/>
    <Property Name="blocked" Type="Microsoft.NAV.customerBlocked"/>
    <Property Name="balanceDue" Type="Edm.Decimal" Scale="Variable">
     <Annotation Term="Org.OData.Core.V1.Computed" Bool="true"/>
    </Property>
   </EntityType>
   <EntityContainer Name="NAV">
    <EntitySet Name="customers" EntityType="Microsoft.NAV.customer"/>
   </EntityContainer>
  </Schema>
 </edmx:DataServices>
</edmx:Edmx>"""


def test_parse_csdl_microsoft_shape() -> None:
    cols = parse_csdl(CSDL)["customers"]
    assert (cols["displayName"].kind, cols["displayName"].max_length) == ("text", 100)
    assert cols["blocked"].kind == "enum" and cols["id"].kind == "guid"
    assert cols["balanceDue"].read_only and not cols["displayName"].read_only


def test_dataverse_attribute_metadata_shape() -> None:
    col = dataverse_column({
        "@odata.type": "#Microsoft.Dynamics.CRM.PicklistAttributeMetadata",
        "LogicalName": "paymenttermscode", "AttributeType": "Picklist",
        "IsValidForCreate": True, "IsValidForUpdate": True,
        "OptionSet": {"Options": [{"Value": 1, "Label": {}}, {"Value": 2, "Label": {}}]}})
    assert col.kind == "option" and col.options == frozenset({1, 2})
    iso = dataverse_column({"LogicalName": "isocurrencycode", "AttributeType": "String",
                            "MaxLength": 5, "IsValidForCreate": True,
                            "IsValidForUpdate": False})
    assert iso.create_only and not iso.read_only and iso.max_length == 5


def test_option_sets_through_the_picklist_cast(endpoints) -> None:
    """Real Dataverse lists attributes without OptionSet; the checker then uses the cast."""
    from bcdv.clients.dataverse import DataverseClient

    client = DataverseClient(endpoints.dataverse)
    try:
        md = DataverseMetadata(client)
        bare = Column("address1_shippingmethodcode", "Picklist", "option")
        assert md.options("accounts", bare) == frozenset(range(1, 8))
        assert md.options("accounts", Column("statecode", "State", "option")) == {0, 1}
    finally:
        client.close()
