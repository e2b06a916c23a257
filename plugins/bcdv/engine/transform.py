"""Transform source records into destination values through the field mappings (pandas).

Per field mapping, one column at a time for a whole chunk: constant, or the source column
through the transformation rules, the value map and the lookup. A value that cannot be
translated becomes an error of that record (the others go on); a value the mapping says to
leave alone (Not Null / ``keep``) is masked out, so the destination keeps what it has.

Column names: on the Dataverse side a lookup is read as ``_x_value`` and written as
``nav@odata.bind``; :func:`write_key` and :func:`read_key` give the names per system.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from bcdv.clients.odata import key_segment
from bcdv.engine.created import CREATED_ON
from bcdv.engine.lookups import Tables
from bcdv.engine.values import NULL_GUID, canon, is_blank
from bcdv.mapping.model import Direction, FieldMapping, OnFailure, TableMapping


class _Err:
    """A cell whose value could not be translated (carries the message)."""

    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message


class _Keep:
    """A cell the destination keeps (Not Null / unmapped ``keep``)."""


KEEP = _Keep()


def read_key(f: FieldMapping, system: str) -> str | None:
    """The column a field is read from on ``system``."""
    return f.dataverse_read_column if system == "dataverse" else f.business_central


def write_key(f: FieldMapping, system: str) -> str | None:
    """The property a field is written as on ``system``."""
    if system == "dataverse":
        return f.dataverse_bind_property or f.dataverse
    return f.business_central


def _source_system(direction: Direction) -> str:
    return "business_central" if direction is Direction.TO_DATAVERSE else "dataverse"


def _target_system(direction: Direction) -> str:
    return "dataverse" if direction is Direction.TO_DATAVERSE else "business_central"


def source_columns(mapping: TableMapping, direction: Direction) -> list[str]:
    """Source-side columns a pass must read: key, modified-on, name, every mapped field and,
    on Dataverse, ``createdon``."""
    system = _source_system(direction)
    side = mapping.side(system)
    cols = [side.key, side.modified_on]
    if side.name_field:
        cols.append(side.name_field)
    cols.extend(side_fields(mapping, system))
    if system == "dataverse":
        cols.append(CREATED_ON)  # settles the baseline of rows our creates made (created.py)
    return list(dict.fromkeys(cols))


def side_fields(mapping: TableMapping, system: str) -> list[str]:
    """Every enabled, non-constant mapped column on one side, as read (the side's hash)."""
    out = []
    for f in mapping.fields:
        name = read_key(f, system)
        if f.enabled and f.constant is None and name:
            out.append(name)
    return list(dict.fromkeys(out))


def read_names(mapping: TableMapping, system: str) -> dict[str, str]:
    """Written property -> column a read returns, on ``system``, for every field with both
    (a Dataverse lookup is written as ``nav@odata.bind`` and read back as ``_nav_value``)."""
    return {str(write_key(f, system)): str(read_key(f, system)) for f in mapping.fields
            if write_key(f, system) and read_key(f, system)}


def compare_columns(mapping: TableMapping, direction: Direction) -> dict[str, str]:
    """Written property -> column read back, for the target of a pass."""
    system = _target_system(direction)
    out: dict[str, str] = {}
    for f in mapping.fields_for(direction):
        w, r = write_key(f, system), read_key(f, system)
        if w and r:
            out[w] = r
    return out


@dataclass
class Transformed:
    """Destination values per source row, with per-row errors and per-cell keep marks."""

    values: pd.DataFrame  # columns: written property names
    errors: pd.Series  # message or None per row
    keep: pd.DataFrame  # True where the destination keeps its value


def _safe(func: Any) -> Any:
    def inner(value: Any) -> Any:
        if isinstance(value, (_Err, _Keep)):
            return value
        try:
            return func(value)
        except (LookupError, ValueError, TypeError, ArithmeticError) as exc:
            return _Err(str(exc))
    return inner


def _omap(col: pd.Series, func: Any) -> pd.Series:
    """``Series.map`` that keeps None as None (pandas would infer a dtype and make it NaN)."""
    return pd.Series([func(v) for v in col.tolist()], index=col.index, dtype=object)


def _column(src: pd.DataFrame, mapping: TableMapping, f: FieldMapping, direction: Direction,
            tables: Tables) -> pd.Series:
    if f.constant is not None:
        return pd.Series([f.constant] * len(src), index=src.index, dtype=object)
    name = read_key(f, _source_system(direction))
    col = src[name].astype(object) if name in src.columns else pd.Series(
        [None] * len(src), index=src.index, dtype=object)
    # Every spelling of "nothing" (BC's null GUID and blank enum, NaN) is None to the rules.
    col = _omap(col, lambda v: None if is_blank(v) else v)
    rules: list[Any] = [lambda c, r=rule: _omap(c, _safe(lambda v: r.apply(
        v, tables.field_lookups))) for rule in f.rules_for(direction)]
    maps: list[Any] = []
    vmap = mapping.value_map_of(f)
    if vmap is not None:
        maps.append(lambda c: _value_map(c, vmap, direction, f))
    if f.lookup is not None:
        maps.append(lambda c: _lookup(c, tables.lookups[f.label], direction, f))
    # The way back undoes the way there: lookup, then value map, then the rules
    # (e.g. option 1 -> code 'NET30' -> paymentTerms id).
    steps = rules + maps if direction is Direction.TO_DATAVERSE else maps[::-1] + rules
    for step in steps:
        col = step(col)
    return col


def _special(col: pd.Series) -> pd.Series:
    """Cells already decided (an error or a keep mark) pass through later steps."""
    return pd.Series([isinstance(v, (_Err, _Keep)) for v in col.tolist()], index=col.index,
                     dtype=bool)


def _finish(col: pd.Series, found: pd.Series, missing: pd.Series, on_missing: Any,
            special: pd.Series) -> pd.Series:
    """Assemble a mapped column: found values, the policy's value where missing, specials."""
    out = found.astype(object).where(found.notna(), None)
    for idx in missing[missing].index:
        out.at[idx] = on_missing(col.at[idx])
    out[special] = col[special]
    return out


def _value_map(col: pd.Series, vmap: Any, direction: Direction, f: FieldMapping) -> pd.Series:
    """A value map applied to a whole column (``Series.map`` of its table)."""
    special = _special(col)
    plain = col.where(~special, None)
    table = vmap.as_dict(direction)
    if direction is Direction.TO_DATAVERSE:
        keys = _omap(plain, lambda v: str(v).upper() if canon(v) else None)
    else:
        keys = _omap(pd.to_numeric(plain, errors="coerce"),
                     lambda v: None if pd.isna(v) else int(v))
    found = keys.map(table)
    present = keys.notna()
    missing = present & found.isna()
    unmapped = vmap.unmapped

    def on_missing(value: Any) -> Any:
        if unmapped is OnFailure.KEEP:
            return KEEP
        if unmapped is OnFailure.CLEAR:
            return None if direction is Direction.TO_DATAVERSE else ""
        return _Err(f"{f.label}: {value!r} has no entry in value map {f.value_map}")

    out = _finish(col, found, missing, on_missing, special)
    if direction is Direction.TO_BUSINESS_CENTRAL and unmapped is OnFailure.KEEP:
        # A blank choice may stand for a code Dataverse has no option for (kept on the way
        # there): never let it blank the code in Business Central.
        out[~present & ~special] = KEEP
    return out


def _lookup(col: pd.Series, table: Any, direction: Direction, f: FieldMapping) -> pd.Series:
    """A lookup through another mapping's couplings, as joins of the column with its tables
    (``Series.map``): value -> record -> coupled id, else BC's implicit match."""
    lookup = f.lookup
    if lookup is None:
        raise ValueError(f"field {f.label} is not a lookup")
    special = _special(col)
    keys = _omap(col.where(~special, None), lambda v: canon(v) or None)
    present = keys.notna()
    if direction is Direction.TO_DATAVERSE:
        found = keys.map(table.value_to_bc_id).map(table.bc_to_dv)
        implicit = {k: ids[0] for k, ids in table.dv_by_value.items() if len(ids) == 1}
        found = found.where(found.notna(), _omap(
            keys, lambda k: implicit.get(k.lower()) if isinstance(k, str) else None))
    else:
        found = keys.map(table.dv_to_bc).map(table.bc_id_to_value)
        implicit = keys.map(table.dv_value)
        via_bc = _omap(implicit, lambda v: None if canon(v) == "" else
                       table.bc_id_to_value.get(table.value_to_bc_id.get(canon(v))))
        found = found.where(found.notna(), via_bc.where(via_bc.notna(), implicit))
    missing = present & found.isna()
    policy = lookup.on_failure
    where = "Dataverse" if direction is Direction.TO_DATAVERSE else "Business Central"
    source = f.business_central if direction is Direction.TO_DATAVERSE else f.dataverse

    def on_missing(value: Any) -> Any:
        if policy is OnFailure.KEEP:
            return KEEP  # BC's Not Null: leave the destination as it is
        if policy is OnFailure.CLEAR:
            return None if direction is Direction.TO_DATAVERSE else table.blank_as
        return _Err(f"{source} {value} must be coupled to a record in {where} "
                    f"(mapping {' or '.join(lookup.mappings)})")

    out = _finish(col, found, missing, on_missing, special)
    blank = ~present & ~special
    if policy is OnFailure.KEEP:
        out[blank] = KEEP
    else:
        out[blank] = None if direction is Direction.TO_DATAVERSE else table.blank_as
    return out


def transform(src: pd.DataFrame, mapping: TableMapping, direction: Direction,
              tables: Tables) -> Transformed:
    """Destination values of every source row (same index as ``src``)."""
    target = _target_system(direction)
    values = pd.DataFrame(index=src.index)
    for f in mapping.fields_for(direction):
        key = write_key(f, target)
        if key:
            values[key] = _column(src, mapping, f, direction, tables)
    values = values.astype(object)
    # Marks and each row's first error, column by column over plain lists (a DataFrame.map
    # or a row-wise apply costs more than the whole transform of a column).
    cells = {c: values[c].tolist() for c in values.columns}
    keep = pd.DataFrame({c: [isinstance(v, _Keep) for v in vals] for c, vals in cells.items()},
                        index=values.index, columns=values.columns, dtype=bool)
    err_mask = pd.DataFrame({c: [isinstance(v, _Err) for v in vals]
                             for c, vals in cells.items()},
                            index=values.index, columns=values.columns, dtype=bool)
    first: list[str | None] = [None] * len(values)
    for vals in cells.values():
        for i, v in enumerate(vals):
            if first[i] is None and isinstance(v, _Err):
                first[i] = v.message
    errors = pd.Series(first, index=values.index, dtype=object)
    values = values.mask(err_mask | keep, None)
    if direction is Direction.TO_DATAVERSE:
        # Dataverse stores an empty text as null; send null so the stored value matches.
        values = values.where(~values.isin(["", "_x0020_"]), None)
    else:
        # Business Central text is never null; its GUID references (API v2.0 names them
        # ...Id) are blank as the null GUID.
        values = values.where(values.notna(), "")
        for col in values.columns:
            if col.endswith("Id"):
                values[col] = _omap(values[col], lambda v: NULL_GUID if v == "" else v)
    return Transformed(values, errors, keep)


def to_wire(values: dict[str, Any], mapping: TableMapping, direction: Direction,
            tables: Tables) -> dict[str, Any]:
    """Payload for the API: lookup ids become ``/entityset(id)`` binds."""
    return with_binds(values, wire_binds(mapping, direction, tables))


def wire_binds(mapping: TableMapping, direction: Direction, tables: Tables) -> dict[str, str]:
    """The written properties of a pass that are Dataverse lookups, with the entity set each
    binds to (none when the pass writes Business Central). Once per pass, for ``with_binds``
    per record."""
    if direction is not Direction.TO_DATAVERSE:
        return {}
    return {str(write_key(f, "dataverse")): tables.lookups[f.label].target_entity_set
            for f in mapping.lookups(direction) if write_key(f, "dataverse")}


def with_binds(values: dict[str, Any], binds: dict[str, str]) -> dict[str, Any]:
    """A payload with its lookup ids as ``/entityset(id)`` binds (see ``wire_binds``)."""
    out = dict(values)
    for key, entity_set in binds.items():
        if out.get(key) is not None:
            out[key] = "/" + key_segment(entity_set, out[key])
    return out
