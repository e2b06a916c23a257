"""The retry set applies the mapping's source filter: a coupled record whose sync failed and
that was then changed so it no longer matches the filter is neither fetched nor retried on
the next runs, and its error is not counted again."""

from __future__ import annotations

from engine.conftest import make_mapping


def test_failed_record_moved_out_of_the_bc_table_filter_is_not_retried(env) -> None:
    mapping = make_mapping()
    bc_id, dv_id = env.coupled_pair(mapping, phoneNumber="start")
    env.sync(mapping)
    env.admin("dv", "PUT", "faults", {"rules": [
        {"entity": "accounts", "match": {"accountid": dv_id}, "status": 400,
         "code": "0x80040203", "message": "Invalid argument.", "methods": ["PATCH"]}]})
    env.bc_edit(bc_id, phoneNumber="1")
    assert env.sync(mapping)["to_dataverse"].failed == 1
    env.bc_edit(bc_id, blocked="All")  # outside "blocked eq ' '" now
    for _ in range(2):
        report = env.sync(mapping)["to_dataverse"]
        assert (report.extracted, report.failed, report.skipped) == (0, 0, 0), report.records
    assert env.dv_get(dv_id)["telephone1"] == "start"
    errors = [e for e in env.state.errors(mapping.name) if e["source_id"] == bc_id]
    assert [e["attempts"] for e in errors] == [1]


def test_failed_row_moved_out_of_the_dataverse_filter_is_not_retried(env) -> None:
    mapping = make_mapping()
    bc_id, dv_id = env.coupled_pair(mapping, city="Start")
    env.sync(mapping)
    env.admin("bc", "PUT", "faults", {"rules": [
        {"entity": "customers", "match": {"id": bc_id}, "status": 400,
         "code": "Application_DialogException", "message": "Nope.", "methods": ["PATCH"]}]})
    env.dv_edit(dv_id, address1_city="Changed")
    assert env.sync(mapping)["to_business_central"].failed == 1
    env.dv_edit(dv_id, customertypecode=11)  # outside "customertypecode eq 3" now
    for _ in range(2):
        report = env.sync(mapping)["to_business_central"]
        assert (report.extracted, report.failed, report.skipped) == (0, 0, 0), report.records
    assert env.bc_get(bc_id)["city"] == "Start"
    errors = [e for e in env.state.errors(mapping.name) if e["source_id"] == dv_id]
    assert [e["attempts"] for e in errors] == [1]
