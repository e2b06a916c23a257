"""Tables a pass needs to translate values: field lookups, lookups through couplings.

Loaded once per pass (reference tables are small: currencies, salespeople, payment terms),
then applied to whole columns with ``Series.map``.

A lookup to Dataverse turns a Business Central value (e.g. a salesperson code) into the id of
the Dataverse row coupled to the referenced record (BC: "must be coupled to a record in
Dataverse"); when that record is not coupled, the referenced Dataverse table is searched on
the referenced mapping's field pair (BC's implicit coupling, e.g. a currency by ISO code,
which also covers the local currency). A lookup to Business Central goes the other way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bcdv.engine.entity_rules import EntityFacts, gather
from bcdv.engine.values import canon
from bcdv.errors import ConfigError
from bcdv.mapping.model import Direction, FieldMapping, TableMapping


@dataclass
class LookupTable:
    """Everything one lookup field needs, in both directions."""

    target_entity_set: str  # Dataverse entity set of the referenced mapping
    value_to_bc_id: dict[str, str] = field(default_factory=dict)  # canon(match_on) -> bc id
    bc_id_to_value: dict[str, Any] = field(default_factory=dict)  # bc id -> match_on value
    bc_to_dv: dict[str, str] = field(default_factory=dict)  # coupled pairs
    dv_to_bc: dict[str, str] = field(default_factory=dict)
    dv_by_value: dict[str, list[str]] = field(default_factory=dict)  # canon(dv match) -> ids
    dv_value: dict[str, Any] = field(default_factory=dict)  # dv id -> its match value
    # What Business Central reads back for a blank value: a currency lookup's blank code is
    # the local currency, which API v2.0 returns as the LCY code (companyInformation's
    # currencyCode), so a blank is written as that code (BC stores it as blank again).
    blank_as: str = ""


@dataclass
class Tables:
    """Field-lookup tables (by rule table name) and lookup tables (by field label)."""

    field_lookups: dict[str, dict[Any, Any]] = field(default_factory=dict)
    lookups: dict[str, LookupTable] = field(default_factory=dict)
    entity: EntityFacts = field(default_factory=EntityFacts)  # BC's per-table rules


def _referenced(mappings: dict[str, TableMapping], f: FieldMapping) -> list[TableMapping]:
    """The mappings a lookup goes through, in order (``mapping``, then ``also``); all of
    them map the same Dataverse table."""
    if f.lookup is None:
        raise ConfigError(f"field {f.label} is not a lookup")
    refs = []
    for name in f.lookup.mappings:
        ref = mappings.get(name)
        if ref is None:
            raise ConfigError(f"field {f.label} looks up through mapping {name!r}, which is "
                              "not loaded")
        refs.append(ref)
    tables = {r.dataverse.entity_set for r in refs}
    if len(tables) > 1:
        raise ConfigError(f"field {f.label} looks up through {', '.join(f.lookup.mappings)}, "
                          f"which map different Dataverse tables ({', '.join(sorted(tables))})")
    return refs


def _dv_match_field(ref: TableMapping, match_on: str) -> str | None:
    for f in ref.fields:
        if f.business_central == match_on and f.dataverse and f.constant is None:
            return f.dataverse
    return None


def load_tables(ctx: Any, mapping: TableMapping, direction: Direction) -> Tables:
    """Read the reference data a pass's field mappings need."""
    tables = Tables(entity=gather(ctx, mapping, direction))
    for f in mapping.fields_for(direction):
        for rule in f.rules_for(direction):
            if getattr(rule, "type", "") == "field_lookup" and \
                    rule.table_name not in tables.field_lookups:
                rows = ctx.business_central.client.list(rule.entity_set,
                                                        select=[rule.key, rule.field])
                tables.field_lookups[rule.table_name] = {r[rule.key]: r[rule.field] for r in rows}
        if f.lookup is not None:
            tables.lookups[f.label] = _merged([_lookup_table(ctx, ref, f)
                                               for ref in _referenced(ctx.mappings, f)])
    return tables


def _merged(parts: list[LookupTable]) -> LookupTable:
    """One lookup table over several mappings of the same Dataverse table: a value, record
    or coupling found through an earlier mapping wins (BC: a contact's company is looked up
    as a customer first, then as a vendor)."""
    if len(parts) == 1:
        return parts[0]
    out = LookupTable(target_entity_set=parts[0].target_entity_set)
    for part in parts:
        for mine, theirs in ((out.value_to_bc_id, part.value_to_bc_id),
                             (out.bc_id_to_value, part.bc_id_to_value),
                             (out.bc_to_dv, part.bc_to_dv), (out.dv_to_bc, part.dv_to_bc),
                             (out.dv_value, part.dv_value)):
            for key, value in theirs.items():
                mine.setdefault(key, value)
        for key, ids in part.dv_by_value.items():
            known = out.dv_by_value.setdefault(key, [])
            known += [i for i in ids if i not in known]
    return out


def _lookup_table(ctx: Any, ref: TableMapping, f: FieldMapping) -> LookupTable:
    if f.lookup is None:
        raise ConfigError(f"field {f.label} is not a lookup")
    match_on = f.lookup.match_on or ref.business_central.key
    bc_side, dv_side = ref.business_central, ref.dataverse
    table = LookupTable(target_entity_set=dv_side.entity_set)
    cols = list(dict.fromkeys([bc_side.key, match_on]))
    for row in ctx.business_central.client.list(bc_side.entity_set, select=cols):
        table.value_to_bc_id[canon(row.get(match_on))] = str(row[bc_side.key])
        table.bc_id_to_value[str(row[bc_side.key])] = row.get(match_on)
    if bc_side.entity_set == "currencies":
        table.blank_as = local_currency(ctx)
    couplings = ctx.state.couplings(ref.name)
    if not couplings.empty:
        done = couplings[~couplings["pending"].astype(bool)].dropna(subset=["bc_id", "dv_id"])
        table.bc_to_dv = dict(zip(done["bc_id"].astype(str), done["dv_id"].astype(str),
                                  strict=True))
        table.dv_to_bc = {v: k for k, v in table.bc_to_dv.items()}
    dv_field = _dv_match_field(ref, match_on)
    # Implicit coupling (BC's "find uncoupled destination", e.g. a currency by ISO code) only
    # where the referenced mapping itself couples on that one field; otherwise an uncoupled
    # reference is an uncoupled reference.
    implicit = any(g.fields == [match_on] for g in ref.coupling.match)
    if dv_field and implicit:
        for row in ctx.dataverse.client.list(dv_side.entity_set, select=[dv_side.key, dv_field]):
            key = canon(row.get(dv_field)).lower()
            table.dv_by_value.setdefault(key, []).append(str(row[dv_side.key]))
            table.dv_value[str(row[dv_side.key])] = row.get(dv_field)
    return table


def local_currency(ctx: Any) -> str:
    """The company's local currency code (LCY): what Business Central's API returns as a
    record's ``currencyCode`` when its Currency Code is blank (Learn: API v2.0
    companyInformation, ``currencyCode``; customer ``currencyCode``)."""
    rows = ctx.business_central.client.list("companyInformation", select=["currencyCode"])
    return str(rows[0].get("currencyCode") or "") if rows else ""
