"""A mapping filter is parsed by a real OData grammar at validation time and composed as an
expression; `bcdv mappings validate` rejects what the services or the DAG import would."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bcdv.cli import main
from bcdv.clients.odata import InvalidValue, and_filters
from bcdv.mapping.loader import DEFAULTS_DIR

ESCAPING = "statecode eq 0 and customertypecode eq 3) or (customertypecode eq 11"


@pytest.fixture
def mdir(tmp_path: Path) -> Path:
    d = tmp_path / "mappings"
    shutil.copytree(DEFAULTS_DIR, d)
    return d


def _replace(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def _validate(capsys: pytest.CaptureFixture[str], mdir: Path) -> tuple[int, str]:
    code = main(["--mappings", str(mdir), "mappings", "validate"])
    out = capsys.readouterr()
    return code, out.out + out.err


def test_a_filter_that_closes_its_own_parentheses_is_rejected_naming_file_line_and_field(
        capsys: pytest.CaptureFixture[str], mdir: Path) -> None:
    _replace(mdir / "customer.yaml", "statecode eq 0 and customertypecode eq 3", ESCAPING)
    code, text = _validate(capsys, mdir)
    assert code == 1
    assert f"{mdir / 'customer.yaml'}:35: dataverse.filter: not a valid OData $filter" in text


@pytest.mark.parametrize("bad", ["blocked eq", "blocked eq 'x", "blocked eq ' ' ; x",
                                 "blocked eq ' ' or"])
def test_an_unparsable_filter_is_rejected_by_mappings_validate(
        capsys: pytest.CaptureFixture[str], mdir: Path, bad: str) -> None:
    quoted = "'" + bad.replace("'", "''") + "'"  # a YAML single-quoted scalar
    _replace(mdir / "customer.yaml", "filter: \"blocked eq ' '\"", f"filter: {quoted}")
    code, text = _validate(capsys, mdir)
    assert code == 1 and "customer.yaml:29: business_central.filter:" in text, text


def test_composed_filters_cannot_escape_their_parentheses() -> None:
    wm = "modifiedon ge 2025-01-01T00:00:00Z"
    with pytest.raises(InvalidValue):
        and_filters(ESCAPING, wm)
    assert and_filters("a eq 1 or b eq 'x'' or 1 eq 1'", wm) == (
        "(a eq 1 or b eq 'x'' or 1 eq 1') and (modifiedon ge 2025-01-01T00:00:00Z)")


def test_a_cron_schedule_that_does_not_parse_is_rejected_by_mappings_validate(
        capsys: pytest.CaptureFixture[str], mdir: Path) -> None:
    for bad in ('"61 * * * *"', '"every half hour"', '"*/30 * * *"', '"@sometimes"'):
        _replace(mdir / "customer.yaml", 'schedule: "*/30 * * * *"', f"schedule: {bad}")
        code, text = _validate(capsys, mdir)
        assert code == 1 and "customer.yaml:38: schedule:" in text, (bad, text)
        _replace(mdir / "customer.yaml", f"schedule: {bad}", 'schedule: "*/30 * * * *"')
    for good in ('"@daily"', '"@once"', "null", '"0 6 * * 1-5"'):
        _replace(mdir / "customer.yaml", 'schedule: "*/30 * * * *"', f"schedule: {good}")
        assert _validate(capsys, mdir)[0] == 0, good
        _replace(mdir / "customer.yaml", f"schedule: {good}", 'schedule: "*/30 * * * *"')


def test_an_entity_set_or_column_that_is_not_an_odata_name_is_rejected(
        capsys: pytest.CaptureFixture[str], mdir: Path) -> None:
    _replace(mdir / "customer.yaml", "entity_set: customers", "entity_set: customers?$top=1")
    code, text = _validate(capsys, mdir)
    assert code == 1 and "customer.yaml:25: business_central.entity_set:" in text, text
