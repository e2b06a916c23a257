"""``bcdv mappings validate --live``: check every mapped field against the services' metadata.

Business Central: ``GET {base_url}/$metadata`` (OData v4 CSDL XML: ``EntityType`` with
``Property Name/Type/MaxLength``, ``Org.OData.Core.V1.Computed`` for read-only properties,
``EntitySet`` naming each set's type). Dataverse: ``GET {api_url}/EntityDefinitions`` for the
set -> logical name, ``EntityDefinitions(LogicalName='x')/Attributes`` (AttributeMetadata:
LogicalName, AttributeType, MaxLength, IsValidForCreate/Update, Targets), and for choice columns
the ``OptionSet``, inline when the service includes it, else through the documented cast
``Attributes/Microsoft.Dynamics.CRM.PicklistAttributeMetadata`` with
``$select=LogicalName&$expand=OptionSet`` (one request per table; Microsoft Learn, "Query
table definitions using the Web API").

Errors: a filter the service rejects, a field that does not exist, types that cannot fit, a
lookup that is not a lookup column (or points at another table), a choice column without a
value map, value-map or constant options that are not in the option set, writing a read-only
field. Warnings: the destination may be too short, a field that can only be set on create,
conversions via text.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

from bcdv.errors import ApiError
from bcdv.mapping.loader import LoadedMapping
from bcdv.mapping.model import Direction, FieldMapping, Lookup
from bcdv.mapping.rules import TEXT_RULES, FieldLookup, Round, length_bound
from bcdv.settings import Endpoints

EDM = "{http://docs.oasis-open.org/odata/ns/edm}"
BC_CLASSES = {"Edm.String": "text", "Edm.Guid": "guid", "Edm.Boolean": "bool",
              "Edm.Decimal": "number", "Edm.Double": "number", "Edm.Int16": "number",
              "Edm.Int32": "number", "Edm.Int64": "number", "Edm.Byte": "number",
              "Edm.Date": "date", "Edm.DateTimeOffset": "datetime"}
DV_CLASSES = {"String": "text", "Memo": "text", "EntityName": "text", "Integer": "number",
              "BigInt": "number", "Decimal": "number", "Double": "number", "Money": "number",
              "Boolean": "bool", "DateTime": "datetime", "Picklist": "option",
              "State": "option", "Status": "option", "Lookup": "lookup", "Customer": "lookup",
              "Owner": "lookup", "Uniqueidentifier": "guid"}


@dataclass(frozen=True)
class Finding:
    """One problem found, located in the mapping file."""

    level: str  # "error" | "warning"
    mapping: str
    where: str  # file:line: field path
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.level}: {self.message}"

    def to_dict(self) -> dict[str, str]:
        """JSON form."""
        return {"level": self.level, "mapping": self.mapping, "where": self.where,
                "message": self.message}


@dataclass(frozen=True)
class Column:
    """A property or attribute, reduced to what the checks need."""

    name: str
    type: str  # the service's type name (Edm.String, Picklist, ...)
    kind: str  # text, number, bool, date, datetime, guid, enum, option, lookup, other
    max_length: int | None = None
    read_only: bool = False
    create_only: bool = False
    targets: tuple[str, ...] = ()
    options: frozenset[int] | None = None


def parse_csdl(xml: str | bytes) -> dict[str, dict[str, Column]]:
    """Entity set -> property name -> Column, from a Business Central $metadata document."""
    root = ET.fromstring(xml)
    types: dict[str, dict[str, Column]] = {}
    sets: dict[str, str] = {}
    for schema in root.iter(f"{EDM}Schema"):
        ns = schema.get("Namespace", "")
        for et in schema.findall(f"{EDM}EntityType"):
            props = {}
            for p in et.findall(f"{EDM}Property"):
                typ = p.get("Type", "")
                kind = BC_CLASSES.get(typ, "enum" if typ.startswith(ns + ".") else "other")
                computed = any(a.get("Term", "").endswith("Core.V1.Computed")
                               and a.get("Bool", "true") == "true"
                               for a in p.findall(f"{EDM}Annotation"))
                length = p.get("MaxLength")
                props[p.get("Name", "")] = Column(
                    p.get("Name", ""), typ, kind,
                    int(length) if length and length.isdigit() else None, read_only=computed)
            types[f"{ns}.{et.get('Name')}"] = props
        for es in schema.iter(f"{EDM}EntitySet"):
            sets[es.get("Name", "")] = es.get("EntityType", "")
    return {name: types.get(t, {}) for name, t in sets.items()}


def dataverse_column(doc: dict[str, Any]) -> Column:
    """A Column from one AttributeMetadata document."""
    typ = str(doc.get("AttributeType") or "")
    options = None
    if isinstance(doc.get("OptionSet"), dict):
        options = frozenset(int(o["Value"]) for o in doc["OptionSet"].get("Options", []))
    create, update = doc.get("IsValidForCreate", True), doc.get("IsValidForUpdate", True)
    return Column(doc["LogicalName"], typ, DV_CLASSES.get(typ, "other"), doc.get("MaxLength"),
                  read_only=not create and not update, create_only=bool(create and not update),
                  targets=tuple(doc.get("Targets") or ()), options=options)


@dataclass
class DataverseMetadata:
    """Lazily fetched Dataverse table definitions (one request per table, plus option sets)."""

    client: Any
    _logical: dict[str, str] | None = None
    _tables: dict[str, dict[str, Column]] = field(default_factory=dict)
    _options: dict[str, dict[str, frozenset[int] | None]] = field(default_factory=dict)

    def logical_name(self, entity_set: str) -> str | None:
        """The table's logical name of an entity set (None if the set does not exist)."""
        if self._logical is None:
            url = f"{self.client.settings.api_url}/EntityDefinitions"
            docs = self.client.http.get_json(
                url, params={"$select": "LogicalName,EntitySetName"})["value"]
            self._logical = {d["EntitySetName"]: d["LogicalName"] for d in docs}
        return self._logical.get(entity_set)

    def columns(self, entity_set: str) -> dict[str, Column] | None:
        """Attributes of an entity set's table."""
        logical = self.logical_name(entity_set)
        if logical is None:
            return None
        if logical not in self._tables:
            url = (f"{self.client.settings.api_url}/EntityDefinitions(LogicalName='{logical}')"
                   "/Attributes")
            docs = self.client.http.get_json(url)["value"]
            self._tables[logical] = {d["LogicalName"]: dataverse_column(d) for d in docs}
        return self._tables[logical]

    def options(self, entity_set: str, column: Column) -> frozenset[int] | None:
        """A choice column's option values (fetched through the Picklist cast if needed)."""
        if column.options is not None:
            return column.options
        logical = self.logical_name(entity_set)
        cast = {"Picklist": "PicklistAttributeMetadata", "State": "StateAttributeMetadata",
                "Status": "StatusAttributeMetadata"}.get(column.type)
        if cast is None:
            return None
        key = f"{logical}/{cast}"
        if key not in self._options:
            url = (f"{self.client.settings.api_url}/EntityDefinitions(LogicalName='{logical}')"
                   f"/Attributes/Microsoft.Dynamics.CRM.{cast}")
            try:
                docs = self.client.http.get_json(url, params={"$select": "LogicalName",
                                                              "$expand": "OptionSet"})["value"]
            except ApiError:
                docs = []
            self._options[key] = {
                d["LogicalName"]: dataverse_column({**d, "AttributeType": column.type}).options
                for d in docs}
        return self._options[key].get(column.name)


class _Checker:
    def __init__(self, loaded: dict[str, LoadedMapping], bc: dict[str, dict[str, Column]],
                 dv: DataverseMetadata, clients: dict[str, Any] | None = None) -> None:
        self.loaded, self.bc, self.dv = loaded, bc, dv
        self.clients = clients or {}
        self.findings: list[Finding] = []

    def filters(self, item: LoadedMapping) -> None:
        """Ask each service for one record through the side's filter: does it accept it?"""
        for system, label in (("business_central", "Business Central"),
                              ("dataverse", "Dataverse")):
            side = item.mapping.side(system)
            client = self.clients.get(system)
            if not side.filter or client is None:
                continue
            try:
                client.http.get_json(client.url(side.entity_set),
                                     params={"$filter": side.filter, "$top": "1",
                                             "$select": side.key})
            except ApiError as exc:
                self.add("error", item, (system, "filter"),
                         f"{label} rejects the filter: {exc.message}")

    def add(self, level: str, item: LoadedMapping, loc: tuple[Any, ...], message: str) -> None:
        self.findings.append(Finding(level, item.mapping.name, item.where(*loc), message))

    def run(self) -> list[Finding]:
        for item in self.loaded.values():
            self.mapping(item)
        return self.findings

    def mapping(self, item: LoadedMapping) -> None:
        m = item.mapping
        bc = self.bc.get(m.business_central.entity_set)
        if bc is None:
            self.add("error", item, ("business_central", "entity_set"),
                     f"Business Central has no entity set {m.business_central.entity_set!r}")
        dv = self.dv.columns(m.dataverse.entity_set)
        if dv is None:
            self.add("error", item, ("dataverse", "entity_set"),
                     f"Dataverse has no entity set {m.dataverse.entity_set!r}")
        if bc is None or dv is None:
            return
        self.filters(item)
        for side, cols, system in (("business_central", bc, "Business Central"),
                                   ("dataverse", dv, "Dataverse")):
            s = m.side(side)
            for key in ("key", "modified_on", "name_field"):
                name = getattr(s, key)
                if name and name not in cols:
                    self.add("error", item, (side, key),
                             f"{name!r} does not exist on {system} {s.entity_set}")
            for name, value in m.create_values_for(side).items():
                col = cols.get(name)
                if col is None:
                    self.add("error", item, ("create_values", side, name),
                             f"{name!r} does not exist on {system} {s.entity_set}")
                elif col.kind == "option" and value is not None:
                    self._option(item, ("create_values", side, name), m.dataverse.entity_set,
                                 col, [value])
        for i, f in enumerate(m.fields):
            if f.enabled:
                self.field(item, i, f, bc, dv)

    def field(self, item: LoadedMapping, i: int, f: FieldMapping,
              bc: dict[str, Column], dv: dict[str, Column]) -> None:
        m = item.mapping
        bcol = dcol = None
        if f.business_central:
            bcol = bc.get(f.business_central)
            if bcol is None:
                self.add("error", item, ("fields", i, "business_central"),
                         f"{f.business_central!r} does not exist on Business Central "
                         f"{m.business_central.entity_set}")
        if f.dataverse:
            dcol = dv.get(f.dataverse)
            if dcol is None:
                self.add("error", item, ("fields", i, "dataverse"),
                         f"{f.dataverse!r} does not exist on Dataverse {m.dataverse.entity_set}")
        if f.constant is not None:
            target = dcol or bcol
            if target is not None and target.kind == "option":
                self._option(item, ("fields", i, "constant"), m.dataverse.entity_set, target,
                             [f.constant])
            self._writable(item, i, f, target, f.effective_direction)
            return
        if bcol is None or dcol is None:
            return
        bkind = self._bc_kind(item, i, f, bcol)
        if f.lookup is not None:
            self._lookup(item, i, f, f.lookup, dcol)
        elif dcol.kind == "lookup":
            self.add("error", item, ("fields", i, "dataverse"),
                     f"{f.dataverse!r} is a lookup column ({dcol.type}); map it with 'lookup:'")
        elif dcol.kind == "option":
            if f.value_map is None and bkind != "number":
                self.add("error", item, ("fields", i, "dataverse"),
                         f"{f.dataverse!r} is a choice column; {f.business_central!r} "
                         f"({bcol.type}) needs a 'value_map'")
            elif f.value_map is not None:
                vm = m.value_maps[f.value_map]
                self._option(item, ("value_maps", f.value_map), m.dataverse.entity_set, dcol,
                             [e.dataverse for e in vm.values])
        elif f.value_map is not None:
            self.add("error", item, ("fields", i, "value_map"),
                     f"{f.dataverse!r} is not a choice column ({dcol.type})")
        else:
            self._fit(item, i, f, bkind, bcol, dcol)
        for d in (Direction.TO_DATAVERSE, Direction.TO_BUSINESS_CENTRAL):
            if f.effective_direction.includes(d) and m.direction.includes(d):
                self._writable(item, i, f, dcol if d is Direction.TO_DATAVERSE else bcol, d)
                if f.lookup is None and f.value_map is None:
                    self._length(item, i, f, bcol, dcol, d)

    def _bc_kind(self, item: LoadedMapping, i: int, f: FieldMapping, bcol: Column) -> str:
        """The kind of the Business Central value after the rules that run to Dataverse."""
        kind = bcol.kind
        outbound = [id(r) for r in f.rules_for(Direction.TO_DATAVERSE)]
        for k, rule in enumerate(f.transform):
            if isinstance(rule, FieldLookup):
                cols = self.bc.get(rule.entity_set)
                if cols is None:
                    self.add("error", item, ("fields", i, "transform", k, "entity_set"),
                             f"Business Central has no entity set {rule.entity_set!r}")
                    return "other"
                for attr in ("key", "field"):
                    if getattr(rule, attr) not in cols:
                        self.add("error", item, ("fields", i, "transform", k, attr),
                                 f"{getattr(rule, attr)!r} does not exist on Business Central "
                                 f"{rule.entity_set}")
                        return "other"
                if id(rule) in outbound:
                    kind = cols[rule.field].kind
            elif id(rule) in outbound:
                kind = "text" if rule.type in TEXT_RULES else \
                    ("number" if isinstance(rule, Round) else kind)
        return kind

    def _lookup(self, item: LoadedMapping, i: int, f: FieldMapping, lookup: Lookup,
                dcol: Column) -> None:
        if dcol.kind != "lookup":
            self.add("error", item, ("fields", i, "lookup"),
                     f"{f.dataverse!r} is not a lookup column ({dcol.type})")
            return
        ref = self.loaded.get(lookup.mapping)
        if ref is None:
            return
        logical = self.dv.logical_name(ref.mapping.dataverse.entity_set)
        if dcol.targets and logical not in dcol.targets:
            self.add("error", item, ("fields", i, "lookup", "mapping"),
                     f"{f.dataverse!r} refers to {', '.join(dcol.targets)}, not to {logical} "
                     f"(the Dataverse table of {lookup.mapping})")
        match_on = lookup.match_on or ref.mapping.business_central.key
        cols = self.bc.get(ref.mapping.business_central.entity_set, {})
        if match_on not in cols:
            self.add("error", item, ("fields", i, "lookup", "match_on"),
                     f"{match_on!r} does not exist on Business Central "
                     f"{ref.mapping.business_central.entity_set}")

    def _option(self, item: LoadedMapping, loc: tuple[Any, ...], entity_set: str, col: Column,
                values: list[Any]) -> None:
        options = self.dv.options(entity_set, col)
        if options is None:
            self.add("warning", item, loc, f"could not read the option set of {col.name!r}")
            return
        missing = [v for v in values if not isinstance(v, bool) and isinstance(v, int)
                   and v not in options]
        if missing:
            have = ", ".join(map(str, sorted(options)))
            self.add("error", item, loc, f"option value(s) {', '.join(map(str, missing))} are "
                     f"not in the option set of {col.name!r} ({have})")

    def _fit(self, item: LoadedMapping, i: int, f: FieldMapping, bkind: str, bcol: Column,
             dcol: Column) -> None:
        kinds = {bkind, dcol.kind}
        if len(kinds) == 1 or kinds <= {"text", "enum"} or kinds <= {"date", "datetime"}:
            return
        if "other" in kinds:
            return
        if "text" in kinds and kinds & {"number", "bool", "date", "datetime", "guid"}:
            self.add("warning", item, ("fields", i),
                     f"{f.business_central!r} ({bcol.type}) and {f.dataverse!r} ({dcol.type}) "
                     "are converted through text")
            return
        self.add("error", item, ("fields", i),
                 f"types do not fit: {f.business_central!r} is {bcol.type}, "
                 f"{f.dataverse!r} is {dcol.type}")

    def _writable(self, item: LoadedMapping, i: int, f: FieldMapping, col: Column | None,
                  d: Direction) -> None:
        if col is None:
            return
        side = "dataverse" if d is Direction.TO_DATAVERSE else "business_central"
        system = "Dataverse" if d is Direction.TO_DATAVERSE else "Business Central"
        if col.read_only:
            self.add("error", item, ("fields", i, side),
                     f"{col.name!r} is read-only in {system} but is written {d.value}")
        elif col.create_only:
            self.add("warning", item, ("fields", i, side),
                     f"{col.name!r} can only be set when the {system} record is created; "
                     "later changes will be rejected")

    def _length(self, item: LoadedMapping, i: int, f: FieldMapping, bcol: Column, dcol: Column,
                d: Direction) -> None:
        src, dst = (bcol, dcol) if d is Direction.TO_DATAVERSE else (dcol, bcol)
        if src.kind not in ("text", "enum") or dst.kind != "text" or not dst.max_length:
            return
        rules = f.rules_for(d)
        # A max_length or substring rule of this pass states what happens to longer values;
        # other rules change the length in ways not known here, so they are not judged.
        bound = length_bound(rules)
        if rules and bound is None:
            return
        longest = bound if bound is not None else src.max_length
        if longest is None or longest > dst.max_length:
            side = "dataverse" if d is Direction.TO_DATAVERSE else "business_central"
            self.add("warning", item, ("fields", i, side),
                     f"{dst.name!r} holds {dst.max_length} characters, {src.name!r} up to "
                     f"{src.max_length or 'unlimited'}: longer values fail {d.value} (a "
                     f"max_length rule states what happens to them)")


def validate_live(loaded: dict[str, LoadedMapping], endpoints: Endpoints) -> list[Finding]:
    """Check every mapping against both services' metadata; findings in file order."""
    from bcdv.clients.business_central import BusinessCentralClient
    from bcdv.clients.dataverse import DataverseClient

    bc_client = BusinessCentralClient(endpoints.business_central)
    dv_client = DataverseClient(endpoints.dataverse)
    try:
        resp = bc_client.http.request("GET", f"{endpoints.business_central.base_url}/$metadata",
                                      headers={"Accept": "application/xml"})
        bc = parse_csdl(resp.content)
        clients = {"business_central": bc_client, "dataverse": dv_client}
        return _Checker(loaded, bc, DataverseMetadata(dv_client), clients).run()
    finally:
        bc_client.close()
        dv_client.close()
