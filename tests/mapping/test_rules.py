"""Transformation rules and value maps, as tables of input -> output."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import TypeAdapter

from bcdv.mapping.model import Direction, FieldMapping, ValueMap
from bcdv.mapping.rules import Rule, apply_chain

RULE = TypeAdapter(Rule)


@pytest.mark.parametrize(("rule", "value", "expected"), [
    ({"type": "uppercase"}, "Contoso Ltd.", "CONTOSO LTD."),
    ({"type": "lowercase"}, "Contoso Ltd.", "contoso ltd."),
    ({"type": "titlecase"}, "aLPINE sKI house", "Alpine Ski House"),
    ({"type": "trim"}, "  Seattle \t", "Seattle"),
    ({"type": "substring", "start": 4, "length": 3}, "ABCDEFGH", "DEF"),  # FOURTH_TO_SIXTH_CHAR
    ({"type": "substring", "start": 3}, "ABCDEFGH", "CDEFGH"),
    ({"type": "replace", "find": "NOTPROVIDED"}, "x NOTPROVIDED", "x "),
    ({"type": "regex_replace", "pattern": r"\s+", "replace": " "}, "a   b\tc", "a b c"),
    ({"type": "regex_replace", "pattern": r"^(\S+)\s+.*$", "replace": r"\1"}, "Ann Lee", "Ann"),
    ({"type": "alphanumeric_only"}, "+1 (206) 555-0100", "12065550100"),
    ({"type": "date_format", "format": "%Y%m%d"}, "2025-03-07", "20250307"),  # YYYYMMDD_DATE
    ({"type": "date_format", "format": "%m/%d/%Y", "input_format": "%Y%m%d"}, "20250307",
     "03/07/2025"),
    ({"type": "datetime_format", "format": "%Y%m%d%H%M%S"}, "2025-03-07T08:09:10Z",
     "20250307080910"),
    ({"type": "decimal_format", "decimals": 2, "culture": "da-DK"}, 1234567.891, "1.234.567,89"),
    ({"type": "decimal_format", "decimals": 2, "culture": "en-US"}, 1234.5, "1,234.50"),
    ({"type": "decimal_format"}, 12.5, "12.5"),
    ({"type": "round", "precision": 0.01}, 10.005, 10.01),
    ({"type": "round", "precision": 1000}, 12499, 12000),
    ({"type": "uppercase"}, None, None),
    ({"type": "trim"}, "", ""),
])
def test_rule(rule: dict[str, Any], value: Any, expected: Any) -> None:
    assert RULE.validate_python(rule).apply(value) == expected


def test_field_lookup_needs_its_table_and_reports_missing_values() -> None:
    rule = RULE.validate_python({"type": "field_lookup", "entity_set": "paymentTerms",
                                 "key": "id", "field": "code"})
    tables = {rule.table_name: {"g1": "30 DAYS"}}
    assert rule.apply("g1", tables) == "30 DAYS"
    with pytest.raises(LookupError, match="no paymentTerms record with id = 'g2'"):
        rule.apply("g2", tables)
    with pytest.raises(LookupError, match="needs the table"):
        rule.apply("g1", {})
    keep = rule.model_copy(update={"if_not_found": "original"})
    assert keep.apply("g2", tables) == "g2"


def test_rules_run_in_the_pass_they_are_for() -> None:
    f = FieldMapping.model_validate({
        "business_central": "displayName", "dataverse": "name", "transform": [
            {"type": "trim"}, {"type": "uppercase", "direction": "to_dataverse"},
            {"type": "titlecase", "direction": "to_business_central"}]})
    assert apply_chain(f.rules_for(Direction.TO_DATAVERSE), " ann lee ") == "ANN LEE"
    assert apply_chain(f.rules_for(Direction.TO_BUSINESS_CENTRAL), " ANN LEE ") == "Ann Lee"


def test_value_map_both_ways() -> None:
    vm = ValueMap.model_validate({"values": [{"business_central": "NET30", "dataverse": 1},
                                             {"business_central": "30 DAYS", "dataverse": 5}]})
    assert vm.to_dataverse("net30") == 1 and vm.to_dataverse("30 days") == 5
    assert vm.to_dataverse("") is None and vm.to_business_central(None) == ""
    assert vm.to_business_central(5) == "30 DAYS"
    with pytest.raises(LookupError):
        vm.to_dataverse("COD")
    assert vm.as_dict(Direction.TO_BUSINESS_CENTRAL) == {1: "NET30", 5: "30 DAYS"}
    assert vm.unmapped.value == "keep"
