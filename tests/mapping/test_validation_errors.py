"""Every class of mapping error is one MappingError naming ``file:line: field.path: message``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bcdv.errors import MappingError
from bcdv.mapping import load_mapping_file, load_mappings

CURRENCY = """\
name: CURRENCY
business_central: {entity_set: currencies, key: id, modified_on: lastModifiedDateTime}
dataverse: {entity_set: transactioncurrencies, key: transactioncurrencyid, modified_on: modifiedon}
direction: to_dataverse
fields:
  - {business_central: code, dataverse: isocurrencycode, direction: to_dataverse}
"""

CUSTOMER = """\
name: CUSTOMER
business_central:
  entity_set: customers
  key: id
  modified_on: lastModifiedDateTime
dataverse:
  entity_set: accounts
  key: accountid
  modified_on: modifiedon
direction: bidirectional
depends_on: [CURRENCY]
conflicts:
  update: none
  deletion: none
coupling:
  match:
    - {priority: 1, fields: [displayName]}
value_maps:
  PAYMENT_TERMS:
    values:
      - {business_central: NET30, dataverse: 1}
      - {business_central: NET60, dataverse: 4}
fields:
  - {business_central: displayName, dataverse: name}
  - business_central: currencyCode
    dataverse: transactioncurrencyid
    lookup: {mapping: CURRENCY, match_on: code, on_failure: clear}
  - business_central: paymentTermsId
    dataverse: paymenttermscode
    value_map: PAYMENT_TERMS
    transform:
      - {type: field_lookup, entity_set: paymentTerms, key: id, field: code, direction: to_dataverse}
  - {business_central: creditLimit, dataverse: creditlimit, direction: to_dataverse}
  - {dataverse: customertypecode, constant: 3, direction: to_dataverse}
"""  # noqa: E501 - the tests below replace text in this YAML and assert its line numbers
#  line numbers of CUSTOMER, for reading the assertions below:
#  11 depends_on | 13 update | 17 match group | 18 value_maps | 23 fields | 24 fields[0]
#  25 fields[1] | 27 lookup | 28 fields[2] | 30 value_map | 32 transform[0]
#  33 fields[3] | 34 fields[4]


def _dir(tmp_path: Path, customer: str = CUSTOMER, **others: str) -> Path:
    d = tmp_path / "mappings"
    d.mkdir(exist_ok=True)
    (d / "currency.yaml").write_text(CURRENCY)
    (d / "customer.yaml").write_text(customer)
    for name, text in others.items():
        (d / f"{name}.yaml").write_text(text)
    return d


def _error(tmp_path: Path, customer: str, **others: str) -> str:
    d = _dir(tmp_path, customer, **others)
    with pytest.raises(MappingError) as err:
        load_mappings(d)
    # The same message when the file is loaded on its own (as an Airflow DAG file does).
    with pytest.raises(MappingError) as alone:
        load_mapping_file(d / "customer.yaml")
    assert str(alone.value) == str(err.value)
    return str(err.value)


def _sub(old: str, new: str, text: str = CUSTOMER) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


def _assert(msg: str, tmp_path: Path, line: int, path: str, *needles: str) -> None:
    prefix = f"{tmp_path / 'mappings' / 'customer.yaml'}:{line}: {path}: "
    assert msg.startswith(prefix), msg
    for needle in needles:
        assert needle in msg, msg


def test_the_base_files_are_valid(tmp_path: Path) -> None:
    assert set(load_mappings(_dir(tmp_path))) == {"CURRENCY", "CUSTOMER"}


# -- unknown keys ---------------------------------------------------------------------------

@pytest.mark.parametrize(("old", "new", "line", "path"), [
    ("direction: bidirectional", "direction: bidirectional\ncolour: red", 11, "colour"),
    ("  key: accountid", "  key: accountid\n  primary: yes", 9, "dataverse.primary"),
    ("{business_central: displayName, dataverse: name}",
     "{business_central: displayName, dataverse: name, mandatory: true}", 24,
     "fields[0].mandatory"),
    ("on_failure: clear}", "on_failure: clear, notnull: true}", 27, "fields[1].lookup.notnull"),
    ("field: code, direction", "field: code, colum: x, direction", 32,
     "fields[2].transform[0].colum"),
    ("  update: none", "  updates: none", 13, "conflicts.updates"),
])
def test_unknown_key(tmp_path: Path, old: str, new: str, line: int, path: str) -> None:
    _assert(_error(tmp_path, _sub(old, new)), tmp_path, line, path, "unknown key")


# -- bad enum values ------------------------------------------------------------------------

@pytest.mark.parametrize(("old", "new", "line", "path", "allowed"), [
    ("direction: bidirectional", "direction: both_ways", 10, "direction",
     ["'bidirectional'", "'to_dataverse'", "'to_business_central'"]),
    ("  update: none", "  update: newest_wins", 13, "conflicts.update",
     ["'business_central_wins'", "'dataverse_wins'", "'merge'"]),
    ("  deletion: none", "  deletion: delete", 14, "conflicts.deletion",
     ["'remove_coupling'", "'restore_records'"]),
    ("on_failure: clear", "on_failure: ignore", 27, "fields[1].lookup.on_failure",
     ["'error'", "'clear'", "'keep'"]),
    ("type: field_lookup", "type: lookup_field", 32, "fields[2].transform[0].type",
     ["'field_lookup'", "'regex_replace'", "'titlecase'"]),
    ("direction: to_dataverse}\n  - {business_central: creditLimit",
     "direction: to_crm}\n  - {business_central: creditLimit", 32,
     "fields[2].transform[0].direction", ["'both'", "'to_dataverse'"]),
])
def test_bad_enum_value_lists_allowed(tmp_path: Path, old: str, new: str, line: int, path: str,
                                      allowed: list[str]) -> None:
    msg = _error(tmp_path, _sub(old, new))
    _assert(msg, tmp_path, line, path, "invalid value", *allowed)


# -- references -----------------------------------------------------------------------------

def test_unknown_dependency(tmp_path: Path) -> None:
    msg = _error(tmp_path, _sub("depends_on: [CURRENCY]", "depends_on: [CURRENCY, SALESPEOPLE]"))
    _assert(msg, tmp_path, 11, "depends_on[1]", "unknown mapping 'SALESPEOPLE'",
            "known: CURRENCY, CUSTOMER")


def test_unknown_lookup_mapping(tmp_path: Path) -> None:
    msg = _error(tmp_path, _sub("mapping: CURRENCY", "mapping: CURRENCIES"))
    _assert(msg, tmp_path, 27, "fields[1].lookup.mapping", "unknown mapping 'CURRENCIES'")


def test_unknown_value_map(tmp_path: Path) -> None:
    msg = _error(tmp_path, _sub("value_map: PAYMENT_TERMS", "value_map: PAYMENT_TERM"))
    _assert(msg, tmp_path, 30, "fields[2].value_map", "unknown value map 'PAYMENT_TERM'",
            "PAYMENT_TERMS")


def test_coupling_field_not_mapped(tmp_path: Path) -> None:
    msg = _error(tmp_path, _sub("fields: [displayName]}", "fields: [displayName, phoneNumber]}"))
    _assert(msg, tmp_path, 17, "coupling.match[0].fields[1]", "'phoneNumber'",
            "not the Business Central side of an enabled field mapping")


def test_coupling_field_with_lookup_is_not_matchable(tmp_path: Path) -> None:
    msg = _error(tmp_path, _sub("fields: [displayName]}", "fields: [currencyCode]}"))
    _assert(msg, tmp_path, 17, "coupling.match[0].fields[0]", "without constant, lookup")


def test_dependency_cycle_across_files(tmp_path: Path) -> None:
    currency = CURRENCY.replace("direction: to_dataverse\n",
                                "direction: to_dataverse\ndepends_on: [CUSTOMER]\n")
    d = _dir(tmp_path)
    (d / "currency.yaml").write_text(currency)
    with pytest.raises(MappingError) as err:
        load_mappings(d)
    msg = str(err.value)
    assert msg.startswith(f"{d / 'currency.yaml'}:5: depends_on[0]: dependency cycle: "
                          "CURRENCY -> CUSTOMER -> CURRENCY"), msg
    # Each file of the cycle reports it at its own depends_on entry.
    with pytest.raises(MappingError, match=re.escape(
            f"{d / 'customer.yaml'}:11: depends_on[0]: dependency cycle: CUSTOMER -> CURRENCY "
            "-> CUSTOMER")):
        load_mapping_file(d / "customer.yaml")


def test_depends_on_itself(tmp_path: Path) -> None:
    msg = _error(tmp_path, _sub("depends_on: [CURRENCY]", "depends_on: [CURRENCY, CUSTOMER]"))
    _assert(msg, tmp_path, 11, "depends_on[1]", "cannot depend on itself")


def test_duplicate_mapping_name(tmp_path: Path) -> None:
    d = _dir(tmp_path)
    (d / "customer2.yaml").write_text(CUSTOMER)
    with pytest.raises(MappingError) as err:
        load_mappings(d)
    assert str(err.value).startswith(f"{d / 'customer.yaml'}:1: name: mapping 'CUSTOMER' is "
                                     f"also defined in {d / 'customer2.yaml'}")


# -- contradictory flags --------------------------------------------------------------------

@pytest.mark.parametrize(("old", "new", "line", "path", "needle"), [
    # a constant with a transformation
    ("constant: 3, direction: to_dataverse}",
     "constant: 3, direction: to_dataverse, transform: [{type: trim}]}", 34,
     "fields[4].transform", "a constant cannot also have 'transform'"),
    # a constant written to the wrong side
    ("constant: 3, direction: to_dataverse}", "constant: 3, direction: to_business_central}", 34,
     "fields[4].direction", "needs direction 'to_dataverse'"),
    # lookup and value map together
    ("on_failure: clear}", "on_failure: clear}\n    value_map: PAYMENT_TERMS", 28,
     "fields[1].value_map", "either a lookup or uses a value map"),
    # navigation without a lookup
    ("{business_central: displayName, dataverse: name}",
     "{business_central: displayName, dataverse: name, navigation: name_account}", 24,
     "fields[0].navigation", "only used by a lookup field"),
    # a rule that can never run
    ("{business_central: creditLimit, dataverse: creditlimit, direction: to_dataverse}",
     "{business_central: creditLimit, dataverse: creditlimit, direction: to_dataverse, "
     "transform: [{type: round, precision: 1, direction: to_business_central}]}", 33,
     "fields[3].transform[0].direction", "would never run"),
])
def test_contradictory_field_flags(tmp_path: Path, old: str, new: str, line: int, path: str,
                                   needle: str) -> None:
    _assert(_error(tmp_path, _sub(old, new)), tmp_path, line, path, needle)


def test_field_direction_that_never_runs_in_a_one_way_mapping(tmp_path: Path) -> None:
    text = CURRENCY.replace("direction: to_dataverse}",
                            "direction: to_dataverse}\n  - {business_central: symbol, "
                            "dataverse: currencysymbol, direction: to_business_central}")
    d = _dir(tmp_path)
    (d / "currency.yaml").write_text(text)
    with pytest.raises(MappingError) as err:
        load_mappings(d)
    assert str(err.value).startswith(f"{d / 'currency.yaml'}:7: fields[1].direction: "
                                     "'to_business_central' never runs in a 'to_dataverse' "
                                     "mapping"), str(err.value)


def test_bidirectional_field_in_a_one_way_mapping_is_allowed(tmp_path: Path) -> None:
    d = _dir(tmp_path)
    (d / "currency.yaml").write_text(CURRENCY.replace(", direction: to_dataverse}", "}"))
    assert "CURRENCY" in load_mappings(d)


def test_no_field_for_a_direction(tmp_path: Path) -> None:
    text = CUSTOMER.split("fields:\n")[0] + "fields:\n" + \
        "  - {business_central: creditLimit, dataverse: creditlimit, direction: to_dataverse}\n"
    text = text.replace("    - {priority: 1, fields: [displayName]}\n", "").replace(
        "coupling:\n  match:\n", "")
    msg = _error(tmp_path, text)
    _assert(msg, tmp_path, 10, "direction", "no enabled field mapping for the "
            "to_business_central direction")


# -- duplicates -----------------------------------------------------------------------------

def test_duplicate_target_in_the_same_direction(tmp_path: Path) -> None:
    msg = _error(tmp_path, _sub("{business_central: creditLimit, dataverse: creditlimit,",
                                "{business_central: creditLimit, dataverse: name,"))
    _assert(msg, tmp_path, 33, "fields[3].dataverse", "'name' is already written by fields[0] "
            "in the to_dataverse pass")


def test_same_target_in_different_directions_is_allowed(tmp_path: Path) -> None:
    text = _sub("{business_central: creditLimit, dataverse: creditlimit, direction: to_dataverse}",
                "{business_central: creditLimit, dataverse: name, direction: to_business_central}")
    text = _sub("{business_central: displayName, dataverse: name}",
                "{business_central: displayName, dataverse: name, direction: to_dataverse}", text)
    assert "CUSTOMER" in load_mappings(_dir(tmp_path, text))


def test_duplicate_value_map_entry(tmp_path: Path) -> None:
    msg = _error(tmp_path, _sub("{business_central: NET60, dataverse: 4}",
                                "{business_central: net30, dataverse: 4}"))
    _assert(msg, tmp_path, 22, "value_maps.PAYMENT_TERMS.values[1].business_central",
            "'net30' is already mapped by values[0]")


# -- rule parameters ------------------------------------------------------------------------

@pytest.mark.parametrize(("rule", "path", "needle"), [
    ("{type: regex_replace, pattern: '([a-z'}", "transform[0].pattern",
     "not a valid regular expression"),
    ("{type: substring, start: 0, length: 3}", "transform[0].start", "greater than or equal to 1"),
    ("{type: decimal_format, culture: xx-XX}", "transform[0].culture", "allowed: invariant"),
    ("{type: date_format, format: yyyyMMdd}", "transform[0].format", "strftime"),
    ("{type: replace}", "transform[0].find", "Field required"),
    ("{start: 1}", "transform[0]", "needs 'type'"),
])
def test_rule_parameters_are_validated(tmp_path: Path, rule: str, path: str, needle: str) -> None:
    msg = _error(tmp_path, _sub("{business_central: displayName, dataverse: name}",
                                f"{{business_central: displayName, dataverse: name, "
                                f"transform: [{rule}]}}"))
    _assert(msg, tmp_path, 24, f"fields[0].{path}", needle)


def test_one_broken_neighbour_does_not_break_a_file(tmp_path: Path) -> None:
    d = _dir(tmp_path)
    (d / "currency.yaml").write_text(CURRENCY + "colour: red\n")
    assert load_mapping_file(d / "customer.yaml").mapping.name == "CUSTOMER"
    (d / "currency.yaml").write_text("name: [unclosed\n")
    assert load_mapping_file(d / "customer.yaml").mapping.name == "CUSTOMER"
