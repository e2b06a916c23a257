"""The shipped mappings on the demo data: ``validate --live`` finds only the one explained
warning, and the ``max_length`` rule that states BC's shorter fields."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from pydantic import TypeAdapter

from bcdv.mapping import load_mapping_set
from bcdv.mapping.live import validate_live
from bcdv.mapping.loader import DEFAULTS_DIR
from bcdv.mapping.rules import Rule, length_bound

RULE = TypeAdapter(Rule)
# The one warning the defaults keep, explained in currency.yaml and the README.
EXPLAINED = {("CURRENCY", "fields[0].dataverse",
              "'isocurrencycode' can only be set when the Dataverse record is created; later "
              "changes will be rejected")}


def _findings(mdir: Path, endpoints) -> set[tuple[str, str, str, str]]:
    return {(f.level, f.mapping, f.where.split(": ", 1)[1], f.message)
            for f in validate_live(load_mapping_set(mdir), endpoints)}


@pytest.fixture
def mdir(tmp_path: Path) -> Path:
    d = tmp_path / "mappings"
    shutil.copytree(DEFAULTS_DIR, d)
    return d


def test_shipped_mappings_have_only_the_explained_warning(mdir: Path, endpoints) -> None:
    assert _findings(mdir, endpoints) == {("warning", *w) for w in EXPLAINED}
    readme = " ".join((Path(__file__).resolve().parents[2] / "README.md").read_text().split())
    assert "'isocurrencycode' can only be set when the Dataverse record is created" in readme
    assert "validate --live` reports no error and one warning" in readme


def test_a_length_difference_without_a_rule_is_still_a_warning(mdir: Path, endpoints) -> None:
    path = mdir / "customer.yaml"
    text = path.read_text()
    old = ("{business_central: country, dataverse: address1_country,\n"
           "     transform: [{type: max_length, length: 10, direction: to_business_central}]}")
    assert old in text
    path.write_text(text.replace(old, "{business_central: country, dataverse: address1_country}"))
    new = _findings(mdir, endpoints) - {("warning", *w) for w in EXPLAINED}
    assert new == {("warning", "CUSTOMER", "fields[6].business_central",
                    "'country' holds 10 characters, 'address1_country' up to 80: longer values "
                    "fail to_business_central (a max_length rule states what happens to them)")}


def test_a_rule_longer_than_the_field_does_not_silence_the_warning(mdir: Path,
                                                                  endpoints) -> None:
    path = mdir / "customer.yaml"
    text = path.read_text().replace("{type: max_length, length: 10,", "{type: max_length, "
                                    "length: 12,")
    path.write_text(text)
    new = _findings(mdir, endpoints) - {("warning", *w) for w in EXPLAINED}
    assert [w[2] for w in new] == ["fields[6].business_central"]


@pytest.mark.parametrize(("rule", "value", "expected"), [
    ({"type": "max_length", "length": 10}, "US", "US"),
    ({"type": "max_length", "length": 10}, "0123456789", "0123456789"),
    ({"type": "max_length", "length": 10, "on_longer": "truncate"}, "United States",
     "United Sta"),
    ({"type": "max_length", "length": 10}, None, None),
    ({"type": "max_length", "length": 10}, "", ""),
])
def test_max_length(rule: dict, value: str | None, expected: str | None) -> None:
    assert RULE.validate_python(rule).apply(value) == expected


def test_max_length_fails_a_longer_value_naming_it_and_the_limit() -> None:
    rule = RULE.validate_python({"type": "max_length", "length": 10})
    with pytest.raises(ValueError, match=r"^'United States' has 13 characters; the destination "
                                         r"holds at most 10$"):
        rule.apply("United States")
    with pytest.raises(ValueError):
        RULE.validate_python({"type": "max_length", "length": 0})


@pytest.mark.parametrize(("rules", "bound"), [
    ([], None),
    ([{"type": "max_length", "length": 30}], 30),
    ([{"type": "substring", "start": 2, "length": 5}, {"type": "trim"}], 5),
    ([{"type": "max_length", "length": 30}, {"type": "max_length", "length": 20}], 20),
    ([{"type": "substring", "start": 2}], None),
    # A later rule that can lengthen the text lifts the bound.
    ([{"type": "max_length", "length": 30}, {"type": "replace", "find": "&",
                                               "replace": "and"}], None),
    ([{"type": "max_length", "length": 30}, {"type": "uppercase"}], None),
])
def test_length_bound(rules: list[dict], bound: int | None) -> None:
    assert length_bound([RULE.validate_python(r) for r in rules]) == bound
