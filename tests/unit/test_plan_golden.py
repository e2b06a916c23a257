"""Golden plan files: the pure plan of each shipped mapping (include/mappings/*.yaml), for each
of its passes, from fixed literal inputs, compared line by line with tests/unit/golden/.

Each pass plans five records: one not coupled (ignored in an incremental pass, inserted by a
full one), one coupled and unchanged, one changed on the source only (an update), and one
changed on both sides (an update conflict in a bidirectional mapping). Lookup, value-map and
field-lookup fields get literal reference tables. Nothing depends on the clock or on random
ids: ``BCDV_UPDATE_GOLDEN=1`` rewrites the files after an intended change.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from bcdv.engine.actions import Action, plan_header
from bcdv.engine.context import PassSides
from bcdv.engine.entity_rules import EntityFacts
from bcdv.engine.inputs import PlanInputs
from bcdv.engine.lookups import LookupTable, Tables
from bcdv.engine.plan import plan_records
from bcdv.engine.transform import compare_columns, read_key, side_fields, transform
from bcdv.engine.values import canon, row_hash
from bcdv.mapping.loader import load_mappings
from bcdv.mapping.model import Direction, FieldMapping, TableMapping
from bcdv.mapping.rules import length_bound

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).parent / "golden"
MAPPINGS = load_mappings(ROOT / "include" / "mappings")
BASELINE, LATER = "2026-03-01T10:00:00+00:00", "2026-03-02T09:30:00+00:00"
# Reference records of the lookups: (match value, Business Central id, Dataverse id).
REFERENCES = {"SALESPEOPLE": ("SP1", "bc-salesperson-1", "5a1e5a1e-0000-4000-8000-000000000001"),
              "CURRENCY": ("EUR", "bc-currency-eur", "c0c0c0c0-0000-4000-8000-000000000002"),
              "CUSTOMER": ("Acme Ltd", "bc-customer-acme", "acacacac-0000-4000-8000-000000000003")}
# Rows of the Business Central tables that field lookups read.
FIELD_LOOKUP_ROWS = {"paymentTerms": [{"id": "bc-terms-net30", "code": "NET30"}],
                     "shipmentMethods": [{"id": "bc-ship-fob", "code": "FOB"}],
                     "contacts": [{"number": "CT0001", "displayName": "Acme Ltd"}]}
CASES = [(name, d) for name, m in sorted(MAPPINGS.items()) for d in m.passes()]


def _sides(mapping: TableMapping, direction: Direction) -> PassSides:
    return PassSides.of(mapping, direction)


def _tables(mapping: TableMapping, direction: Direction) -> Tables:
    tables = Tables(entity=EntityFacts(next_salesperson=1,
                                       exchange_rates={"EUR": 0.9, "USD": 1.1}))
    for f in mapping.fields_for(direction):
        for rule in f.rules_for(direction):
            if getattr(rule, "type", "") == "field_lookup":
                rows = FIELD_LOOKUP_ROWS[rule.entity_set]
                tables.field_lookups[rule.table_name] = {r[rule.key]: r[rule.field]
                                                         for r in rows}
        if f.lookup is not None:
            value, bc_id, dv_id = REFERENCES[f.lookup.mapping]
            ref = MAPPINGS[f.lookup.mapping]
            tables.lookups[f.label] = LookupTable(
                target_entity_set=ref.dataverse.entity_set, value_to_bc_id={value: bc_id},
                bc_id_to_value={bc_id: value}, bc_to_dv={bc_id: dv_id}, dv_to_bc={dv_id: bc_id})
    return tables


def _plain(f: FieldMapping, direction: Direction) -> bool:
    return (f.constant is None and f.lookup is None and f.value_map is None
            and all(r.type == "max_length" for r in f.rules_for(direction)))


def _value(f: FieldMapping, direction: Direction, column: str, tag: str) -> Any:
    """A source value the field's rules translate (reference fields) or a literal."""
    to_dv = direction is Direction.TO_DATAVERSE
    if f.lookup is not None:
        value, _, dv_id = REFERENCES[f.lookup.mapping]
        if f.rules_for(direction):  # a contact's company: number -> name -> account
            return "CT0001" if to_dv else dv_id
        return value if to_dv else dv_id
    if f.value_map is not None:
        code = "FOB" if "ship" in column.lower() or "freight" in column.lower() else "NET30"
        if not to_dv:
            return 1
        rows = FIELD_LOOKUP_ROWS["shipmentMethods" if code == "FOB" else "paymentTerms"]
        return rows[0]["id"] if f.rules_for(direction) else code
    if "credit" in column.lower():
        return 5000
    if column in ("code", "isocurrencycode"):
        return "EUR"
    # Values fit a max_length rule (BC's shorter field), as real data does.
    return f"{column} {tag}"[-(length_bound(f.rules_for(direction)) or 0):]


def _source_row(mapping: TableMapping, direction: Direction, rid: str, modified: str,
                tag: str = "a", **changes: Any) -> dict[str, Any]:
    sides = _sides(mapping, direction)
    row: dict[str, Any] = {sides.source.key: rid, sides.source.modified_on: modified}
    for f in mapping.fields_for(direction):
        column = read_key(f, sides.source_system)
        if column and column not in row:
            row[column] = _value(f, direction, column, tag)
    for column in side_fields(mapping, sides.source_system):
        row.setdefault(column, f"{column} {tag}")
    return {**row, **changes}


def _target_row(mapping: TableMapping, direction: Direction, source: dict[str, Any], tid: str,
                tables: Tables) -> dict[str, Any]:
    """The counterpart as the last sync left it: the source's mapped values, read back."""
    sides = _sides(mapping, direction)
    wanted = transform(pd.DataFrame([source]), mapping, direction, tables).values.iloc[0]
    row: dict[str, Any] = {c: f"{c} theirs" for c in side_fields(mapping, sides.target_system)}
    for write, read in compare_columns(mapping, direction).items():
        if write in wanted:
            row[read] = wanted[write]
    if sides.target.entity_set == "transactioncurrencies":
        row["exchangerate"] = 0.9
    return {**row, sides.target.key: tid, sides.target.modified_on: BASELINE,
            "@odata.etag": 'W/"1001"'}


def _coupling(mapping: TableMapping, direction: Direction, source: dict[str, Any],
              target: dict[str, Any]) -> dict[str, Any]:
    sides = _sides(mapping, direction)
    src_f, tgt_f = side_fields(mapping, sides.source_system), side_fields(mapping,
                                                                           sides.target_system)
    ids = {sides.source_id_col: source[sides.source.key],
           sides.target_id_col: target[sides.target.key]}
    baselines = {sides.source_mod_col: BASELINE, sides.target_mod_col: BASELINE}
    hashes = {sides.source_hash_col: row_hash(source, src_f),
              sides.target_hash_col: row_hash(target, tgt_f)}
    synced = {sides.source_system: {f: canon(source.get(f)) for f in src_f},
              sides.target_system: {f: canon(target.get(f)) for f in tgt_f}}
    return {"id": len(str(ids)), "pending": False, "skipped": False, "to_dv_result": "success",
            "to_bc_result": "success", "synced": json.dumps(synced, sort_keys=True), **ids,
            **baselines, **hashes}


def _changed_column(mapping: TableMapping, direction: Direction) -> tuple[str, str]:
    """A plain field (bidirectional when the mapping is; not a currency's code, whose
    exchange rate must exist): its source and target columns."""
    sides = _sides(mapping, direction)
    plain = [f for f in mapping.fields_for(direction) if _plain(f, direction)
             and read_key(f, sides.source_system) != "code"]
    both = [f for f in plain if f.direction is Direction.BIDIRECTIONAL] or plain
    return (str(read_key(both[0], sides.source_system)),
            str(read_key(both[0], sides.target_system)))


def golden_plan(name: str, direction: Direction) -> list[Action]:
    """The plan of the golden inputs of one mapping's pass."""
    m = MAPPINGS[name]
    sides = _sides(m, direction)
    tables = _tables(m, direction)
    src_col, tgt_col = _changed_column(m, direction)
    prefix = "dv-" if direction is Direction.TO_DATAVERSE else "bc-"
    rows, couplings, targets = [], [], []
    for rid in ("same", "changed", "conflict"):
        old = _source_row(m, direction, f"src-{rid}", BASELINE, rid)
        target = _target_row(m, direction, old, f"{prefix}{rid}", tables)
        couplings.append(_coupling(m, direction, old, target))
        if rid == "same":
            rows.append(old)
            continue
        rows.append({**old, src_col: f"{src_col} edited", sides.source.modified_on: LATER})
        if rid == "conflict":
            target = {**target, tgt_col: f"{tgt_col} edited there",
                      sides.target.modified_on: LATER}
        targets.append(target)
    new = _source_row(m, direction, "src-new", LATER, "new")
    actions = []
    for mode, source in (("modified", [new, *rows]), ("full", [new])):
        inputs = PlanInputs.build(m, direction, mode=mode, source=source, couplings=couplings,
                                  targets=targets, tables=_tables(m, direction),
                                  id_seed=f"golden-{name}")
        actions.extend(plan_records(inputs))
    return actions


def _lines(name: str, direction: Direction) -> list[str]:
    header = plan_header(name, direction.value)
    return [json.dumps(row, sort_keys=True, ensure_ascii=False)
            for row in [header, *(a.to_row() for a in golden_plan(name, direction))]]


@pytest.mark.parametrize(("name", "direction"), CASES, ids=[f"{n}-{d.value}" for n, d in CASES])
def test_golden_plan(name: str, direction: Direction) -> None:
    path = GOLDEN / f"{name.lower()}.{direction.value}.jsonl"
    lines = _lines(name, direction)
    if os.environ.get("BCDV_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert path.exists(), f"{path} is missing: run with BCDV_UPDATE_GOLDEN=1 to write it"
    assert path.read_text(encoding="utf-8").splitlines() == lines


def test_goldens_cover_every_shipped_mapping_and_the_action_kinds() -> None:
    files = sorted(p.name for p in GOLDEN.glob("*.jsonl"))
    assert files == sorted(f"{n.lower()}.{d.value}.jsonl" for n, d in CASES)
    kinds = {json.loads(line).get("action") for p in GOLDEN.glob("*.jsonl")
             for line in p.read_text().splitlines()[1:]}
    assert {"insert", "update", "unchanged", "ignore", "fail"} <= kinds
