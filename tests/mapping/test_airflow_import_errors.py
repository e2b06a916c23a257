"""In Airflow, a broken mapping is an import error of its own DAG file; the others load."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DAGS = {"bcdv_sync_customer", "bcdv_sync_vendor", "bcdv_sync_contact", "bcdv_sync_currency",
        "bcdv_sync_salespeople"}


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copytree(ROOT / "dags", tmp_path / "dags",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "include" / "mappings", tmp_path / "include" / "mappings")
    monkeypatch.setenv("BCDV_MAPPINGS_DIR", str(tmp_path / "include" / "mappings"))
    return tmp_path


def _dagbag(project: Path):  # type: ignore[no-untyped-def]
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(project / "dags"))


def test_every_mapping_has_its_dag(project: Path) -> None:
    bag = _dagbag(project)
    assert bag.import_errors == {}
    assert set(bag.dags) >= DAGS
    assert bag.dags["bcdv_sync_currency"].task_ids == [
        "couple", "to_dataverse.extract", "to_dataverse.transform", "to_dataverse.load",
        "commit", "check_failed_records"]


def test_broken_mapping_is_an_import_error_of_its_dag_only(project: Path) -> None:
    path = project / "include" / "mappings" / "vendor.yaml"
    text = path.read_text()
    old = "  - {business_central: website, dataverse: websiteurl,\n"
    assert old in text
    path.write_text(text.replace(old, "  - {business_central: website, dataverse: websiteurl, "
                                      "direction: sideways,\n"))
    line = next(i for i, t in enumerate(path.read_text().splitlines(), 1) if "sideways" in t)
    bag = _dagbag(project)
    errors = {Path(k).name: v for k, v in bag.import_errors.items()}
    assert set(errors) == {"bcdv_sync_vendor.py"}
    message = errors["bcdv_sync_vendor.py"]
    assert f"{path}:{line}: fields[9].direction: invalid value 'sideways'" in message
    assert "'bidirectional'" in message
    # CONTACT depends on VENDOR, and still loads: its reference to VENDOR is still a known name.
    assert DAGS - {"bcdv_sync_vendor"} <= set(bag.dags)
    assert "bcdv_sync_vendor" not in bag.dags
