"""Mapping files load into typed models; problems name file, line and field path."""

from __future__ import annotations

from pathlib import Path

import pytest

from bcdv.errors import MappingError
from bcdv.mapping import Direction, load_mapping_file

GOOD = """\
name: CUSTOMER
business_central: {entity_set: customers, key: id, modified_on: lastModifiedDateTime}
dataverse: {entity_set: accounts, key: accountid, modified_on: modifiedon}
direction: bidirectional
fields:
  - {business_central: displayName, dataverse: name}
  - {business_central: creditLimit, dataverse: creditlimit, direction: to_dataverse}
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "m.yaml"
    path.write_text(text)
    return path


def test_good_mapping(tmp_path: Path) -> None:
    m = load_mapping_file(_write(tmp_path, GOOD)).mapping
    assert m.dag_id == "bcdv_sync_customer"
    assert [f.target(Direction.TO_DATAVERSE) for f in m.fields_for(Direction.TO_DATAVERSE)] == \
        ["name", "creditlimit"]
    assert [f.target(Direction.TO_BUSINESS_CENTRAL)
            for f in m.fields_for(Direction.TO_BUSINESS_CENTRAL)] == ["displayName"]


def test_unknown_key_names_file_line_and_path(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD.replace("dataverse: creditlimit,",
                                         "dataverse: creditlimit, colour: red,"))
    with pytest.raises(MappingError) as err:
        load_mapping_file(path)
    assert str(err.value).startswith(f"{path}:7: fields[1].colour: unknown key")


def test_bad_enum_lists_allowed_values(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD.replace("direction: bidirectional", "direction: sideways"))
    with pytest.raises(MappingError) as err:
        load_mapping_file(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}:4: direction: invalid value 'sideways'")
    assert "'bidirectional'" in msg and "'to_dataverse'" in msg


def test_yaml_syntax_error_has_line(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD + "  - {business_central: x\n")
    with pytest.raises(MappingError, match=r"m\.yaml:\d+: not valid YAML"):
        load_mapping_file(path)
