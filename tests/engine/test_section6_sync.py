"""Behaviours of section 6 (Microsoft's AL tests) about selecting and syncing records.

Each test is named after the behaviour's number in bc-integration-engine.md section 6.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from bcdv.errors import MappingError
from bcdv.mapping.loader import load_mapping_file
from bcdv.mapping.model import Direction

from .conftest import make_mapping


def test_b01_no_field_mapping_for_a_direction_fails_hard(tmp_path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(
        "name: CUSTOMER\n"
        "business_central: {entity_set: customers, key: id, modified_on: lastModifiedDateTime}\n"
        "dataverse: {entity_set: accounts, key: accountid, modified_on: modifiedon}\n"
        "direction: bidirectional\n"
        "fields:\n"
        "  - {business_central: displayName, dataverse: name, direction: to_dataverse}\n")
    with pytest.raises(MappingError, match="no enabled field mapping for the "
                                           "to_business_central direction"):
        load_mapping_file(path)


def test_b02_zero_rows_still_log_one_job_per_direction(env) -> None:
    mapping = make_mapping()
    reports = env.sync(mapping)
    assert list(reports) == ["to_dataverse", "to_business_central"]
    jobs = sorted(env.state.jobs("CUSTOMER"), key=lambda j: j["started_at"])
    assert [j["direction"] for j in jobs] == ["to_dataverse", "to_business_central"]
    assert all(j["inserted"] == j["modified"] == j["failed"] == 0 for j in jobs)


def test_b03_new_dataverse_row_inserted_exactly_once(env) -> None:
    mapping = make_mapping(sync_only_coupled=False)
    dv_id = env.dv_new("Fabrikam", telephone1="555-0101")
    first = env.sync(mapping)["to_business_central"]
    assert first.inserted == 1
    bc_id = env.coupling(mapping, dv_id=dv_id)["bc_id"]
    assert env.bc_get(bc_id)["displayName"] == "Fabrikam"
    for _ in range(2):
        again = env.sync(mapping)
        assert all(r.inserted == 0 and r.modified == 0 for r in again.values())


def test_b04_modified_dataverse_row_updates_customer_unchanged_is_counted(env) -> None:
    mapping = make_mapping()
    bc_id, dv_id = env.coupled_pair(mapping)
    other_bc, _ = env.coupled_pair(mapping, name="Other Ltd")
    env.sync(mapping, mode="full")
    env.dv_edit(dv_id, telephone1="555-0199")
    report = env.sync(mapping)["to_business_central"]
    assert report.modified == 1
    assert env.bc_get(bc_id)["phoneNumber"] == "555-0199"
    assert env.bc_get(other_bc)["phoneNumber"] == ""
    follow = env.sync(mapping, mode="full")["to_business_central"]
    assert follow.modified == 0 and follow.unchanged == 2


def test_b05_uncoupled_source_matched_instead_of_duplicated(env) -> None:
    mapping = make_mapping(coupling={"match": [{"fields": ["displayName", "phoneNumber"]}]})
    customer = env.bc_new("Litware", phoneNumber="555-0142")
    account = env.dv_new("LITWARE", telephone1="555-0142")
    reports = env.sync(mapping, mode="full")
    assert reports["to_dataverse"].inserted == 0
    assert env.coupling(mapping, bc_id=customer["id"])["dv_id"] == account
    assert len(env.dv.list("accounts", filter="name eq 'Litware'")) == 1


def test_b06_pass_against_the_mapping_direction_is_refused(env) -> None:
    mapping = make_mapping(direction="to_dataverse", fields=[
        {"business_central": "displayName", "dataverse": "name", "direction": "to_dataverse"}])
    report = env.run(mapping, "to_business_central")
    assert report.note and "not configured for to_business_central synchronization" in report.note
    job = env.state.job(report.job_id)
    assert job["status"] == "not_configured" and "not configured" in job["message"]


def test_b08_one_way_mapping_overwrites_destination_edits(env) -> None:
    mapping = make_mapping(direction="to_dataverse", fields=[
        {"business_central": "displayName", "dataverse": "name", "direction": "to_dataverse"},
        {"business_central": "phoneNumber", "dataverse": "telephone1",
         "direction": "to_dataverse"}])
    bc_id, dv_id = env.coupled_pair(mapping, phoneNumber="1")
    env.dv_edit(dv_id, telephone1="from dataverse")
    env.bc_edit(bc_id, phoneNumber="from bc")
    report = env.sync(mapping)["to_dataverse"]
    assert (report.modified, report.failed, report.conflicts) == (1, 0, 0)
    assert env.dv_get(dv_id)["telephone1"] == "from bc"


def test_b09_changed_record_modifies_and_forced_sync_overrides_both_changed(env) -> None:
    mapping = make_mapping()
    bc_id, dv_id = env.coupled_pair(mapping, phoneNumber="1")
    env.bc_edit(bc_id, phoneNumber="2")
    assert env.sync(mapping)["to_dataverse"].modified == 1
    assert env.dv_get(dv_id)["telephone1"] == "2"
    env.bc_edit(bc_id, phoneNumber="bc")
    env.dv_edit(dv_id, telephone1="dv")
    forced = env.run(mapping, "to_dataverse", mode="record", record_ids=[bc_id])
    assert (forced.modified, forced.failed) == (1, 0)
    assert env.dv_get(dv_id)["telephone1"] == "bc"


def test_b11_synchronize_all_clears_watermarks_then_sets_them_to_latest(env) -> None:
    from bcdv.clients.odata import parse_datetime
    from bcdv.service.records import synchronize_all_records

    mapping = make_mapping()
    _bc_id, dv_id = env.coupled_pair(mapping)
    env.sync(mapping)
    env.dv_edit(dv_id, address1_city="Edited in Dynamics")
    env.state.advance_watermark("CUSTOMER", "to_dataverse",
                                parse_datetime("2100-01-01T00:00:00Z"))
    env.state.advance_watermark("CUSTOMER", "to_business_central",
                                parse_datetime("2100-01-01T00:00:00Z"))
    synchronize_all_records(env.ctx, mapping)
    bc_latest = max(parse_datetime(c["lastModifiedDateTime"]) for c in env.bc.list("customers"))
    dv_latest = max(parse_datetime(a["modifiedon"]) for a in env.dv.list("accounts"))
    # Both end at the latest modified-on seen, capped at the pass's signpost (the service's
    # clock before the first read, a little behind): never later than a record not yet read.
    for direction, latest in (("to_dataverse", bc_latest), ("to_business_central", dv_latest)):
        mark = env.state.get_watermark("CUSTOMER", direction)
        assert latest - timedelta(seconds=4) <= mark <= latest, (direction, mark, latest)


def test_b21_new_destination_gets_every_mapped_field(env) -> None:
    mapping = make_mapping(sync_only_coupled=False)
    customer = env.bc_new("Wingtip", phoneNumber="555-0110", city="Redmond", state="WA",
                          country="US", creditLimit=1234.5)
    env.sync(mapping)
    account = env.dv_get(env.coupling(mapping, bc_id=customer["id"])["dv_id"])
    assert (account["name"], account["telephone1"], account["address1_city"],
            account["address1_stateorprovince"], account["address1_country"],
            account["creditlimit"]) == ("Wingtip", "555-0110", "Redmond", "WA", "US", 1234.5)


def test_b26_disabled_field_mappings_are_not_transferred(env) -> None:
    fields = [dict(f) for f in make_mapping().model_dump(mode="json")["fields"]]
    for f in fields:
        if f["business_central"] == "phoneNumber":
            f["enabled"] = False
    mapping = make_mapping(sync_only_coupled=False, fields=fields)
    customer = env.bc_new("Proseware", phoneNumber="555-0123", city="Oslo")
    env.sync(mapping)
    account = env.dv_get(env.coupling(mapping, bc_id=customer["id"])["dv_id"])
    assert account["address1_city"] == "Oslo" and account["telephone1"] is None


def test_b28_county_and_country_map_both_ways(env) -> None:
    mapping = make_mapping(sync_only_coupled=False)
    customer = env.bc_new("Contoso East", state="NY", country="US")
    dv_id = env.dv_new("Contoso West", address1_stateorprovince="CA", address1_country="US")
    env.sync(mapping)
    account = env.dv_get(env.coupling(mapping, bc_id=customer["id"])["dv_id"])
    assert (account["address1_stateorprovince"], account["address1_country"]) == ("NY", "US")
    created = env.bc_get(env.coupling(mapping, dv_id=dv_id)["bc_id"])
    assert (created["state"], created["country"]) == ("CA", "US")


def test_b30_watermark_includes_rows_modified_in_the_same_second(env) -> None:
    mapping = make_mapping()
    bc_id, dv_id = env.coupled_pair(mapping)
    env.sync(mapping)
    # Edited right after the sync: same whole second as the stored baseline is possible.
    env.dv_edit(dv_id, address1_city="Same Second")
    report = env.sync(mapping)["to_business_central"]
    assert report.modified == 1
    assert env.bc_get(bc_id)["city"] == "Same Second"


def test_b31_synchronize_modified_runs_mappings_in_dependency_order(mappings) -> None:
    from bcdv.engine.records import dependency_waves

    waves = dependency_waves(mappings)
    position = {name: i for i, wave in enumerate(waves) for name in wave}
    for name, mapping in mappings.items():
        for dep in mapping.depends_on:
            if dep in position:
                assert position[dep] < position[name], (dep, name)


def test_b34_record_is_newer_until_stamped(env) -> None:
    mapping = make_mapping()
    bc_id, _ = env.coupled_pair(mapping)
    assert env.sync(mapping)["to_dataverse"].modified == 0
    env.bc_edit(bc_id, city="Later")
    assert env.sync(mapping)["to_dataverse"].modified == 1
    assert env.sync(mapping)["to_dataverse"].modified == 0


def test_b36_filters_restrict_which_records_are_created(env) -> None:
    mapping = make_mapping(sync_only_coupled=False)
    ok = env.bc_new("Open Customer")
    blocked = env.bc_new("Blocked Customer", blocked="All")
    prospect = env.dv_new("Prospect Only", customertypecode=8)
    env.sync(mapping)
    assert env.coupling(mapping, bc_id=ok["id"]) is not None
    assert env.coupling(mapping, bc_id=blocked["id"]) is None
    assert env.coupling(mapping, dv_id=prospect) is None


def test_b36_invalid_filter_is_an_error(env) -> None:
    from bcdv.errors import FatalApiError

    mapping = make_mapping(business_central={"filter": "noSuchField eq 1"})
    with pytest.raises(FatalApiError, match="Could not find a property named 'noSuchField'"):
        env.run(mapping, "to_dataverse")


def test_b37_from_pass_ignores_changes_by_the_integration_user(env) -> None:
    mapping = make_mapping()
    bc_id, dv_id = env.coupled_pair(mapping)
    env.sync(mapping)
    # Our own application user edits the row (as another integration on the same app would).
    env.dv_edit_as_integration_user(dv_id, address1_city="Changed by integration user")
    report = env.sync(mapping)["to_business_central"]
    assert report.extracted == 0 and report.modified == 0
    assert env.bc_get(bc_id)["city"] == ""


def test_b38_only_coupled_by_default(env) -> None:
    mapping = make_mapping()
    _bc_id, dv_id = env.coupled_pair(mapping)
    env.sync(mapping, mode="full")
    lone = env.dv_new("Uncoupled Account")
    env.tick()
    env.dv_edit(dv_id, telephone1="555-0000")
    report = env.sync(mapping)["to_business_central"]
    assert report.inserted == 0
    assert env.coupling(mapping, dv_id=lone) is None


def test_b39_watermarks_follow_latest_and_stay_when_nothing_is_selected(env) -> None:
    from bcdv.clients.odata import parse_datetime

    mapping = make_mapping()
    bc_id, _dv_id = env.coupled_pair(mapping)
    env.sync(mapping)
    env.bc_edit(bc_id, addressLine1="unmapped change")
    env.sync(mapping)
    latest = parse_datetime(env.bc_get(bc_id)["lastModifiedDateTime"])
    mark = env.state.get_watermark("CUSTOMER", "to_dataverse")
    assert latest - timedelta(seconds=4) <= mark <= latest  # advanced for an unmapped change
    time.sleep(3.1)  # past the signpost slack (the service's Date minus 2 s)
    env.sync(mapping)  # re-reads the records at the watermark once the signpost passed them
    settled = env.state.get_watermark("CUSTOMER", "to_dataverse")
    assert settled == latest
    env.tick()
    report = env.sync(mapping)["to_dataverse"]
    assert report.modified == 0
    assert env.state.get_watermark("CUSTOMER", "to_dataverse") == settled


def test_b40_bidirectional_run_logs_two_jobs_and_creates_on_both_sides(env) -> None:
    mapping = make_mapping(sync_only_coupled=False)
    customer = env.bc_new("From BC")
    account = env.dv_new("From Dataverse")
    reports = env.sync(mapping)
    assert reports["to_dataverse"].inserted == 1
    assert reports["to_business_central"].inserted == 1
    assert env.coupling(mapping, bc_id=customer["id"]) is not None
    assert env.coupling(mapping, dv_id=account) is not None
    assert len({j["id"] for j in env.state.jobs("CUSTOMER")}) == 2


def test_b41_uncoupled_account_inserted_coupled_account_modified(env) -> None:
    mapping = make_mapping(sync_only_coupled=False)
    account = env.dv_new("Coho Vineyard")
    assert env.sync(mapping)["to_business_central"].inserted == 1
    env.dv_edit(account, telephone1="555-0175")
    assert env.sync(mapping)["to_business_central"].modified == 1


def test_b44_unmapped_change_is_unchanged_but_restamps_the_coupling(env) -> None:
    from bcdv.clients.odata import parse_datetime

    mapping = make_mapping()
    bc_id, _ = env.coupled_pair(mapping)
    edited = env.bc_edit(bc_id, addressLine1="not mapped")
    report = env.sync(mapping)["to_dataverse"]
    assert (report.modified, report.unchanged) == (0, 1)
    stamped = env.coupling(mapping, bc_id=bc_id)["bc_modified"]
    assert stamped.replace(tzinfo=None) == parse_datetime(
        edited["lastModifiedDateTime"]).replace(tzinfo=None)


def test_b52_full_sync_processes_uncoupled_records_within_the_filters(env) -> None:
    mapping = make_mapping()
    customer = env.bc_new("Full Sync Co")
    blocked = env.bc_new("Blocked Full", blocked="Invoice")
    reports = env.sync(mapping, mode="full")
    assert reports["to_dataverse"].inserted == 1
    assert env.coupling(mapping, bc_id=customer["id"]) is not None
    assert env.coupling(mapping, bc_id=blocked["id"]) is None


def test_b55_full_sync_with_a_failed_record_is_partial(env) -> None:
    mapping = make_mapping()
    env.bc_new("Good One")
    env.bc_new("Bad One")
    env.admin("dv", "PUT", "faults", {"rules": [
        {"entity": "accounts", "match": {"name": "Bad One"}, "status": 400,
         "code": "0x80040203", "message": "Invalid argument."}]})
    report = env.sync(mapping, mode="full")["to_dataverse"]
    assert (report.inserted, report.failed, report.status) == (1, 1, "partial")
    assert env.state.job(report.job_id)["status"] == "partial"


def test_b56_full_sync_leaves_the_mapping_watermarks_set(env) -> None:
    mapping = make_mapping(sync_only_coupled=False)
    env.bc_new("Watermarked")
    env.dv_new("Watermarked DV")
    env.sync(mapping, mode="full")
    assert env.state.get_watermark("CUSTOMER", "to_dataverse") is not None
    assert env.state.get_watermark("CUSTOMER", "to_business_central") is not None


def test_b63_forced_sync_recreates_a_deleted_counterpart(env) -> None:
    mapping = make_mapping()
    bc_id, dv_id = env.coupled_pair(mapping)
    env.bc.delete("customers", bc_id)
    report = env.run(mapping, "to_business_central", mode="record", record_ids=[dv_id])
    assert (report.inserted, report.failed) == (1, 0)
    new_bc = env.coupling(mapping, dv_id=dv_id)["bc_id"]
    assert new_bc != bc_id and env.bc_get(new_bc)["displayName"] == "Pair Ltd"
    assert Direction.TO_BUSINESS_CENTRAL.value == report.direction
