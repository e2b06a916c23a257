"""Transform source records into destination payloads through the field mappings (pandas).

Vectorised per column: each field mapping turns one source column (or a constant) into one
destination column for a whole chunk of records at once.
"""

from __future__ import annotations

import pandas as pd

from bcdv.mapping.model import Direction, TableMapping


def source_columns(mapping: TableMapping, direction: Direction) -> list[str]:
    """Source-side columns a pass must read: key, modified-on, name and every mapped field."""
    src_side = (mapping.business_central if direction is Direction.TO_DATAVERSE
                else mapping.dataverse)
    cols = [src_side.key, src_side.modified_on]
    if src_side.name_field:
        cols.append(src_side.name_field)
    for f in mapping.fields:
        name = f.business_central if direction is Direction.TO_DATAVERSE else f.dataverse
        if name and f.constant is None:
            cols.append(name)
    return list(dict.fromkeys(cols))


def side_fields(mapping: TableMapping, system: str) -> list[str]:
    """Every enabled, non-constant mapped field on one side (what the side hash covers)."""
    out = []
    for f in mapping.fields:
        name = f.business_central if system == "business_central" else f.dataverse
        if f.enabled and f.constant is None and name:
            out.append(name)
    return list(dict.fromkeys(out))


def to_payload(source: pd.DataFrame, mapping: TableMapping, direction: Direction) -> pd.DataFrame:
    """Destination column values for each source row (same index as ``source``)."""
    out = pd.DataFrame(index=source.index)
    for f in mapping.fields_for(direction):
        target = f.target(direction)
        if f.constant is not None:
            out[target] = f.constant
            continue
        src = f.source(direction)
        out[target] = source[src] if src in source.columns else None
    if direction is Direction.TO_DATAVERSE:
        # Dataverse stores an empty text as null; send null so the stored value matches.
        out = out.astype(object).where(~out.isin(["", "_x0020_"]), None)
    else:
        # Business Central text is never null.
        out = out.astype(object).where(out.notna(), "")
    return out
