"""Dataverse schema discovery: ``EntityDefinitions`` as third-party clients read it.

Two discovery clients are reimplemented request for request:

* Airbyte's source-microsoft-dataverse (airbytehq/airbyte,
  airbyte-integrations/connectors/source-microsoft-dataverse/source_microsoft_dataverse/
  source.py ``discover``/``streams``, dataverse.py ``convert_dataverse_type``, streams.py);
* Microsoft's PowerPlatform-DataverseClient-Python 1.1.0 (PowerPlatform/Dataverse/data/
  _odata.py ``_entity_set_from_schema_name``, ``_get_entity_by_table_schema_name``,
  ``_get_attribute_metadata``, ``_get_column``, ``_bulk_fetch_picklists``; _odata_base.py
  ``_build_list_entities``).

The rest checks the query forms Learn documents for metadata and the ones it rules out. Only
standard tables are read, so every test runs unchanged against a real tenant.
"""
from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .wire import Api, error_of

QUERY_METADATA = ("https://learn.microsoft.com/power-apps/developer/data-platform/webapi/"
                  "query-metadata-web-api")
NS = "Microsoft.Dynamics.CRM"

# airbyte source_microsoft_dataverse/dataverse.py DataverseType -> AirbyteType
_STRING = {"type": ["null", "string"]}
_INTEGER = {"type": ["null", "integer"]}
_NUMBER = {"type": ["null", "number"]}
AIRBYTE_TYPES: dict[str, dict[str, Any] | None] = {
    "String": _STRING, "Uniqueidentifier": _STRING,
    "DateTime": {"type": ["null", "string"], "format": "date-time",
                 "airbyte_type": "timestamp_with_timezone"},
    "Integer": _INTEGER, "BigInt": _INTEGER, "Money": _NUMBER,
    "Boolean": {"type": ["null", "boolean"]}, "Double": _NUMBER, "Decimal": _NUMBER,
    "Status": _INTEGER, "State": _INTEGER, "Picklist": _INTEGER, "Lookup": _STRING,
    "Virtual": None}


def _convert_dataverse_type(dataverse_type: str) -> dict[str, Any] | None:
    """airbyte dataverse.py ``convert_dataverse_type`` (without the DateOnly branch)."""
    if dataverse_type in AIRBYTE_TYPES:
        return AIRBYTE_TYPES[dataverse_type]
    return _STRING


def _ok(r: Any) -> dict[str, Any]:
    assert r.status_code == 200, (r.request.url, r.status_code, r.text[:500])
    return dict(r.json())


def _rejected(r: Any) -> str:
    assert r.status_code == 400, (r.request.url, r.status_code, r.text[:500])
    return str(error_of(r)["message"])


def test_airbyte_discover_reads_tables_and_attributes(dv: Api) -> None:
    """Airbyte ``discover`` then ``streams``: every key it reads is there.

    https://learn.microsoft.com/power-apps/developer/data-platform/webapi/query-metadata-web-api
    """
    doc = _ok(dv.get("EntityDefinitions?$expand=Attributes"))
    streams = {}
    for entity in doc["value"]:
        schema: dict[str, Any] = {"properties": {}}
        for attribute in entity["Attributes"]:
            dataverse_type = attribute["AttributeType"]
            if dataverse_type == "Lookup":
                attribute["LogicalName"] = "_" + attribute["LogicalName"] + "_value"
            attribute_type = _convert_dataverse_type(dataverse_type)
            if not attribute_type:
                continue
            schema["properties"][attribute["LogicalName"]] = attribute_type
        incremental = bool(entity["CanChangeTrackingBeEnabled"]["Value"]
                           and entity["ChangeTrackingEnabled"])
        streams[entity["LogicalName"]] = (schema, incremental,
                                          [[entity["PrimaryIdAttribute"]]])
    schema, incremental, key = streams["account"]
    assert incremental and key == [["accountid"]]
    assert schema["properties"]["name"] == _STRING
    assert schema["properties"]["_primarycontactid_value"] == _STRING
    assert schema["properties"]["creditlimit"] == _NUMBER
    assert schema["properties"]["statecode"] == _INTEGER
    assert "modifiedon" in schema["properties"]
    # streams(): the stream path comes from the single-table read
    table = _ok(dv.get("EntityDefinitions(LogicalName='account')"))
    assert table["EntitySetName"] == table["LogicalCollectionName"] == "accounts"
    # IncrementalMicrosoftDataverseStream's first page: change tracking headers, deltatoken
    page = _ok(dv.get(table["EntitySetName"], headers={
        "Cache-Control": "no-cache", "OData-Version": "4.0", "Content-Type": "application/json",
        "Prefer": "odata.track-changes,odata.maxpagesize=5000"}))
    assert isinstance(page["value"], list)
    if "@odata.nextLink" not in page:
        query = dict(parse_qsl(urlsplit(page["@odata.deltaLink"]).query))
        assert query["$deltatoken"]


def test_sdk_resolves_a_table_by_logical_name(dv: Api) -> None:
    """SDK ``_get_entity_by_table_schema_name``: $select + $filter, MetadataId always there.

    https://learn.microsoft.com/power-apps/developer/data-platform/webapi/query-metadata-web-api
    """
    select = ("MetadataId,LogicalName,SchemaName,EntitySetName,PrimaryNameAttribute,"
              "PrimaryIdAttribute")
    items = _ok(dv.get("EntityDefinitions", params={
        "$select": select, "$filter": "LogicalName eq 'account'"}))["value"]
    assert len(items) == 1
    assert set(items[0]) == set(select.split(","))
    assert {k: v for k, v in items[0].items() if k != "MetadataId"} == {
        "LogicalName": "account", "SchemaName": "Account", "EntitySetName": "accounts",
        "PrimaryNameAttribute": "name", "PrimaryIdAttribute": "accountid"}
    only_id = _ok(dv.get("EntityDefinitions", params={
        "$select": "LogicalName", "$filter": "LogicalName eq 'contact'"}))["value"]
    assert set(only_id[0]) == {"LogicalName", "MetadataId"}


def test_sdk_lists_tables_with_is_private_and_parenthesised_filter(dv: Api) -> None:
    """SDK ``_build_list_entities``: ``IsPrivate eq false and (<filter>)``.

    https://learn.microsoft.com/power-apps/developer/data-platform/webapi/query-metadata-web-api
    """
    items = _ok(dv.get("EntityDefinitions?$filter=IsPrivate eq false and (SchemaName eq "
                       "'Account' or SchemaName eq 'Contact')&$select=LogicalName"))["value"]
    assert sorted(i["LogicalName"] for i in items) == ["account", "contact"]


def test_sdk_reads_columns_by_table_metadata_id(dv: Api) -> None:
    """SDK ``_get_attribute_metadata`` and ``_get_column``: Attributes of EntityDefinitions(id).

    https://learn.microsoft.com/power-apps/developer/data-platform/webapi/retrieve-metadata-name-metadataid
    """
    table = _ok(dv.get("EntityDefinitions(LogicalName='account')?$select=LogicalName"))
    base = f"EntityDefinitions({table['MetadataId']})/Attributes"
    found = _ok(dv.get(base, params={"$select": "MetadataId,LogicalName,SchemaName",
                                     "$filter": "LogicalName eq 'name'"}))["value"]
    assert [(a["LogicalName"], a["SchemaName"]) for a in found] == [("name", "Name")]
    column = _ok(dv.get(f"{base}(LogicalName='name')"))
    assert column["@odata.type"] == f"#{NS}.StringAttributeMetadata"
    assert (column["AttributeType"], column["AttributeTypeName"]["Value"]) == ("String",
                                                                               "StringType")
    assert column["MaxLength"] == 160 and column["IsPrimaryName"] and not column["IsPrimaryId"]
    assert column["RequiredLevel"]["Value"] == "ApplicationRequired"
    assert column["DisplayName"]["UserLocalizedLabel"]["Label"] == "Account Name"
    by_id = _ok(dv.get(f"{base}({column['MetadataId']})?$select=LogicalName"))
    assert by_id["LogicalName"] == "name"


def test_sdk_bulk_picklists_through_the_cast(dv: Api) -> None:
    """SDK ``_bulk_fetch_picklists``: the Picklist cast with ``$expand=OptionSet($select=Options)``.

    https://learn.microsoft.com/power-apps/developer/data-platform/webapi/query-metadata-web-api
    """
    items = _ok(dv.get(f"EntityDefinitions(LogicalName='account')/Attributes/{NS}."
                       "PicklistAttributeMetadata?$select=LogicalName"
                       "&$expand=OptionSet($select=Options)"))["value"]
    picklists = {i["LogicalName"]: {o["Value"]: o["Label"]["LocalizedLabels"][0]["Label"]
                                    for o in i["OptionSet"]["Options"]} for i in items}
    assert picklists["customertypecode"][3] == "Customer"
    assert "statecode" not in picklists  # a State attribute, not a Picklist


def test_table_definitions_match_the_table_reference(dv: Api) -> None:
    """EntityMetadata of the standard tables carry the values Learn's table references give.

    https://learn.microsoft.com/power-apps/developer/data-platform/reference/entities/account
    """
    expected = {
        "account": (1, "Account", "Accounts", "accounts", "accountid", "name", "UserOwned"),
        "contact": (2, "Contact", "Contacts", "contacts", "contactid", "fullname", "UserOwned"),
        "systemuser": (8, "SystemUser", "SystemUsers", "systemusers", "systemuserid",
                       "fullname", "BusinessOwned"),
        "team": (9, "Team", "Teams", "teams", "teamid", "name", "BusinessOwned"),
        "businessunit": (10, "BusinessUnit", "BusinessUnits", "businessunits",
                         "businessunitid", "name", "BusinessOwned"),
        "transactioncurrency": (9105, "TransactionCurrency", "TransactionCurrencies",
                                "transactioncurrencies", "transactioncurrencyid",
                                "currencyname", "OrganizationOwned")}
    select = ("ObjectTypeCode,SchemaName,CollectionSchemaName,EntitySetName,PrimaryIdAttribute,"
              "PrimaryNameAttribute,OwnershipType,IsActivity,IsIntersect,IsCustomEntity,"
              "IsValidForAdvancedFind,LogicalCollectionName,DisplayName,DisplayCollectionName")
    for logical, values in expected.items():
        doc = _ok(dv.get(f"EntityDefinitions(LogicalName='{logical}')?$select={select}"))
        assert tuple(doc[k] for k in ("ObjectTypeCode", "SchemaName", "CollectionSchemaName",
                                      "EntitySetName", "PrimaryIdAttribute",
                                      "PrimaryNameAttribute", "OwnershipType")) == values
        assert doc["LogicalCollectionName"] == doc["EntitySetName"]
        assert (doc["IsActivity"], doc["IsIntersect"], doc["IsCustomEntity"]) == (False,) * 3
        assert doc["IsValidForAdvancedFind"] is True
        for label in ("DisplayName", "DisplayCollectionName"):
            assert doc[label]["UserLocalizedLabel"]["Label"]
            assert doc[label]["LocalizedLabels"][0]["LanguageCode"]
    again = _ok(dv.get(f"EntityDefinitions({doc['MetadataId']})?$select=LogicalName"))
    assert again["LogicalName"] == "transactioncurrency"


def test_metadata_queries_reject_top(dv: Api) -> None:
    """No paging in metadata queries: ``$top`` is refused (only $select/$filter/$expand).

    https://learn.microsoft.com/power-apps/developer/data-platform/webapi/query-metadata-web-api
    """
    assert "The query parameter $top is not supported" in _rejected(
        dv.get("EntityDefinitions?$select=LogicalName&$top=1"))


def test_unknown_select_property_is_rejected(dv: Api) -> None:
    """``$select`` names EntityMetadata properties; another name is an error.

    https://learn.microsoft.com/power-apps/developer/data-platform/webapi/query-metadata-web-api
    """
    assert "NoSuchProperty" in _rejected(
        dv.get("EntityDefinitions?$select=LogicalName,NoSuchProperty"))


def test_enum_filter_needs_the_namespace(dv: Api) -> None:
    """``OwnershipType eq Microsoft.Dynamics.CRM.OwnershipTypes'UserOwned'``; bare string fails.

    https://learn.microsoft.com/power-apps/developer/data-platform/webapi/query-metadata-web-api#use-enum-types-in-filter-operations
    """
    names = {i["LogicalName"] for i in _ok(dv.get(
        f"EntityDefinitions?$select=LogicalName&$filter=OwnershipType eq {NS}.OwnershipTypes"
        "'UserOwned'"))["value"]}
    assert {"account", "contact"} <= names and "transactioncurrency" not in names
    _rejected(dv.get("EntityDefinitions?$select=LogicalName&$filter=OwnershipType eq "
                     "'UserOwned'"))


def test_managed_property_filter_one_level_deep(dv: Api) -> None:
    """``CanCreateAttributes/Value eq true``; Label properties cannot be filtered.

    https://learn.microsoft.com/power-apps/developer/data-platform/webapi/query-metadata-web-api#use-complex-types-in-filter-operations
    """
    names = {i["LogicalName"] for i in _ok(dv.get(
        "EntityDefinitions?$select=LogicalName&$filter=CanCreateAttributes/Value eq true and "
        "IsValidForAdvancedFind eq true"))["value"]}
    assert "account" in names
    _rejected(dv.get("EntityDefinitions?$select=LogicalName&$filter=DisplayName/"
                     "UserLocalizedLabel/Label eq 'Account'"))


def test_string_functions_are_not_metadata_operators(dv: Api) -> None:
    """Metadata conditions are Equals, NotEquals, In, NotIn, GreaterThan, LessThan: no contains.

    https://learn.microsoft.com/power-apps/developer/data-platform/webapi/reference/metadataconditionoperator
    """
    _rejected(dv.get("EntityDefinitions?$select=LogicalName&$filter=contains(LogicalName,"
                     "'account')"))
    tables = _ok(dv.get("EntityDefinitions?$select=LogicalName&$filter=ObjectTypeCode lt 3 "
                        "and ObjectTypeCode gt 1"))["value"]
    assert [t["LogicalName"] for t in tables] == ["contact"]


def test_expanded_attributes_filter_on_common_properties(dv: Api) -> None:
    """``$expand=Attributes($select=LogicalName;$filter=AttributeType eq ...'Picklist')``.

    https://learn.microsoft.com/power-apps/developer/data-platform/webapi/query-metadata-web-api#querying-entitymetadata-attributes
    """
    doc = _ok(dv.get(f"EntityDefinitions(LogicalName='account')?$select=LogicalName&$expand="
                     f"Attributes($select=LogicalName;$filter=AttributeType eq {NS}."
                     "AttributeTypeCode'Picklist')"))
    attrs = doc["Attributes"]
    assert "customertypecode" in {a["LogicalName"] for a in attrs}
    assert all(a["@odata.type"] == f"#{NS}.PicklistAttributeMetadata" for a in attrs)
    assert all(set(a) <= {"@odata.type", "LogicalName", "MetadataId"} for a in attrs)


def test_derived_properties_need_a_cast(dv: Api) -> None:
    """MaxLength, Precision: select them through a cast, not on AttributeMetadata.

    https://learn.microsoft.com/power-apps/developer/data-platform/webapi/query-metadata-web-api#querying-entitymetadata-attributes
    """
    base = "EntityDefinitions(LogicalName='account')/Attributes"
    _rejected(dv.get(f"{base}?$select=LogicalName,MaxLength"))
    strings = _ok(dv.get(f"{base}/{NS}.StringAttributeMetadata?$select=LogicalName,MaxLength"
                         "&$filter=LogicalName eq 'telephone1'"))["value"]
    assert [s["MaxLength"] for s in strings] == [50]
    money = {m["LogicalName"]: m for m in _ok(dv.get(
        f"{base}/{NS}.MoneyAttributeMetadata?$select=LogicalName,Precision"))["value"]}
    assert isinstance(money["creditlimit"]["Precision"], int)


def test_required_level_filter(dv: Api) -> None:
    """Attributes filtered on ``RequiredLevel/Value`` with an AttributeRequiredLevel member.

    https://learn.microsoft.com/power-apps/developer/data-platform/webapi/query-metadata-web-api#filtering-by-required-level
    """
    names = {a["SchemaName"] for a in _ok(dv.get(
        "EntityDefinitions(LogicalName='account')/Attributes?$select=SchemaName&$filter="
        f"RequiredLevel/Value eq {NS}.AttributeRequiredLevel'ApplicationRequired'"))["value"]}
    assert "Name" in names and "AccountId" not in names


def test_option_set_of_one_attribute_through_the_cast(dv: Api) -> None:
    """``Attributes(...)/Microsoft.Dynamics.CRM.PicklistAttributeMetadata`` and its OptionSet.

    https://learn.microsoft.com/power-apps/developer/data-platform/webapi/query-metadata-web-api#retrieving-attributes
    """
    base = "EntityDefinitions(LogicalName='account')/Attributes(LogicalName='customertypecode')"
    plain = _ok(dv.get(base))
    assert plain["AttributeType"] == "Picklist" and "OptionSet" not in plain
    typed = _ok(dv.get(f"{base}/{NS}.PicklistAttributeMetadata?$select=LogicalName"
                       "&$expand=OptionSet"))
    assert typed["OptionSet"]["OptionSetType"] == "Picklist"
    options = _ok(dv.get(f"{base}/{NS}.PicklistAttributeMetadata/OptionSet?$select=Options"))
    assert {o["Value"] for o in options["Options"]} >= {1, 3, 12}
    assert set(options) - {"@odata.context"} == {"Options", "MetadataId"}


def test_unknown_table_is_not_found(dv: Api) -> None:
    """A LogicalName no table has: 404.

    https://learn.microsoft.com/power-apps/developer/data-platform/webapi/retrieve-metadata-name-metadataid
    """
    r = dv.get("EntityDefinitions(LogicalName='bcdv_nosuchtable')")
    assert r.status_code == 404 and error_of(r)["message"]
