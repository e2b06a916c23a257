"""Dataverse ``$metadata`` and ``EntityDefinitions``, generated from the served schema.

``EntityDefinitions`` supports ``$select``, ``$filter`` with ``and``-ed ``eq`` terms (e.g.
``LogicalName eq 'account'``, ``ChangeTrackingEnabled eq true``), ``$expand=Attributes,Keys``
and the ``(LogicalName='account')``, ``/Attributes``, ``/Keys`` paths.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote
from xml.sax.saxutils import escape

from bcdv.emulators.base import Req, Resp
from bcdv.emulators.dv.schema import BY_LOGICAL, CHANGE_TRACKED, ENTITIES, EntityDef
from bcdv.emulators.dv.values import DVError
from bcdv.emulators.model import Prop
from bcdv.emulators.seeds import gid

if TYPE_CHECKING:
    from bcdv.emulators.dv.service import DVService

ATTRIBUTE_TYPES = {"guid": ("Uniqueidentifier", "UniqueidentifierType", "Attribute"),
                   "string": ("String", "StringType", "StringAttributeMetadata"),
                   "memo": ("Memo", "MemoType", "MemoAttributeMetadata"),
                   "int": ("Integer", "IntegerType", "IntegerAttributeMetadata"),
                   "bigint": ("BigInt", "BigIntType", "BigIntAttributeMetadata"),
                   "decimal": ("Decimal", "DecimalType", "DecimalAttributeMetadata"),
                   "money": ("Money", "MoneyType", "MoneyAttributeMetadata"),
                   "double": ("Double", "DoubleType", "DoubleAttributeMetadata"),
                   "bool": ("Boolean", "BooleanType", "BooleanAttributeMetadata"),
                   "datetime": ("DateTime", "DateTimeType", "DateTimeAttributeMetadata"),
                   "date": ("DateTime", "DateTimeType", "DateTimeAttributeMetadata"),
                   "option": ("Picklist", "PicklistType", "PicklistAttributeMetadata"),
                   "lookup": ("Lookup", "LookupType", "LookupAttributeMetadata")}


def metadata_xml(svc: "DVService") -> str:
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
                    target = next(e for e in ENTITIES if e.set_name == targets[0])
                    navs.append(f'<NavigationProperty Name="{nav}" Type="mscrm.'
                                f'{target.logical_name}"/>')
        types.append(f'<EntityType Name="{ent.logical_name}"><Key><PropertyRef '
                     f'Name="{ent.key}"/></Key>{"".join(props)}{"".join(navs)}</EntityType>')
        sets.append(f'<EntitySet Name="{ent.set_name}" EntityType="mscrm.{ent.logical_name}"/>')
    keys = "".join(f"<!-- alternate key {escape(s)}: {escape(str(k))} -->"
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
            f"{keys}</Schema></edmx:DataServices></edmx:Edmx>")


def _label(text: str) -> dict[str, Any]:
    loc = {"Label": text, "LanguageCode": 1033}
    return {"LocalizedLabels": [loc], "UserLocalizedLabel": loc}


def attribute(ent: EntityDef, p: Prop) -> dict[str, Any]:
    """AttributeMetadata of one column."""
    atype, tname, odtype = ATTRIBUTE_TYPES[p.kind]
    if p.name in ("statecode", "statuscode"):
        atype, tname = ("State", "StateType") if p.name == "statecode" else ("Status",
                                                                            "StatusType")
        odtype = "StateAttributeMetadata" if p.name == "statecode" else "StatusAttributeMetadata"
    if p.name == "ownerid":
        atype, tname = "Owner", "OwnerType"
    if p.name == ent.key:
        atype, tname = "Uniqueidentifier", "UniqueidentifierType"
    doc: dict[str, Any] = {
        "@odata.type": f"#Microsoft.Dynamics.CRM.{odtype}",
        "MetadataId": gid("dv", "attribute", ent.logical_name, p.name),
        "LogicalName": p.name, "SchemaName": p.name, "EntityLogicalName": ent.logical_name,
        "AttributeType": atype, "AttributeTypeName": {"Value": tname},
        "IsPrimaryId": p.name == ent.key, "IsPrimaryName": p.name == ent.primary_name,
        "IsValidForCreate": not p.read_only, "IsValidForUpdate": not p.read_only
        and not p.create_only, "IsValidForRead": True,
        "RequiredLevel": {"Value": p.required_level, "CanBeChanged": True},
        "DisplayName": _label(p.display or p.name)}
    if p.max_len is not None:
        doc["MaxLength"] = p.max_len
        doc["DatabaseLength"] = p.max_len * 2
    if p.kind == "lookup":
        doc["Targets"] = sorted({next(e.logical_name for e in ENTITIES if e.set_name == s)
                                 for sets in p.targets.values() for s in sets})
    if p.min_value is not None:
        doc["MinValue"], doc["MaxValue"] = p.min_value, p.max_value
    if p.options:
        doc["OptionSet"] = {"Options": [{"Value": v, "Label": _label(t)}
                                        for v, t in p.options.items()]}
    return doc


def _definition(svc: "DVService", ent: EntityDef, expand: list[str]) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "MetadataId": gid("dv", "entity", ent.logical_name), "LogicalName": ent.logical_name,
        "SchemaName": ent.logical_name.title() if ent.logical_name != "transactioncurrency"
        else "TransactionCurrency", "EntitySetName": ent.set_name,
        "LogicalCollectionName": ent.set_name, "PrimaryIdAttribute": ent.key,
        "PrimaryNameAttribute": ent.primary_name, "ChangeTrackingEnabled":
            ent.set_name in CHANGE_TRACKED, "IsOptimisticConcurrencyEnabled": True,
        "OwnershipType": "UserOwned" if "ownerid" in ent.by_name else "OrganizationOwned",
        "DisplayName": _label(ent.logical_name), "IsCustomEntity": False}
    if "Attributes" in expand:
        doc["Attributes"] = attributes(ent)
    if "Keys" in expand:
        doc["Keys"] = keys(svc, ent)
    return doc


def attributes(ent: EntityDef) -> list[dict[str, Any]]:
    """AttributeMetadata of every served column."""
    return [attribute(ent, p) for p in ent.props if not p.hidden]


def keys(svc: "DVService", ent: EntityDef) -> list[dict[str, Any]]:
    """EntityKeyMetadata of the configured alternate keys."""
    return [{"MetadataId": gid("dv", "key", ent.logical_name, *cols),
             "LogicalName": f"{ent.logical_name}_{'_'.join(cols)}_key",
             "SchemaName": f"{ent.logical_name}_{'_'.join(cols)}_key",
             "EntityLogicalName": ent.logical_name, "KeyAttributes": list(cols),
             "EntityKeyIndexStatus": "Active", "DisplayName": _label(", ".join(cols))}
            for cols in svc.alt_keys.get(ent.set_name, [])]


def _apply(items: list[dict[str, Any]], req: Req) -> list[dict[str, Any]]:
    flt = req.param("$filter")
    if flt:
        terms = re.split(r"\s+and\s+", flt.strip())
        for term in terms:
            m = re.fullmatch(r"(\w+)\s+eq\s+('(?:[^']|'')*'|true|false|\d+)", term.strip())
            if not m:
                raise DVError(400, "0x80060888", f"The $filter '{flt}' is not supported by the "
                                                 "emulator's EntityDefinitions (use 'and'-ed "
                                                 "'eq' terms).")
            name, raw = m.groups()
            value: Any = raw[1:-1].replace("''", "'") if raw.startswith("'") else \
                (raw == "true" if raw in ("true", "false") else int(raw))
            items = [i for i in items if i.get(name) == value]
    sel = req.param("$select")
    if sel:
        names = [s.strip() for s in sel.split(",")] + ["MetadataId", "@odata.type"]
        expanded = [x.split("(")[0].strip() for x in (req.param("$expand") or "").split(",")]
        items = [{k: v for k, v in i.items()
                  if k in names or k in ("Attributes", "Keys") or k in expanded}
                 for i in items]
    return items


def entity_definitions(svc: "DVService", req: Req, api: str, rest: str) -> Resp:
    """GET EntityDefinitions[(LogicalName='x')][/Attributes|/Keys]."""
    if req.method != "GET":
        raise DVError(405, "0x80060888", "Metadata is read-only in the emulator.")
    m = re.fullmatch(r"EntityDefinitions(?:\((.*?)\))?(?:/(Attributes|Keys))?"
                     r"(?:/Microsoft\.Dynamics\.CRM\.(\w+))?(?:\((.*?)\))?", unquote(rest))
    if not m:
        raise DVError(404, "0x80060888", f"Resource not found for the segment '{rest}'.")
    key, nav, cast, sub = m.groups()
    expand = [x.split("(")[0].strip() for x in (req.param("$expand") or "").split(",") if x]
    if key is None:
        items = [_definition(svc, e, expand) for e in ENTITIES]
        return svc._ok(200, {"@odata.context": f"{api}/$metadata#EntityDefinitions",
                             "value": _apply(items, req)})
    km = re.fullmatch(r"(?:LogicalName=)?'(\w+)'", key.strip())
    ent = BY_LOGICAL.get(km.group(1)) if km else None
    if ent is None:
        by_id = {gid("dv", "entity", e.logical_name): e for e in ENTITIES}
        ent = by_id.get(key.strip().lower())
    if ent is None:
        raise DVError(404, "0x80040217", f"Could not find an entity with key {key}.")
    ctx = f"{api}/$metadata#EntityDefinitions({ent.logical_name})"
    if nav is None:
        doc = _apply([_definition(svc, ent, expand)], req)[0]
        return svc._ok(200, {"@odata.context": ctx + "/$entity", **doc})
    items = attributes(ent) if nav == "Attributes" else keys(svc, ent)
    if cast is not None:
        # A type cast segment keeps the attributes of that metadata type only.
        items = [i for i in items if i.get("@odata.type") == f"#Microsoft.Dynamics.CRM.{cast}"]
        ctx += f"/{nav}/Microsoft.Dynamics.CRM.{cast}"
        return svc._ok(200, {"@odata.context": ctx, "value": _apply(items, req)})
    if sub is not None:
        sm = re.fullmatch(r"(?:LogicalName=)?'(\w+)'", sub.strip())
        found = [i for i in items if sm and i["LogicalName"] == sm.group(1)]
        if not found:
            raise DVError(404, "0x80040217", f"Could not find an attribute with key {sub}.")
        return svc._ok(200, {"@odata.context": f"{ctx}/{nav}/$entity", **found[0]})
    return svc._ok(200, {"@odata.context": f"{ctx}/{nav}", "value": _apply(items, req)})
