"""The Airflow layer opens staging URLs as Airflow ObjectStoragePath objects (the object
storage abstraction: https://airflow.apache.org/docs/apache-airflow/stable/core-concepts/objectstorage.html),
and a pass, its chunks and their merged outcomes go through them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from bcdv.engine import staging
from bcdv.engine.chunks import merge_chunks, split_plan


@pytest.fixture
def object_storage() -> Iterator[None]:
    from bcdv.airflow import object_storage

    object_storage.install()
    try:
        yield
    finally:
        staging.set_opener(None)


def test_staging_urls_open_as_object_storage_paths(object_storage, tmp_path: Path) -> None:
    from airflow.sdk import ObjectStoragePath

    from bcdv.engine.actions import plan_header, write_plan

    url = (tmp_path / "shared").as_uri() + "/customer/run/to_dataverse"
    path = staging.location(url)
    assert isinstance(path, ObjectStoragePath) and str(path) == url
    assert isinstance(staging.location(str(tmp_path)), Path)  # local directories stay Paths
    state = staging.PassState(mapping="CUSTOMER", direction="to_dataverse", mode="full",
                              dry_run=False, job_id="j", run_id="run", directory=url)
    state.save()
    write_plan(state.plan_file, plan_header("CUSTOMER", "to_dataverse"))
    assert isinstance(state.plan_file, ObjectStoragePath)
    assert staging.PassState.load(url) == state
    assert split_plan(url, 5) == [url]  # an empty plan is one chunk: the pass itself
    staging.write_jsonl(state.outcomes_file, [{"source_id": "a"}])
    staging.write_jsonl(state.outcomes_file, [{"source_id": "b"}], append=True)
    merge_chunks(url)  # no chunks: the outcomes stay as written
    assert [r["source_id"] for r in staging.read_jsonl(url + "/outcomes.jsonl")] == ["a", "b"]
    on_disk = tmp_path / "shared" / "customer" / "run" / "to_dataverse" / "outcomes.jsonl"
    assert [json.loads(line) for line in on_disk.read_text().splitlines()] == [
        {"source_id": "a"}, {"source_id": "b"}]


def test_a_scheme_airflow_has_no_filesystem_for_opens_as_a_plain_upath(object_storage) -> None:
    """With the Airflow opener installed (as any DAG task does), ``memory://`` still works:
    Airflow registers no filesystem for it ("No filesystem registered for scheme memory"
    before), so it opens as fsspec's own, as without Airflow."""
    from airflow.sdk import ObjectStoragePath

    path = staging.location("memory://bcdv-test/opener/pass")
    assert not isinstance(path, ObjectStoragePath)
    staging.write_jsonl(path / "outcomes.jsonl", [{"source_id": "a"}])
    assert list(staging.read_jsonl(path / "outcomes.jsonl")) == [{"source_id": "a"}]
    assert isinstance(staging.location("file:///tmp/bcdv-opener"), ObjectStoragePath)
