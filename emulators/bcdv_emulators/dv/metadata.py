"""Dataverse ``$metadata`` and the ``EntityDefinitions`` metadata entity set.

``EntityDefinitions`` answers as Learn documents it ("Query table definitions using the Web
API", https://learn.microsoft.com/power-apps/developer/data-platform/webapi/query-metadata-web-api,
and the "EntityMetadata EntityType" / "AttributeMetadata EntityType" references):

* paths: ``EntityDefinitions``, ``EntityDefinitions(<MetadataId>)`` or ``(LogicalName='x')``,
  then ``/Attributes``, ``/Attributes/Microsoft.Dynamics.CRM.<Type>AttributeMetadata`` (a cast),
  ``/Attributes(<MetadataId>|LogicalName='x')[/<cast>][/OptionSet|/GlobalOptionSet]``, ``/Keys``;
* only ``$select``, ``$filter`` and ``$expand``: anything else, e.g. ``$top``, is rejected with
  "The query parameter $top is not supported." (no paging: every match comes in one response);
  ``MetadataId`` is always returned, an unknown ``$select``/``$expand`` name is rejected;
* ``$filter``: ``and``/``or``/parentheses of ``eq``/``ne``/``gt``/``lt`` comparisons (the
  operators of MetadataConditionExpression) on primitive and enumeration properties, enum values
  with their namespace (``OwnershipType eq Microsoft.Dynamics.CRM.OwnershipTypes'UserOwned'``),
  one level into a managed property (``CanCreateAttributes/Value eq true``); not on Label
  properties, and no functions (``contains``, ``startswith``: "no API supports this today");
* ``Attributes`` without a cast offer AttributeMetadata's own properties to ``$select`` and
  ``$filter`` (each item still carries its derived type's properties and ``@odata.type``); the
  ``OptionSet``/``GlobalOptionSet`` navigation properties exist only after a cast to a choice
  type, and come back only through ``$expand``.

Tables are the served schema's (their EntityMetadata facts in ``schema.TABLES``); lookups'
``name``/``yominame`` companion attributes (``AttributeOf``) are not listed, because the emulator
does not serve them as columns.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote
from xml.sax.saxutils import escape

from bcdv_emulators.base import Req, Resp
from bcdv_emulators.dv.schema import (
    BY_LOGICAL,
    BY_SET,
    CHANGE_TRACKED,
    ENTITIES,
    STATUS_STATE,
    TABLES,
    EntityDef,
    label_of,
    schema_name,
)
from bcdv_emulators.dv.values import DVError
from bcdv_emulators.model import Prop
from bcdv_emulators.seeds import gid

if TYPE_CHECKING:
    from bcdv_emulators.dv.service import DVService

NS = "Microsoft.Dynamics.CRM"
# kind -> (AttributeType, derived AttributeMetadata type)
ATTRIBUTE_TYPES = {"guid": ("Uniqueidentifier", "UniqueIdentifierAttributeMetadata"),
                   "string": ("String", "StringAttributeMetadata"),
                   "memo": ("Memo", "MemoAttributeMetadata"),
                   "int": ("Integer", "IntegerAttributeMetadata"),
                   "bigint": ("BigInt", "BigIntAttributeMetadata"),
                   "decimal": ("Decimal", "DecimalAttributeMetadata"),
                   "money": ("Money", "MoneyAttributeMetadata"),
                   "double": ("Double", "DoubleAttributeMetadata"),
                   "bool": ("Boolean", "BooleanAttributeMetadata"),
                   "datetime": ("DateTime", "DateTimeAttributeMetadata"),
                   "date": ("DateTime", "DateTimeAttributeMetadata"),
                   "option": ("Picklist", "PicklistAttributeMetadata"),
                   "lookup": ("Lookup", "LookupAttributeMetadata")}
# Types a cast segment may name (AttributeMetadata's derived types; EnumAttributeMetadata is
# not castable, Learn: "you cannot cast the attributes to this type").
CASTS = {t for _, t in ATTRIBUTE_TYPES.values()} | {
    "StateAttributeMetadata", "StatusAttributeMetadata", "EntityNameAttributeMetadata",
    "MultiSelectPicklistAttributeMetadata", "FileAttributeMetadata", "ImageAttributeMetadata",
    "ManagedPropertyAttributeMetadata"}
CHOICE_TYPES = {"PicklistAttributeMetadata", "StateAttributeMetadata", "StatusAttributeMetadata",
                "BooleanAttributeMetadata", "MultiSelectPicklistAttributeMetadata",
                "EntityNameAttributeMetadata"}
ENTITY_NAVS = ("Attributes", "Keys", "ManyToOneRelationships", "OneToManyRelationships",
               "ManyToManyRelationships")
ENUMS = {"OwnershipType": ("OwnershipTypes", {"None", "UserOwned", "TeamOwned", "BusinessOwned",
                                              "OrganizationOwned", "BusinessParented"}),
         "AttributeType": ("AttributeTypeCode", {
             "Boolean", "Customer", "DateTime", "Decimal", "Double", "Integer", "Lookup", "Memo",
             "Money", "Owner", "PartyList", "Picklist", "State", "Status", "String",
             "Uniqueidentifier", "CalendarRules", "Virtual", "BigInt", "ManagedProperty",
             "EntityName"}),
         "RequiredLevel/Value": ("AttributeRequiredLevel", {
             "None", "SystemRequired", "ApplicationRequired", "Recommended"})}
QUERY_OPTIONS = {"$select", "$filter", "$expand"}
STRING_FORMATS = {"emailaddress1": "Email", "emailaddress2": "Email",
                  "internalemailaddress": "Email", "websiteurl": "Url", "telephone1": "Phone",
                  "telephone2": "Phone", "mobilephone": "Phone", "fax": "Phone",
                  "address1_telephone1": "Phone", "address1_fax": "Phone"}
DEFAULT_RANGES = {"int": (-2147483648, 2147483647),
                  "bigint": (-9223372036854775808, 9223372036854775807),
                  "money": (-922337203685477, 922337203685477),
                  "decimal": (-100000000000, 100000000000),
                  "double": (-100000000000, 100000000000)}
PRECISION = {"money": 2, "decimal": 10, "double": 5}


def _bad(message: str, status: int = 400, code: str = "0x80060888") -> DVError:
    return DVError(status, code, message)


def _no_property(name: str, type_name: str) -> DVError:
    return _bad(f"Could not find a property named '{name}' on type '{NS}.{type_name}'.")


# --- documents ----------------------------------------------------------------------------------


def _label(text: str, *id_parts: object) -> dict[str, Any]:
    loc = {"Label": text, "LanguageCode": 1033, "IsManaged": True,
           "MetadataId": gid("dv", "label", *id_parts), "HasChanged": None}
    return {"LocalizedLabels": [loc], "UserLocalizedLabel": dict(loc)}


def _no_label() -> dict[str, Any]:
    return {"LocalizedLabels": [], "UserLocalizedLabel": None}


def _managed(value: Any, can_change: bool, name: str) -> dict[str, Any]:
    """A BooleanManagedProperty (or another managed property with a ``Value``)."""
    return {"Value": value, "CanBeChanged": can_change, "ManagedPropertyLogicalName": name}


def entity_id(ent: EntityDef) -> str:
    """The table's MetadataId (a system table's real one where Learn shows it)."""
    return TABLES[ent.logical_name].metadata_id or gid("dv", "entity", ent.logical_name)


def definition(ent: EntityDef) -> dict[str, Any]:
    """The EntityMetadata of a served table, without navigation properties."""
    t, name = TABLES[ent.logical_name], ent.logical_name
    tracked, customer, stateful = (ent.set_name in CHANGE_TRACKED, t.activities,
                                   "statecode" in ent.by_name)
    return {
        "MetadataId": entity_id(ent), "HasChanged": None, "ActivityTypeMask": 0,
        "AutoCreateAccessTeams": False, "AutoRouteToOwnerQueue": False,
        "CanBeInCustomEntityAssociation": _managed(True, False,
                                                   "canbeincustomentityassociation"),
        "CanBeInManyToMany": _managed(True, False, "canbeinmanytomany"),
        "CanBePrimaryEntityInRelationship": _managed(True, False,
                                                     "canbeprimaryentityinrelationship"),
        "CanBeRelatedEntityInRelationship": _managed(True, False,
                                                     "canberelatedentityinrelationship"),
        "CanChangeHierarchicalRelationship": _managed(True, False,
                                                      "canchangehierarchicalrelationship"),
        "CanChangeTrackingBeEnabled": _managed(True, True, "canchangetracking"),
        "CanCreateAttributes": _managed(True, False, "cancreateattributes"),
        "CanCreateCharts": _managed(True, False, "cancreatecharts"),
        "CanCreateForms": _managed(True, False, "cancreateforms"),
        "CanCreateViews": _managed(True, False, "cancreateviews"),
        "CanEnableSyncToExternalSearchIndex": _managed(True, False,
                                                       "canenablesynctoexternalsearchindex"),
        "CanModifyAdditionalSettings": _managed(True, True, "canmodifyadditionalsettings"),
        "CanTriggerWorkflow": True, "ChangeTrackingEnabled": tracked,
        "CollectionSchemaName": t.collection_schema_name, "CreatedOn": None,
        "DataProviderId": None, "DataSourceId": None, "DaysSinceRecordLastModified": 0,
        "Description": _label(t.description, name, "description"),
        "DisplayCollectionName": _label(t.display_collection_name, name, "collection"),
        "DisplayName": _label(t.display_name, name, "display"),
        "EnforceStateTransitions": False, "EntityColor": None, "EntityHelpUrl": None,
        "EntityHelpUrlEnabled": False, "EntitySetName": ent.set_name,
        "ExternalCollectionName": None, "ExternalName": None, "HasActivities": customer,
        "HasEmailAddresses": customer or name == "systemuser", "HasFeedback": False,
        "HasNotes": customer, "IconLargeName": None, "IconMediumName": None,
        "IconSmallName": None, "IconVectorName": None, "IntroducedVersion": "5.0.0.0",
        "IsActivity": False, "IsActivityParty": customer or name == "systemuser",
        "IsAIRelated": False, "IsAuditEnabled": _managed(customer, True,
                                                         "canmodifyauditsettings"),
        "IsAvailableOffline": customer, "IsBPFEntity": False,
        "IsBusinessProcessEnabled": customer, "IsChildEntity": False,
        "IsConnectionsEnabled": _managed(customer, True, "canmodifyconnectionsettings"),
        "IsCustomEntity": False, "IsCustomizable": _managed(True, False, "iscustomizable"),
        "IsDocumentManagementEnabled": False, "IsDocumentRecommendationsEnabled": False,
        "IsDuplicateDetectionEnabled": _managed(customer, True,
                                                "canmodifyduplicatedetectionsettings"),
        "IsEnabledForCharts": True, "IsEnabledForExternalChannels": False,
        "IsEnabledForTrace": False, "IsImportable": True, "IsInteractionCentricEnabled": False,
        "IsIntersect": False, "IsKnowledgeManagementEnabled": False, "IsLogicalEntity": False,
        "IsMailMergeEnabled": _managed(customer, True, "canmodifymailmergesettings"),
        "IsManaged": True, "IsMappable": _managed(True, False, "ismappable"),
        "IsMSTeamsIntegrationEnabled": False,
        "IsOfflineInMobileClient": _managed(customer, True, "canmodifymobileclientoffline"),
        "IsOneNoteIntegrationEnabled": False, "IsOptimisticConcurrencyEnabled": True,
        "IsPrivate": False, "IsQuickCreateEnabled": customer, "IsReadingPaneEnabled": True,
        "IsReadOnlyInMobileClient": _managed(False, True, "canmodifymobileclientreadonly"),
        "IsRenameable": _managed(True, False, "isrenameable"), "IsRetentionEnabled": False,
        "IsRetrieveAuditEnabled": False, "IsRetrieveMultipleAuditEnabled": False,
        "IsSLAEnabled": False, "IsSolutionAware": False, "IsStateModelAware": stateful,
        "IsValidForAdvancedFind": True,
        "IsValidForQueue": _managed(False, True, "canmodifyqueuesettings"),
        "IsVisibleInMobile": _managed(customer, False, "canmodifymobilevisibility"),
        "IsVisibleInMobileClient": _managed(customer, True, "canmodifymobileclientvisibility"),
        "LogicalCollectionName": ent.set_name, "LogicalName": name, "MobileOfflineFilters": None,
        "ModifiedOn": None, "ObjectTypeCode": t.object_type_code, "OwnershipType": t.ownership,
        "PrimaryIdAttribute": ent.key, "PrimaryImageAttribute": None,
        "PrimaryNameAttribute": ent.primary_name, "RecurrenceBaseEntityLogicalName": None,
        "ReportViewName": f"Filtered{t.schema_name}", "SchemaName": t.schema_name,
        "SettingOf": None, "Settings": [], "SyncToExternalSearchIndex": customer,
        "TableType": "Standard", "UsesBusinessDataLabelTable": False}


def _types(ent: EntityDef, p: Prop) -> tuple[str, str]:
    """(AttributeType, derived metadata type) of a served column."""
    atype, odtype = ATTRIBUTE_TYPES[p.kind]
    if p.name == "statecode":
        return "State", "StateAttributeMetadata"
    if p.name == "statuscode":
        return "Status", "StatusAttributeMetadata"
    if p.kind == "lookup" and p.name == "ownerid":
        return "Owner", odtype
    if p.kind == "lookup" and len({e for sets in p.targets.values() for e in sets}) > 1:
        return "Customer", odtype
    return atype, odtype


def _required(ent: EntityDef, p: Prop) -> str:
    """RequiredLevel: the key, owner and state are SystemRequired in every table."""
    if p.name in (ent.key, "ownerid", "statecode"):
        return "SystemRequired"
    return p.required_level


def attribute(ent: EntityDef, p: Prop) -> dict[str, Any]:
    """The AttributeMetadata (of its derived type) of one served column."""
    atype, odtype = _types(ent, p)
    is_key = p.name == ent.key
    level = _required(ent, p)
    doc: dict[str, Any] = {
        "@odata.type": f"#{NS}.{odtype}",
        "MetadataId": gid("dv", "attribute", ent.logical_name, p.name), "HasChanged": None,
        "AttributeOf": None, "AttributeType": atype,
        "AttributeTypeName": {"Value": f"{atype}Type"}, "AutoNumberFormat": None,
        "CanBeSecuredForCreate": False, "CanBeSecuredForRead": False,
        "CanBeSecuredForUpdate": False,
        "CanModifyAdditionalSettings": _managed(True, False, "canmodifyadditionalsettings"),
        "ColumnNumber": ent.props.index(p) + 1, "CreatedOn": None, "DeprecatedVersion": None,
        "Description": _no_label(),
        "DisplayName": _label(label_of(ent, p), ent.logical_name, p.name),
        "EntityLogicalName": ent.logical_name, "ExternalName": None, "InheritsFrom": None,
        "IntroducedVersion": "5.0.0.0",
        "IsAuditEnabled": _managed(True, True, "canmodifyauditsettings"),
        "IsCustomAttribute": False, "IsCustomizable": _managed(True, False, "iscustomizable"),
        "IsDataSourceSecret": False, "IsFilterable": True,
        "IsGlobalFilterEnabled": _managed(False, True, "canmodifyglobalfiltersettings"),
        "IsLogical": p.name.endswith("_composite"), "IsManaged": True, "IsPrimaryId": is_key,
        "IsPrimaryName": p.name == ent.primary_name,
        "IsRenameable": _managed(True, False, "isrenameable"), "IsRequiredForForm": False,
        "IsRetrievable": True, "IsSearchable": p.kind in ("string", "memo"),
        "IsSecured": False,
        "IsSortableEnabled": _managed(False, True, "canmodifyissortablesettings"),
        "IsValidForAdvancedFind": _managed(True, False, "canmodifysearchsettings"),
        "IsValidForCreate": not p.read_only,
        "IsValidForForm": not is_key, "IsValidForGrid": True, "IsValidForRead": True,
        "IsValidForUpdate": not p.read_only and not p.create_only and not is_key,
        "IsValidODataAttribute": True, "LinkedAttributeId": None, "LogicalName": p.name,
        "ModifiedOn": None,
        "RequiredLevel": {"Value": level, "CanBeChanged": level != "SystemRequired",
                          "ManagedPropertyLogicalName": "canmodifyrequirementlevelsettings"},
        "SchemaName": schema_name(p.name), "Settings": [], "SourceType": 0}
    doc.update(_derived(ent, p, odtype))
    return doc


def _derived(ent: EntityDef, p: Prop, odtype: str) -> dict[str, Any]:
    """The properties a derived AttributeMetadata type adds."""
    if p.kind in ("string", "memo"):
        fmt = "TextArea" if p.kind == "memo" else STRING_FORMATS.get(p.name, "Text")
        return {"MaxLength": p.max_len, "DatabaseLength": (p.max_len or 0) * 2, "Format": fmt,
                "FormatName": {"Value": fmt}, "ImeMode": "Auto", "IsLocalizable": False,
                **({"YomiOf": None} if p.kind == "string" else {})}
    if p.kind in DEFAULT_RANGES:
        lo, hi = DEFAULT_RANGES[p.kind]
        doc: dict[str, Any] = {"MinValue": lo if p.min_value is None else p.min_value,
                               "MaxValue": hi if p.max_value is None else p.max_value,
                               "ImeMode": "Disabled", "SourceTypeMask": 0}
        if p.kind in PRECISION:
            exact = ent.logical_name == "transactioncurrency" and p.name == "exchangerate"
            doc["Precision"] = 12 if exact else PRECISION[p.kind]
        if p.kind == "money":
            doc.update({"PrecisionSource": 2, "IsBaseCurrency": p.name.endswith("_base"),
                        "CalculationOf": None})
        if p.kind == "int":
            doc["Format"] = "None"
        return doc
    if p.kind in ("datetime", "date"):
        behavior = "DateOnly" if p.kind == "date" else "UserLocal"
        return {"Format": "DateOnly" if p.kind == "date" else "DateAndTime",
                "DateTimeBehavior": {"Value": behavior}, "ImeMode": "Inactive",
                "CanChangeDateTimeBehavior": _managed(False, False,
                                                      "canchangedatetimebehavior"),
                "MinSupportedValue": "1753-01-01T00:00:00Z",
                "MaxSupportedValue": "9999-12-30T23:59:59Z", "SourceTypeMask": 0}
    if p.kind == "lookup":
        return {"Targets": sorted({BY_SET[s].logical_name for sets in p.targets.values()
                                   for s in sets}), "Format": "None"}
    if p.kind == "bool":
        return {"DefaultValue": bool(p.default), "FormulaDefinition": None,
                "SourceTypeMask": 0}
    if odtype in CHOICE_TYPES:
        default = {"StateAttributeMetadata": 0, "StatusAttributeMetadata": -1}.get(odtype)
        return {"DefaultFormValue": default if default is not None else
                (p.default if p.default is not None else -1),
                "FormulaDefinition": None, "SourceTypeMask": 0,
                **({"ParentPicklistLogicalName": None, "ChildPicklistLogicalNames": []}
                   if odtype == "PicklistAttributeMetadata" else {})}
    return {}


def option_set(ent: EntityDef, p: Prop) -> dict[str, Any]:
    """The OptionSet navigation property of a choice or Yes/No column (local option sets)."""
    _, odtype = _types(ent, p)
    name = f"{ent.logical_name}_{p.name}"
    base = {"MetadataId": gid("dv", "optionset", name), "HasChanged": None,
            "IsCustomOptionSet": False, "IsGlobal": False, "IsManaged": True, "Name": name,
            "ExternalTypeName": None, "IntroducedVersion": "5.0.0.0",
            "Description": _no_label(), "DisplayName": _label(label_of(ent, p), name),
            "IsCustomizable": _managed(True, False, "iscustomizable")}
    if p.kind == "bool":
        return {**base, "OptionSetType": "Boolean",
                "TrueOption": _option(name, 1, "Yes"), "FalseOption": _option(name, 0, "No")}
    kind = odtype.removesuffix("AttributeMetadata")
    options = []
    for value, text in p.options.items():
        opt = _option(name, value, text)
        if kind == "State":
            default = next(s for s, st in STATUS_STATE.items() if st == value)
            opt = {"@odata.type": f"#{NS}.StateOptionMetadata", **opt,
                   "DefaultStatus": default, "InvariantName": text}
        elif kind == "Status":
            opt = {"@odata.type": f"#{NS}.StatusOptionMetadata", **opt,
                   "State": STATUS_STATE[value], "TransitionData": None}
        options.append(opt)
    return {**base, "OptionSetType": kind, "ParentOptionSetName": None, "Options": options}


def _option(set_name: str, value: int, text: str) -> dict[str, Any]:
    return {"Value": value, "Color": None, "IsManaged": True, "ExternalValue": "",
            "ParentValues": [], "Tag": None, "IsHidden": False, "MetadataId": None,
            "HasChanged": None, "Label": _label(text, set_name, value),
            "Description": _no_label()}


def attributes(ent: EntityDef) -> list[dict[str, Any]]:
    """AttributeMetadata of every served column."""
    return [attribute(ent, p) for p in ent.props if not p.hidden]


def keys(svc: DVService, ent: EntityDef) -> list[dict[str, Any]]:
    """EntityKeyMetadata of the configured alternate keys."""
    out = []
    for cols in svc.alt_keys.get(ent.set_name, []):
        name = f"{ent.logical_name}_{'_'.join(cols)}_key"
        out.append({"MetadataId": gid("dv", "key", ent.logical_name, *cols), "HasChanged": None,
                    "LogicalName": name, "SchemaName": name,
                    "EntityLogicalName": ent.logical_name, "KeyAttributes": list(cols),
                    "EntityKeyIndexStatus": "Active", "IsManaged": False,
                    "IsCustomizable": _managed(True, False, "iscustomizable"),
                    "IntroducedVersion": "1.0", "AsyncJob": None,
                    "DisplayName": _label(", ".join(cols), name)})
    return out


# --- property catalogues (what $select, $filter and $expand may name) --------------------------


@cache
def _catalogue(type_name: str) -> dict[str, Any]:
    """Property name -> a sample value, for EntityMetadata, AttributeMetadata or a derived type."""
    if type_name == "EntityMetadata":
        return {**definition(ENTITIES[0]), **{n: [] for n in ENTITY_NAVS}}
    if type_name == "EntityKeyMetadata":
        return dict(keys_sample())
    samples = [attribute(e, p) for e in ENTITIES for p in e.props if not p.hidden]
    common = set.intersection(*(set(s) for s in samples)) - {"@odata.type"}
    if type_name == "AttributeMetadata":
        return {k: samples[0][k] for k in common}
    out: dict[str, Any] = {}
    for s in samples:
        if s["@odata.type"] == f"#{NS}.{type_name}":
            out.update({k: v for k, v in s.items() if k != "@odata.type"})
    out.update({k: samples[0][k] for k in common})
    if type_name in CHOICE_TYPES:
        out.update({"OptionSet": {}, "GlobalOptionSet": {}})
    return out


def keys_sample() -> dict[str, Any]:
    """A sample EntityKeyMetadata (its property names)."""
    return {"MetadataId": "", "HasChanged": None, "LogicalName": "", "SchemaName": "",
            "EntityLogicalName": "", "KeyAttributes": [], "EntityKeyIndexStatus": "",
            "IsManaged": False, "IsCustomizable": _managed(True, False, "iscustomizable"),
            "IntroducedVersion": "", "AsyncJob": None, "DisplayName": _no_label()}


NAVIGATION = {"EntityMetadata": set(ENTITY_NAVS), **{t: {"OptionSet", "GlobalOptionSet"}
                                                      for t in CHOICE_TYPES}}


def _is_label(value: Any) -> bool:
    return isinstance(value, dict) and "LocalizedLabels" in value


# --- query options ------------------------------------------------------------------------------


def _split(text: str, sep: str) -> list[str]:
    """Split at ``sep`` outside parentheses and quotes."""
    out, depth, quoted, cur = [], 0, False, ""
    for ch in text:
        if ch == "'":
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")":
            depth -= 1
        if ch == sep and depth == 0 and not quoted:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    out.append(cur)
    return [x.strip() for x in out if x.strip()]


def _expand(text: str | None) -> dict[str, dict[str, str]]:
    """``$expand`` -> navigation property -> nested options (``$select``, ``$filter``)."""
    out: dict[str, dict[str, str]] = {}
    for item in _split(text or "", ","):
        m = re.fullmatch(r"([\w.]+)\s*(?:\((.*)\))?", item, re.S)
        if not m:
            raise _bad(f"Syntax error in the $expand query option '{item}'.")
        nested: dict[str, str] = {}
        for opt in _split(m.group(2) or "", ";"):
            k, _, v = opt.partition("=")
            if k.strip() not in ("$select", "$filter"):
                raise _bad(f"The query parameter {k.strip()} is not supported.")
            nested[k.strip()] = v.strip()
        out[m.group(1)] = nested
    return out


def _check_options(req: Req) -> None:
    for k, _ in req.query:
        if k.startswith("$") and k not in QUERY_OPTIONS:
            raise _bad(f"The query parameter {k} is not supported.")


def _selected(select: str | None, type_name: str) -> list[str] | None:
    if not select:
        return None
    names = [s.strip() for s in select.split(",") if s.strip()]
    props = _catalogue(type_name)
    for n in names:
        if n != "*" and (n not in props or n in NAVIGATION.get(type_name, ())):
            raise _no_property(n, type_name)
    return None if "*" in names else names


def _project(doc: dict[str, Any], names: list[str] | None, keep: tuple[str, ...] = ()) -> dict:
    if names is None:
        return doc
    wanted = set(names) | {"MetadataId", "@odata.type", *keep}
    return {k: v for k, v in doc.items() if k in wanted}


# --- $filter --------------------------------------------------------------------------------------

TOKEN = re.compile(r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<enum>[A-Za-z][\w.]*'(?:[^']|'')*')"
                   r"|(?P<guid>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                   r"[0-9a-fA-F]{12})|(?P<num>-?\d+(?:\.\d+)?)|(?P<name>[A-Za-z_]\w*(?:/\w+)*)"
                   r"|(?P<punct>[(),]))")
OPS = {"eq": "Equal", "ne": "NotEqual", "gt": "GreaterThan", "lt": "LessThan"}
Pred = Callable[[dict[str, Any]], bool]


def _edm(value: Any) -> str:
    return ("Edm.Boolean" if isinstance(value, bool) else "Edm.Int32" if isinstance(value, int)
            else "Edm.Double" if isinstance(value, float) else "Edm.Guid"
            if isinstance(value, str) and re.fullmatch(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}",
                                                       value) else "Edm.String")


class _Filter:
    """A recursive-descent parser of the metadata ``$filter`` subset into a predicate."""

    def __init__(self, text: str, type_name: str) -> None:
        self.text, self.type_name = text, type_name
        self.props = _catalogue(type_name)
        self.tokens: list[tuple[str, str]] = []
        pos = 0
        while pos < len(text):
            m = TOKEN.match(text, pos)
            if not m or m.end() == pos:
                if text[pos:].strip():
                    raise _bad(f"Syntax error at position {pos} in '{text}'.")
                break
            kind = m.lastgroup or ""
            self.tokens.append((kind, m.group(kind)))
            pos = m.end()
        self.i = 0

    def parse(self) -> Pred:
        pred = self._or()
        if self.i < len(self.tokens):
            raise _bad(f"Syntax error at '{self.tokens[self.i][1]}' in '{self.text}'.")
        return pred

    def _peek(self) -> str:
        return self.tokens[self.i][1] if self.i < len(self.tokens) else ""

    def _next(self) -> tuple[str, str]:
        if self.i >= len(self.tokens):
            raise _bad(f"Syntax error: unexpected end of '{self.text}'.")
        self.i += 1
        return self.tokens[self.i - 1]

    def _or(self) -> Pred:
        parts = [self._and()]
        while self._peek() == "or":
            self.i += 1
            parts.append(self._and())
        return parts[0] if len(parts) == 1 else (lambda d: any(p(d) for p in parts))

    def _and(self) -> Pred:
        parts = [self._unary()]
        while self._peek() == "and":
            self.i += 1
            parts.append(self._unary())
        return parts[0] if len(parts) == 1 else (lambda d: all(p(d) for p in parts))

    def _unary(self) -> Pred:
        if self._peek() == "(":
            self.i += 1
            inner = self._or()
            if self._next()[1] != ")":
                raise _bad(f"Syntax error: ')' expected in '{self.text}'.")
            return inner
        if self._peek() == "not":
            raise _bad("The 'not' operator is not supported in a metadata query "
                       "(MetadataFilterExpression has no negation).")
        return self._comparison()

    def _comparison(self) -> Pred:
        kind, path = self._next()
        if kind != "name":
            raise _bad(f"Syntax error at '{path}' in '{self.text}'.")
        if self._peek() == "(":
            raise _bad(f"The function '{path}' is not supported in a metadata query: only eq, "
                       "ne, gt and lt comparisons joined by 'and' or 'or' are.")
        op = self._next()[1]
        if op not in OPS:
            raise _bad(f"The operator '{op}' is not supported in a metadata query: only eq, ne, "
                       "gt and lt are.")
        lkind, raw = self._next()
        getter, enum = self._property(path)
        value = self._literal(lkind, raw, path, enum, OPS[op])
        if op in ("gt", "lt") and not isinstance(value, (int, float)):
            raise _bad(f"The operator '{op}' needs a number, not {raw}.")

        def pred(doc: dict[str, Any]) -> bool:
            have = getter(doc)
            if op == "eq":
                return bool(have == value)
            if op == "ne":
                return bool(have != value)
            if have is None:
                return False
            return bool(have > value) if op == "gt" else bool(have < value)
        return pred

    def _property(self, path: str) -> tuple[Callable[[dict[str, Any]], Any], str | None]:
        first, _, rest = path.partition("/")
        if first not in self.props or first in NAVIGATION.get(self.type_name, ()):
            raise _no_property(first, self.type_name)
        sample = self.props[first]
        if _is_label(sample):
            raise _bad(f"The property '{first}' is a Label: filtering on Label properties is "
                       "not supported.")
        if rest:
            if not isinstance(sample, dict) or rest not in sample or "/" in rest:
                raise _no_property(rest, f"{self.type_name}/{first}")
            return (lambda d: (d.get(first) or {}).get(rest)), (ENUMS.get(path) or (None,))[0]
        if isinstance(sample, (dict, list)):
            raise _bad(f"The property '{first}' is not of a primitive or enumeration type: "
                       f"filter on '{first}/Value' instead.")
        return (lambda d: d.get(first)), (ENUMS.get(first) or (None,))[0]

    def _literal(self, kind: str, raw: str, path: str, enum: str | None, op: str) -> Any:
        if kind == "enum":
            type_name, _, member = raw.partition("'")
            member = member[:-1]
            if enum is None or type_name != f"{NS}.{enum}":
                left = f"{NS}.{enum}" if enum else _edm(self._sample(path))
                raise _incompatible(left, type_name, op)
            members = next(m for t, m in ENUMS.values() if t == enum)
            if member not in members:
                raise _bad(f"The string '{member}' is not a valid enumerated type constant.")
            return member
        value: Any
        if kind == "str":
            value = raw[1:-1].replace("''", "'")
        elif kind == "guid":
            value = raw.lower()
        elif kind == "num":
            value = float(raw) if "." in raw else int(raw)
        elif raw in ("true", "false", "null"):
            value = {"true": True, "false": False, "null": None}[raw]
        else:
            raise _bad(f"Syntax error at '{raw}' in '{self.text}'.")
        if value is None:
            return None
        if enum is not None:
            raise _incompatible(f"{NS}.{enum}", _edm(value), op)
        sample = self._sample(path)
        if sample is not None and _edm(sample) != _edm(value) and not (
                _edm(sample) == "Edm.Guid" and kind == "guid"):
            raise _incompatible(_edm(sample), _edm(value), op)
        return value

    def _sample(self, path: str) -> Any:
        first, _, rest = path.partition("/")
        value = self.props.get(first)
        return value.get(rest) if rest and isinstance(value, dict) else value


def _incompatible(left: str, right: str, op: str) -> DVError:
    return _bad("A binary operator with incompatible types was detected. Found operand types "
                f"'{left}' and '{right}' for operator kind '{op}'.")


def _filtered(items: list[dict[str, Any]], text: str | None,
              type_name: str) -> list[dict[str, Any]]:
    if not text:
        return items
    pred = _Filter(text, type_name).parse()
    return [i for i in items if pred(i)]


# --- routing ------------------------------------------------------------------------------------

PATH = re.compile(r"EntityDefinitions(?:\((?P<key>[^)]*)\))?(?:/(?P<nav>[^/(]+)"
                  r"(?:\((?P<sub>[^)]*)\))?(?P<tail>(?:/[^/]+)*))?")


def _entity(key: str) -> EntityDef:
    m = re.fullmatch(r"LogicalName='((?:[^']|'')*)'", key.strip())
    if m:
        name = m.group(1).replace("''", "'")
        ent = BY_LOGICAL.get(name)
        if ent is None:
            raise _bad(f"Could not find an entity with specified entity name: {name}", 404,
                       "0x80040217")
        return ent
    if re.fullmatch(r"[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}", key.strip()):
        for ent in ENTITIES:
            if entity_id(ent) == key.strip().lower():
                return ent
        raise _bad(f"Could not find an entity with MetadataId {key.strip()}", 404, "0x80040217")
    raise _bad(f"The key '{key}' of EntityDefinitions is neither a MetadataId nor "
               "LogicalName='<name>'.")


def _context(api: str, path: str, names: list[str] | None,
             expand: dict[str, dict[str, str]], entity: bool = False) -> str:
    ctx = f"{api}/$metadata#{path}"
    if names is not None:
        parts = names + [n + (f"({v['$select']})" if v.get("$select") else "")
                         for n, v in expand.items()]
        ctx += f"({','.join(parts)})"
    return ctx + ("/$entity" if entity else "")


def _expand_entity(svc: DVService, ent: EntityDef, doc: dict[str, Any],
                   expand: dict[str, dict[str, str]]) -> dict[str, Any]:
    for nav, opts in expand.items():
        if nav not in ENTITY_NAVS:
            raise _no_property(nav, "EntityMetadata")
        if nav == "Attributes":
            items = _filtered(attributes(ent), opts.get("$filter"), "AttributeMetadata")
            names = _selected(opts.get("$select"), "AttributeMetadata")
        elif nav == "Keys":
            items = _filtered(keys(svc, ent), opts.get("$filter"), "EntityKeyMetadata")
            names = _selected(opts.get("$select"), "EntityKeyMetadata")
        else:
            raise _bad(f"The emulator does not serve {nav} (relationship definitions).", 501)
        doc[nav] = [_project(i, names) for i in items]
    return doc


def _expand_attribute(ent: EntityDef, doc: dict[str, Any], cast: str | None,
                      expand: dict[str, dict[str, str]]) -> dict[str, Any]:
    type_name = cast or "AttributeMetadata"
    for nav, opts in expand.items():
        if nav not in NAVIGATION.get(type_name, set()):
            raise _no_property(nav, type_name)
        if opts.get("$filter"):
            raise _bad(f"The query parameter $filter is not supported on {nav}.")
        if nav == "GlobalOptionSet":
            doc[nav] = None  # the served choices use local option sets
            continue
        found = option_set(ent, ent.by_name[doc["LogicalName"]])
        names = opts.get("$select")
        if names:
            wanted = [s.strip() for s in names.split(",")]
            for n in wanted:
                if n not in found:
                    raise _no_property(n, "OptionSetMetadataBase")
            found = {k: v for k, v in found.items() if k in wanted or k == "MetadataId"}
        doc[nav] = found
    return doc


def entity_definitions(svc: DVService, req: Req, api: str, rest: str) -> Resp:
    """GET on EntityDefinitions and its Attributes/Keys (see the module docstring)."""
    if req.method != "GET":
        raise _bad("Metadata is read-only in the emulator.", 405)
    _check_options(req)
    m = PATH.fullmatch(unquote(rest))
    if not m:
        raise _bad(f"Resource not found for the segment '{rest}'.", 404)
    key, nav, sub, tail = m.group("key"), m.group("nav"), m.group("sub"), m.group("tail")
    expand = _expand(req.param("$expand"))
    if key is None:
        if nav is not None:
            raise _bad(f"Resource not found for the segment '{nav}'.", 404)
        names = _selected(req.param("$select"), "EntityMetadata")
        items = _filtered([definition(e) for e in ENTITIES], req.param("$filter"),
                          "EntityMetadata")
        by_id = {entity_id(e): e for e in ENTITIES}
        value = [_project(_expand_entity(svc, by_id[d["MetadataId"]], d, expand), names,
                          tuple(expand)) for d in items]
        return svc._ok(200, {"@odata.context": _context(api, "EntityDefinitions", names, expand),
                             "value": value})
    ent = _entity(key)
    if nav is None:
        if req.param("$filter"):
            raise _bad("The query parameter $filter is not supported on a single entity.")
        names = _selected(req.param("$select"), "EntityMetadata")
        doc = _project(_expand_entity(svc, ent, definition(ent), expand), names, tuple(expand))
        return svc._ok(200, {"@odata.context": _context(api, "EntityDefinitions", names, expand,
                                                        entity=True), **doc})
    base = f"EntityDefinitions({entity_id(ent)})/{nav}"
    if nav == "Keys":
        return _keys(svc, req, api, ent, base, sub, tail)
    if nav != "Attributes":
        if nav in ENTITY_NAVS:
            raise _bad(f"The emulator does not serve {nav} (relationship definitions).", 501)
        raise _bad(f"Resource not found for the segment '{nav}'.", 404)
    segs = [s for s in (tail or "").split("/") if s]
    if sub is not None:
        return _one_attribute(svc, req, api, ent, sub, segs, expand)
    cast = None
    if segs and segs[0].startswith(f"{NS}."):
        cast = segs.pop(0)[len(NS) + 1:]
        if cast not in CASTS:
            raise _bad(f"Resource not found for the segment '{NS}.{cast}'.", 404)
    type_name = cast or "AttributeMetadata"
    items = attributes(ent)
    if cast:
        items = [i for i in items if i["@odata.type"] == f"#{NS}.{cast}"]
        base += f"/{NS}.{cast}"
    if segs:
        raise _bad(f"Resource not found for the segment '{segs[0]}'.", 404)
    names = _selected(req.param("$select"), type_name)
    items = _filtered(items, req.param("$filter"), type_name)
    value = [_project(_expand_attribute(ent, i, cast, expand), names, tuple(expand))
             for i in items]
    return svc._ok(200, {"@odata.context": _context(api, base, names, expand), "value": value})


def _one_attribute(svc: DVService, req: Req, api: str, ent: EntityDef, sub: str,
                   segs: list[str], expand: dict[str, dict[str, str]]) -> Resp:
    """``Attributes(<key>)[/<cast>][/OptionSet]``."""
    cast = None
    key = sub.strip()
    m = re.fullmatch(r"LogicalName='((?:[^']|'')*)'", key)
    items = attributes(ent)
    found = [i for i in items if (m and i["LogicalName"] == m.group(1).replace("''", "'"))
             or i["MetadataId"] == key.lower()]
    if not m and not re.fullmatch(r"[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}", key):
        raise _bad(f"The key '{key}' of Attributes is neither a MetadataId nor "
                   "LogicalName='<name>'.")
    if not found:
        raise _bad(f"Could not find an attribute with key {key} on the entity "
                   f"{ent.logical_name}.", 404, "0x80040217")
    doc = found[0]
    path = f"EntityDefinitions({entity_id(ent)})/Attributes"
    if segs and segs[0].startswith(f"{NS}."):
        cast = segs.pop(0)[len(NS) + 1:]
        if cast not in CASTS or doc["@odata.type"] != f"#{NS}.{cast}":
            raise _bad(f"Resource not found for the segment '{NS}.{cast}'.", 404)
        path += f"/{NS}.{cast}"
    type_name = cast or "AttributeMetadata"
    if req.param("$filter"):
        raise _bad("The query parameter $filter is not supported on a single entity.")
    if segs:
        nav = segs.pop(0)
        if segs or nav not in NAVIGATION.get(type_name, set()):
            raise _bad(f"Resource not found for the segment '{nav}'.", 404)
        opts = {"$select": req.param("$select") or ""}
        value = _expand_attribute(ent, dict(doc), cast, {nav: opts})[nav]
        if value is None:
            return Resp(204, b"", [])
        sel = opts["$select"]
        return svc._ok(200, {"@odata.context": f"{api}/$metadata#{path}/{nav}"
                             f"{f'({sel})' if sel else ''}/$entity", **value})
    names = _selected(req.param("$select"), type_name)
    doc = _project(_expand_attribute(ent, dict(doc), cast, expand), names, tuple(expand))
    return svc._ok(200, {"@odata.context": _context(api, path, names, expand, entity=True),
                         **doc})


def _keys(svc: DVService, req: Req, api: str, ent: EntityDef, base: str, sub: str | None,
          tail: str | None) -> Resp:
    if tail:
        raise _bad(f"Resource not found for the segment '{tail.strip('/')}'.", 404)
    items = keys(svc, ent)
    names = _selected(req.param("$select"), "EntityKeyMetadata")
    if sub is None:
        items = _filtered(items, req.param("$filter"), "EntityKeyMetadata")
        return svc._ok(200, {"@odata.context": _context(api, base, names, {}),
                             "value": [_project(i, names) for i in items]})
    m = re.fullmatch(r"(?:LogicalName=)?'((?:[^']|'')*)'", sub.strip())
    found = [i for i in items if (m and i["LogicalName"] == m.group(1))
             or i["MetadataId"] == sub.strip().lower()]
    if not found:
        raise _bad(f"Could not find a key with key {sub}.", 404, "0x80040217")
    return svc._ok(200, {"@odata.context": _context(api, base, names, {}, entity=True),
                         **_project(found[0], names)})


# --- $metadata --------------------------------------------------------------------------------


def metadata_xml(svc: DVService) -> str:
    """CSDL with entity types (lookups as ``_x_value`` + navigation properties)."""
    types, sets = [], []
    for ent in ENTITIES:
        props = []
        for p in ent.props:
            if p.hidden:
                continue
            attrs = f'Name="{p.column}" Type="{p.edm}"'
            if p.max_len and p.kind in ("string", "memo"):
                attrs += f' MaxLength="{p.max_len}"'
            props.append(f"<Property {attrs}/>")
        navs = []
        for p in ent.props:
            if p.kind == "lookup":
                for nav, targets in p.targets.items():
                    target = BY_SET[targets[0]]
                    navs.append(f'<NavigationProperty Name="{nav}" Type="mscrm.'
                                f'{target.logical_name}"/>')
        types.append(f'<EntityType Name="{ent.logical_name}"><Key><PropertyRef '
                     f'Name="{ent.key}"/></Key>{"".join(props)}{"".join(navs)}</EntityType>')
        sets.append(f'<EntitySet Name="{ent.set_name}" EntityType="mscrm.{ent.logical_name}"/>')
    keys_ = "".join(f"<!-- alternate key {escape(s)}: {escape(str(k))} -->"
                    for s, k in svc.alt_keys.items())
    return ('<?xml version="1.0" encoding="utf-8"?><edmx:Edmx Version="4.0" '
            'xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx"><edmx:DataServices>'
            '<Schema Namespace="Microsoft.Dynamics.CRM" Alias="mscrm" '
            'xmlns="http://docs.oasis-open.org/odata/ns/edm">'
            f'{"".join(types)}<ComplexType Name="WhoAmIResponse"><Property Name="BusinessUnitId" '
            'Type="Edm.Guid" Nullable="false"/><Property Name="UserId" Type="Edm.Guid" '
            'Nullable="false"/><Property Name="OrganizationId" Type="Edm.Guid" '
            'Nullable="false"/></ComplexType><Function Name="WhoAmI"><ReturnType '
            'Type="mscrm.WhoAmIResponse" Nullable="false"/></Function>'
            f'<EntityContainer Name="System">{"".join(sets)}<FunctionImport Name="WhoAmI" '
            'Function="mscrm.WhoAmI"/></EntityContainer>'
            f"{keys_}</Schema></edmx:DataServices></edmx:Edmx>")
