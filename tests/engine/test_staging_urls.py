"""Staging on an fsspec URL (``BCDV_STAGING_URL``): the engine's passes, their chunks and
their outcomes through universal_pathlib, the layer under Airflow's ObjectStoragePath.

``memory://`` is fsspec's in-process object store: it has no local file behind it, so it
takes the object-store code path (no fsync; meta.json written whole) that S3 or Azure Blob
take, within one process. ``file://`` is the shared-directory form the Celery test uses
across processes (tests/airflow/test_celery_scale_out.py).

universal_pathlib: https://github.com/fsspec/universal_pathlib (UPath over fsspec);
Airflow's ObjectStoragePath builds on it:
https://airflow.apache.org/docs/apache-airflow/stable/core-concepts/objectstorage.html
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest
from upath import UPath

from bcdv.engine import SyncContext, sync_mapping
from bcdv.engine.chunks import merge_chunks, split_plan
from bcdv.engine.staging import PassState, location, prune, read_jsonl, write_jsonl
from bcdv.mapping import load_mappings
from bcdv.settings import endpoints_from_dict, load_settings

ROOT = Path(__file__).resolve().parents[2]


def test_location_keeps_urls_and_paths() -> None:
    local = location("/srv/bcdv/staging")
    assert isinstance(local, Path) and str(local) == "/srv/bcdv/staging"
    url = location("file:///srv/bcdv/staging")
    assert isinstance(url, UPath) and str(url / "a") == "file:///srv/bcdv/staging/a"
    mem = location("memory://bucket/staging")
    assert str(mem / "customer" / "x") == "memory://bucket/staging/customer/x"
    assert location(mem) is mem


def test_settings_staging_url_wins_over_the_directory(tmp_path: Path) -> None:
    env = {"BCDV_HOME": str(tmp_path), "BCDV_STAGING_URL": "s3://bucket/bcdv"}
    assert load_settings(env).staging_root == "s3://bucket/bcdv"
    assert load_settings({"BCDV_HOME": str(tmp_path)}).staging_root == str(
        tmp_path / "staging")


def test_jsonl_appends_and_torn_lines_on_an_object_store() -> None:
    path = location(f"memory://bcdv-{secrets.token_hex(4)}/p/outcomes.jsonl")
    assert list(read_jsonl(path)) == []
    assert write_jsonl(path, [{"a": 1}]) == 1
    assert write_jsonl(str(path), [{"a": 2}, {"a": 3}], append=True) == 2
    assert [r["a"] for r in read_jsonl(str(path))] == [1, 2, 3]
    path.write_text(path.read_text() + '{"a": 4')  # a torn last line is ignored
    assert [r["a"] for r in read_jsonl(path)] == [1, 2, 3]


def test_a_file_url_is_the_local_directory(tmp_path: Path) -> None:
    url = (tmp_path / "staging").as_uri()
    state = PassState(mapping="CUSTOMER", direction="to_dataverse", mode="full",
                      dry_run=False, job_id="j", run_id="r", directory=f"{url}/customer/r/x")
    state.save()
    write_jsonl(state.outcomes_file, [{"source_id": "1"}])
    on_disk = tmp_path / "staging" / "customer" / "r" / "x"
    assert json.loads((on_disk / "meta.json").read_text())["directory"] == state.directory
    assert json.loads((on_disk / "outcomes.jsonl").read_text()) == {"source_id": "1"}
    assert PassState.load(state.directory) == state


@pytest.mark.parametrize("scheme", ["memory", "file"])
def test_a_full_sync_staged_on_a_url(tmp_path: Path, scheme: str) -> None:
    """A bidirectional full sync of CUSTOMER with staging on the URL: every record reaches
    the other side once; the pass directories, a split into chunks and the merge of their
    outcomes all live on the URL."""
    from bcdv_emulators.testing import run_emulators

    root = (f"memory://bcdv-{secrets.token_hex(4)}/staging" if scheme == "memory"
            else (tmp_path / "shared").as_uri())
    mappings = load_mappings(ROOT / "include" / "mappings")
    customer = mappings["CUSTOMER"]
    with run_emulators(tmp_path / "emulators", seed="synthetic:40") as endpoints:
        ctx = SyncContext.create(endpoints_from_dict(endpoints),
                                 f"sqlite:///{tmp_path / 'state.db'}", root, mappings)
        try:
            assert str(ctx.staging) == root
            reports = sync_mapping(ctx, customer, mode="full", run_id="url-run")
            assert {r.direction: r.failed for r in reports} == {
                "to_dataverse": 0, "to_business_central": 0}
            assert reports[0].inserted >= 40 and reports[1].inserted > 0
            bc = ctx.business_central.client
            dv = ctx.dataverse.client
            bc_names = [r["displayName"] for r in bc.list(
                "customers", filter=customer.business_central.filter,
                select=["displayName"])]
            dv_names = [r["name"] for r in dv.list(
                "accounts", filter=customer.dataverse.filter, select=["name"])]
            assert sorted(bc_names) == sorted(dv_names)
            assert len(set(bc_names)) == len(bc_names)
        finally:
            ctx.close()

    passes = location(root) / "customer" / "url-run"
    directory = str(passes / "to_dataverse")
    state = PassState.load(directory)
    assert state.directory == directory and state.plan_file.exists()
    planned = sum(1 for _ in read_jsonl(state.plan_file)) - 1  # the header line
    chunks = split_plan(directory, 16)
    assert len(chunks) == -(-planned // 16) and all(c.startswith(root) for c in chunks)
    for index, chunk in enumerate(chunks):
        write_jsonl(PassState.load(chunk).outcomes_file, [{"source_id": f"c{index}"}])
    merge_chunks(directory)
    assert [r["source_id"] for r in read_jsonl(state.outcomes_file)] == [
        f"c{i}" for i in range(len(chunks))]
    assert prune(root, older_than_days=-1) == 1  # the run directory, as for a local one
    assert not passes.exists()
