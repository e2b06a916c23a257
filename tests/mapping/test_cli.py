"""``bcdv mappings list|show|diff|reset|validate``, text and --json, with their exit codes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bcdv.cli import main
from bcdv.mapping.loader import DEFAULTS_DIR


@pytest.fixture
def mdir(tmp_path: Path) -> Path:
    d = tmp_path / "mappings"
    shutil.copytree(DEFAULTS_DIR, d)
    return d


def run(capsys: pytest.CaptureFixture[str], mdir: Path, *args: str) -> tuple[int, str, str]:
    code = main(["--mappings", str(mdir), *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_list(capsys, mdir: Path) -> None:
    code, out, _ = run(capsys, mdir, "mappings", "list")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "BUSINESS", "CENTRAL", "DIRECTION", "DATAVERSE", "ONLY",
                                "COUPLED", "SCHEDULE", "DEPENDS", "ON"]
    row = next(line for line in lines if line.startswith("CUSTOMER "))
    assert row.split()[:4] == ["CUSTOMER", "customers", "bidirectional", "accounts"]
    assert row.endswith("SALESPEOPLE, CURRENCY")
    assert "CUSTOMER dataverse filter: statecode eq 0 and customertypecode eq 3" in out
    # `bcdv mappings` alone lists too.
    assert run(capsys, mdir, "mappings")[1] == out


def test_list_json(capsys, mdir: Path) -> None:
    for argv in (["--json", "mappings", "list"], ["mappings", "list", "--json"]):
        code, out, _ = run(capsys, mdir, *argv)
        rows = {r["name"]: r for r in json.loads(out)}
        assert code == 0 and set(rows) == {"CUSTOMER", "VENDOR", "CONTACT", "CURRENCY",
                                           "SALESPEOPLE"}
        assert rows["SALESPEOPLE"]["direction"] == "to_business_central"
        assert rows["CONTACT"]["depends_on"] == ["CUSTOMER", "VENDOR"]
        assert rows["VENDOR"]["business_central_filter"] == "blocked eq ' '"


def test_show(capsys, mdir: Path) -> None:
    code, out, _ = run(capsys, mdir, "mappings", "show", "customer")
    assert code == 0
    assert "BUSINESS CENTRAL" in out and "LOOKUP / VALUE MAP" in out
    owner = next(line for line in out.splitlines() if line.startswith("salespersonCode"))
    assert owner.split()[:4] == ["salespersonCode", "ownerid", "to_dataverse", "enabled"]
    assert "lookup SALESPEOPLE on code (keep)" in owner
    terms = next(line for line in out.splitlines() if line.startswith("paymentTermsId"))
    assert "field_lookup(paymentTerms.id->code) [to_dataverse]" in terms
    assert "value map PAYMENT_TERMS" in terms
    assert "value map PAYMENT_TERMS (unmapped: keep): NET30=1, 2%10NET30=2" in out


def test_show_json_and_unknown_name(capsys, mdir: Path) -> None:
    code, out, _ = run(capsys, mdir, "--json", "mappings", "show", "CONTACT")
    doc = json.loads(out)
    assert code == 0 and doc["name"] == "CONTACT"
    assert {"business_central": "type", "dataverse": None, "direction": "to_business_central",
            "constant": "Person", "status": "enabled", "transformation": "",
            "lookup_or_value_map": ""} in doc["field_rows"]
    code, _, err = run(capsys, mdir, "mappings", "show", "ITEM")
    assert code == 2 and "unknown mapping 'ITEM'" in err


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_diff_identical_then_changed(capsys, mdir: Path) -> None:
    code, out, _ = run(capsys, mdir, "mappings", "diff")
    assert code == 0 and out.count("identical") == 5
    _edit(mdir / "customer.yaml", "  - {business_central: creditLimit, dataverse: creditlimit, "
          "direction: to_dataverse}", "  - {business_central: creditLimit, dataverse: creditlimit,"
          " direction: to_dataverse, enabled: false}")
    _edit(mdir / "customer.yaml", "  update: none", "  update: business_central_wins")
    code, out, _ = run(capsys, mdir, "mappings", "diff", "customer")
    assert code == 3
    assert out.splitlines() == [
        "CUSTOMER: changed",
        '  conflicts.update: "none" -> "business_central_wins"',
        "  fields[creditLimit -> creditlimit].enabled: true -> false"]
    code, out, _ = run(capsys, mdir, "--json", "mappings", "diff")
    by_name = {d["name"]: d for d in json.loads(out)}
    assert code == 3 and by_name["VENDOR"]["status"] == "identical"
    assert by_name["CUSTOMER"]["changes"][0] == {"path": "conflicts.update", "shipped": "none",
                                                  "local": "business_central_wins"}


def test_reset_one_and_all(capsys, mdir: Path) -> None:
    _edit(mdir / "vendor.yaml", "schedule: \"*/30 * * * *\"", "schedule: \"@hourly\"")
    (mdir / "contact.yaml").unlink()
    edited = (mdir / "vendor.yaml").read_bytes()
    code, out, _ = run(capsys, mdir, "mappings", "reset", "vendor")
    assert code == 0
    first, second = out.splitlines()
    assert first.startswith(f"VENDOR: reset {mdir / 'vendor.yaml'} (your file is kept as ")
    # The same reset as the pages: the user's file is kept under backups/ first.
    [backup] = (mdir / "backups").glob("vendor.*.yaml")
    assert str(backup) in first and backup.read_bytes() == edited
    assert second == '  schedule: "@hourly" -> "*/30 * * * *"'
    assert (mdir / "vendor.yaml").read_bytes() == (DEFAULTS_DIR / "vendor.yaml").read_bytes()
    code, out, _ = run(capsys, mdir, "--json", "mappings", "reset", "--all")
    report = {r["name"]: r for r in json.loads(out)}
    assert code == 0 and report["CONTACT"]["was"] == "missing locally"
    assert report["VENDOR"]["was"] == "identical"
    assert run(capsys, mdir, "mappings", "diff")[0] == 0


def test_reset_repairs_an_invalid_file(capsys, mdir: Path) -> None:
    (mdir / "currency.yaml").write_text("name: CURRENCY\ncolour: red\n")
    code, out, _ = run(capsys, mdir, "mappings", "diff", "currency")
    assert code == 3 and out.startswith("CURRENCY: invalid\n")
    assert f"{mdir / 'currency.yaml'}:1: business_central: Field required" in out
    code, out, _ = run(capsys, mdir, "mappings", "reset", "CURRENCY")
    assert code == 0 and out.startswith("CURRENCY: reset")
    assert run(capsys, mdir, "mappings", "validate")[0] == 0


def test_reset_usage(capsys, mdir: Path) -> None:
    assert run(capsys, mdir, "mappings", "reset")[0] == 2
    code, _, err = run(capsys, mdir, "mappings", "reset", "ITEM")
    assert code == 2 and "not a shipped mapping" in err


def test_validate(capsys, mdir: Path) -> None:
    code, out, _ = run(capsys, mdir, "mappings", "validate")
    assert code == 0 and out.strip() == f"5 mapping(s) valid in {mdir}"
    code, out, _ = run(capsys, mdir, "--json", "mappings", "validate")
    assert code == 0 and json.loads(out)["valid"] is True
    _edit(mdir / "contact.yaml", "depends_on: [CUSTOMER, VENDOR]",
          "depends_on: [CUSTOMER, VENDORS]")
    code, _, err = run(capsys, mdir, "mappings", "validate")
    assert code == 1
    assert err.startswith(f"error: {mdir / 'contact.yaml'}:")
    assert ": depends_on[1]: unknown mapping 'VENDORS'" in err
