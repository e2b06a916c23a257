"""Behaviours of section 6 about conflicts, deletions and skipped records."""

from __future__ import annotations

from bcdv.engine.records import sync_record
from bcdv.mapping.model import Direction
from bcdv.service import records as service

from .conftest import make_mapping

TO_BC_ONLY = {"business_central": "website", "dataverse": "websiteurl",
              "direction": "to_business_central"}


def _both_changed(env, mapping, bc_value="bc", dv_value="dv", field=("phoneNumber", "telephone1")):
    bc_id, dv_id = env.coupled_pair(mapping, **{field[0]: "start"})
    env.sync(mapping)
    env.bc_edit(bc_id, **{field[0]: bc_value})
    env.dv_edit(dv_id, **{field[1]: dv_value})
    return bc_id, dv_id


def test_b12_both_changed_only_unmapped_fields_is_unchanged(env) -> None:
    mapping = make_mapping()
    bc_id, dv_id = env.coupled_pair(mapping)
    env.sync(mapping)
    etag = env.dv_get(dv_id)["@odata.etag"]
    env.bc_edit(bc_id, addressLine1="unmapped in BC")
    env.dv_edit(dv_id, description="unmapped in Dataverse")
    reports = env.sync(mapping)
    assert all(r.modified == 0 and r.failed == 0 and r.conflicts == 0 for r in reports.values())
    assert env.dv_get(dv_id)["description"] == "unmapped in Dataverse"
    assert env.dv_get(dv_id)["@odata.etag"] != etag  # only the person's edit, nothing of ours


def test_b13_one_way_field_in_pass_direction_is_no_conflict(env) -> None:
    mapping = make_mapping()
    bc_id, dv_id = env.coupled_pair(mapping, creditLimit=100)
    env.sync(mapping)
    env.bc_edit(bc_id, creditLimit=200)  # mapped to_dataverse only
    env.dv_edit(dv_id, description="unmapped")
    report = env.sync(mapping)["to_dataverse"]
    assert (report.modified, report.failed, report.conflicts) == (1, 0, 0)
    assert env.dv_get(dv_id)["creditlimit"] == 200


def test_b14_bidirectional_field_changed_on_both_sides_fails_without_resolution(env) -> None:
    mapping = make_mapping()
    bc_id, dv_id = _both_changed(env, mapping)
    reports = env.sync(mapping)
    to_dv = reports["to_dataverse"]
    assert (to_dv.failed, to_dv.modified, to_dv.conflicts) == (1, 0, 1)
    assert "both sides changed" in to_dv.records[0].message
    assert env.dv_get(dv_id)["telephone1"] == "dv"
    assert env.bc_get(bc_id)["phoneNumber"] == "bc"
    errors = env.state.errors("CUSTOMER")
    assert errors and errors[0]["bc_id"] == bc_id


def test_b14_different_fields_changed_is_still_a_conflict_in_bc_mode(env) -> None:
    mapping = make_mapping()
    bc_id, dv_id = env.coupled_pair(mapping, phoneNumber="start", city="Start")
    env.sync(mapping)
    env.bc_edit(bc_id, phoneNumber="bc phone")
    env.dv_edit(dv_id, address1_city="DV City")
    assert env.sync(mapping)["to_dataverse"].failed == 1


def test_b15_business_central_wins(env) -> None:
    mapping = make_mapping(conflicts={"update": "business_central_wins"})
    bc_id, dv_id = _both_changed(env, mapping)
    reports = env.sync(mapping)
    assert (reports["to_dataverse"].modified, reports["to_dataverse"].failed) == (1, 0)
    assert env.dv_get(dv_id)["telephone1"] == "bc"
    assert env.bc_get(bc_id)["phoneNumber"] == "bc"


def test_b16_dataverse_wins(env) -> None:
    mapping = make_mapping(conflicts={"update": "dataverse_wins"})
    bc_id, dv_id = _both_changed(env, mapping)
    reports = env.sync(mapping)
    assert reports["to_dataverse"].skipped == 1
    assert reports["to_business_central"].modified == 1
    assert env.bc_get(bc_id)["phoneNumber"] == "dv"
    assert env.dv_get(dv_id)["telephone1"] == "dv"


def test_b17_deleted_counterpart_fails_then_skips_and_keeps_the_coupling(env) -> None:
    mapping = make_mapping()
    bc_id, dv_id = env.coupled_pair(mapping)
    env.sync(mapping)
    env.dv.delete("accounts", dv_id)
    env.bc_edit(bc_id, city="Changed")
    first = env.sync(mapping)["to_dataverse"]
    assert first.failed == 1 and "coupled to a deleted record" in first.records[0].message
    second = env.sync(mapping)["to_dataverse"]
    assert (second.failed, second.skipped) == (0, 1)
    coupling = env.coupling(mapping, bc_id=bc_id)
    assert coupling is not None and bool(coupling["skipped"])


def test_b18_remove_coupling_resolution(env) -> None:
    mapping = make_mapping(conflicts={"deletion": "remove_coupling"})
    bc_id, dv_id = env.coupled_pair(mapping)
    env.sync(mapping)
    env.dv.delete("accounts", dv_id)
    env.bc_edit(bc_id, city="Changed")
    report = env.sync(mapping)["to_dataverse"]
    assert (report.failed, report.skipped, report.inserted) == (0, 0, 0)
    assert env.coupling(mapping, bc_id=bc_id) is None


def test_b19_restore_records_resolution(env) -> None:
    mapping = make_mapping(conflicts={"deletion": "restore_records"})
    bc_id, dv_id = env.coupled_pair(mapping)
    env.sync(mapping)
    env.bc.delete("customers", bc_id)
    env.dv_edit(dv_id, address1_city="Still here")
    report = env.sync(mapping)["to_business_central"]
    assert (report.inserted, report.failed) == (1, 0)
    new_bc = env.coupling(mapping, dv_id=dv_id)["bc_id"]
    assert new_bc != bc_id
    assert env.bc_get(new_bc)["city"] == "Still here"
    assert env.dv_get(dv_id) is not None


def test_b20_deleting_a_coupled_record_keeps_the_coupling_unskipped(env) -> None:
    mapping = make_mapping()
    bc_id, _ = env.coupled_pair(mapping)
    env.bc.delete("customers", bc_id)
    env.sync(mapping)
    coupling = env.coupling(mapping, bc_id=bc_id)
    assert coupling is not None and not bool(coupling["skipped"])


def _failing_account(env, mapping):
    bc_id, dv_id = env.coupled_pair(mapping, phoneNumber="start")
    env.sync(mapping)
    env.admin("dv", "PUT", "faults", {"rules": [
        {"entity": "accounts", "match": {"accountid": dv_id}, "status": 400,
         "code": "0x80040203", "message": "Invalid argument: first rule.", "methods": ["PATCH"]}]})
    return bc_id, dv_id


def test_b45_first_failure_no_skip_different_second_no_skip_same_twice_skips(env) -> None:
    mapping = make_mapping()
    bc_id, dv_id = _failing_account(env, mapping)
    env.bc_edit(bc_id, phoneNumber="1")
    assert env.sync(mapping)["to_dataverse"].failed == 1
    assert not bool(env.coupling(mapping, bc_id=bc_id)["skipped"])
    env.admin("dv", "PUT", "faults", {"rules": [
        {"entity": "accounts", "match": {"accountid": dv_id}, "status": 400,
         "code": "0x80040203", "message": "Invalid argument: second rule.", "methods": ["PATCH"]}]})
    assert env.sync(mapping)["to_dataverse"].failed == 1  # different message: still not skipped
    assert not bool(env.coupling(mapping, bc_id=bc_id)["skipped"])
    report = env.sync(mapping)["to_dataverse"]  # same message twice
    assert (report.failed, report.skipped) == (0, 1)
    assert bool(env.coupling(mapping, bc_id=bc_id)["skipped"])


def test_b46_skipped_is_ignored_but_once_failed_unchanged_is_retried(env) -> None:
    mapping = make_mapping()
    bc_id, dv_id = _failing_account(env, mapping)
    env.bc_edit(bc_id, phoneNumber="1")
    assert env.sync(mapping)["to_dataverse"].failed == 1
    env.admin("dv", "DELETE", "faults")
    retried = env.sync(mapping)["to_dataverse"]  # BC record unchanged, retried anyway
    assert (retried.modified, retried.failed) == (1, 0)
    assert env.dv_get(dv_id)["telephone1"] == "1"


def test_b47_skipped_in_one_direction_not_reset_by_the_other(env) -> None:
    mapping = make_mapping()
    bc_id, dv_id = _failing_account(env, mapping)
    env.bc_edit(bc_id, phoneNumber="1")
    env.sync(mapping)
    env.sync(mapping)
    assert bool(env.coupling(mapping, bc_id=bc_id)["skipped"])
    env.admin("dv", "DELETE", "faults")
    env.admin("bc", "PUT", "faults", {"rules": [
        {"entity": "customers", "match": {"id": bc_id}, "status": 400,
         "code": "Application_DialogException", "message": "Nope.", "methods": ["PATCH"]}]})
    env.dv_edit(dv_id, address1_city="edit")
    env.sync(mapping)
    coupling = env.coupling(mapping, bc_id=bc_id)
    assert bool(coupling["skipped"]) and coupling["to_dv_result"] == "failure"


def test_b48_restore_clears_skipped_and_a_good_sync_keeps_it_clear(env) -> None:
    mapping = make_mapping()
    bc_id, dv_id = _failing_account(env, mapping)
    env.bc_edit(bc_id, phoneNumber="1")
    env.sync(mapping)
    env.sync(mapping)
    assert bool(env.coupling(mapping, bc_id=bc_id)["skipped"])
    env.admin("dv", "DELETE", "faults")
    assert service.restore(env.state, mapping, bc_id, side="business_central").changed == 1
    report = env.sync(mapping)["to_dataverse"]
    assert (report.modified, report.failed) == (1, 0)
    assert not bool(env.coupling(mapping, bc_id=bc_id)["skipped"])
    assert env.dv_get(dv_id)["telephone1"] == "1"


def test_b49_synchronize_on_a_skipped_record_forces_it(env) -> None:
    mapping = make_mapping()
    bc_id, _dv_id = _failing_account(env, mapping)
    env.bc_edit(bc_id, phoneNumber="1")
    env.sync(mapping)
    env.sync(mapping)
    env.admin("dv", "DELETE", "faults")
    report = sync_record(env.ctx, mapping, system="business_central", record_id=bc_id)
    assert (report.modified, report.failed) == (1, 0)
    assert not bool(env.coupling(mapping, bc_id=bc_id)["skipped"])


def test_b61_uncouple_removes_the_coupling(env) -> None:
    mapping = make_mapping()
    bc_id, dv_id = env.coupled_pair(mapping)
    assert service.uncouple(env.state, mapping, dv_id, side="dataverse").changed == 1
    assert env.coupling(mapping, bc_id=bc_id) is None
    assert env.sync(mapping)["to_dataverse"].modified == 0


def test_b09_sync_record_in_a_chosen_direction(env) -> None:
    mapping = make_mapping()
    bc_id, _dv_id = _both_changed(env, mapping)
    report = sync_record(env.ctx, mapping, system="business_central", record_id=bc_id,
                         direction=Direction.TO_BUSINESS_CENTRAL)
    assert (report.modified, report.failed) == (1, 0)
    assert env.bc_get(bc_id)["phoneNumber"] == "dv"


def test_b18_dry_run_shows_the_coupling_removal(env) -> None:
    mapping = make_mapping(conflicts={"deletion": "remove_coupling"})
    bc_id, dv_id = env.coupled_pair(mapping)
    env.sync(mapping)
    env.dv.delete("accounts", dv_id)
    env.bc_edit(bc_id, city="Changed")
    report = env.sync(mapping, dry_run=True)["to_dataverse"]
    assert [r.action for r in report.records] == ["uncouple"]
    assert env.coupling(mapping, bc_id=bc_id) is not None  # a dry run removes nothing
