"""Issue 11 regression: a Business Central create whose response is lost (the server
committed, the client never heard) is recovered exactly, never duplicated.

Business Central chooses a new record's id: API v2.0 refuses ``id`` on POST ("Control 'Id'
is read-only", see tests/contract/test_business_central.py), so recovery recognises the
records by what the create sent. Twin accounts (identical values) used to become 4 records.
"""
from __future__ import annotations

import pytest

from .conftest import WriteCrash, make_mapping


def _bc_named(env, name: str) -> list[dict]:
    return env.bc.list("customers", filter=f"displayName eq '{name}'")


def test_lost_create_response_recovers_identical_twins_without_duplicates(
        env, crash_after_write) -> None:
    mapping = make_mapping(sync_only_coupled=False)
    twins = [env.dv_new("Twin Traders", telephone1="555-0101", address1_city="Leeds")
             for _ in range(2)]
    with pytest.raises(WriteCrash):
        env.run(mapping, "to_business_central", mode="full", run_id="attempt-1")
    assert len(_bc_named(env, "Twin Traders")) == 2  # the server committed both
    report = env.run(mapping, "to_business_central", mode="full", run_id="attempt-2")
    assert report.failed == 0, report.records
    rows = _bc_named(env, "Twin Traders")
    assert len(rows) == 2
    coupled = {env.coupling(mapping, dv_id=t)["bc_id"] for t in twins}
    assert coupled == {r["id"] for r in rows}
    # and nothing doubles on the way back to Dataverse either
    env.sync(mapping, mode="full")
    assert len(env.dv.list("accounts", filter="name eq 'Twin Traders'")) == 2
    assert len(_bc_named(env, "Twin Traders")) == 2


def test_lost_create_recovery_never_takes_a_lookalike_made_by_someone_else(
        env, crash_after_write) -> None:
    mapping = make_mapping(sync_only_coupled=False)
    dv_id = env.dv_new("Lookalike Ltd", telephone1="555-0102")
    with pytest.raises(WriteCrash):
        env.run(mapping, "to_business_central", mode="full", run_id="attempt-1")
    env.bc_new("Lookalike Ltd", phoneNumber="555-0102")  # a person, same values, same minute
    report = env.run(mapping, "to_business_central", mode="full", run_id="attempt-2")
    assert len(_bc_named(env, "Lookalike Ltd")) == 2  # no third record
    assert report.failed == 1
    assert "will not guess" in report.records[0].message
    assert env.coupling(mapping, dv_id=dv_id)["pending"]
    again = env.run(mapping, "to_business_central", mode="full", run_id="attempt-3")
    assert len(_bc_named(env, "Lookalike Ltd")) == 2 and again.inserted == 0


def test_lost_create_recovery_ignores_a_record_with_the_same_name_but_other_values(
        env, crash_after_write) -> None:
    mapping = make_mapping(sync_only_coupled=False)
    dv_id = env.dv_new("Namesake Ltd", telephone1="555-0103")
    env.bc_new("Namesake Ltd", phoneNumber="999")  # an unrelated namesake
    with pytest.raises(WriteCrash):
        env.run(mapping, "to_business_central", mode="full", run_id="attempt-1")
    report = env.run(mapping, "to_business_central", mode="full", run_id="attempt-2")
    assert report.failed == 0, report.records
    rows = {r["phoneNumber"]: r["id"] for r in _bc_named(env, "Namesake Ltd")}
    assert len(rows) == 2
    assert env.coupling(mapping, dv_id=dv_id)["bc_id"] == rows["555-0103"]


def test_create_sent_after_a_crash_before_the_post_is_not_lost(env) -> None:
    """An intent recorded but never sent (crash before the POST): the rerun creates it."""
    mapping = make_mapping(sync_only_coupled=False)
    dv_id = env.dv_new("Never Sent Ltd")
    env.state.record_intents(mapping.name, [(None, dv_id, {"displayName": "Never Sent Ltd"})])
    report = env.run(mapping, "to_business_central", mode="full", run_id="attempt-2")
    assert report.inserted == 1 and report.failed == 0
    assert len(_bc_named(env, "Never Sent Ltd")) == 1


def test_lost_create_of_a_record_a_person_edited_before_the_next_run_is_not_made_twice(
        env, crash_after_write) -> None:
    """The fault drill's case (seed 1): the create's answer is lost, then a person edits the
    new customer in Business Central (nothing tells them its answer was lost) before the
    next run. Recovery recognises it by its name (the one uncoupled record of that name
    made since the create) and couples it with the create's baseline, so the person's edit
    is a change that reaches Dataverse, not a new record, and nothing is doubled."""
    mapping = make_mapping(sync_only_coupled=False)
    dv_id = env.dv_new("Edited Early Ltd", telephone1="555-0104", address1_city="York")
    with pytest.raises(WriteCrash):
        env.sync(mapping, run_id="attempt-1")
    [made] = _bc_named(env, "Edited Early Ltd")
    env.tick()
    env.bc_edit(made["id"], phoneNumber="555-0199")  # a person
    reports = env.sync(mapping, run_id="attempt-2")
    assert all(r.failed == 0 for r in reports.values()), reports
    assert [r["id"] for r in _bc_named(env, "Edited Early Ltd")] == [made["id"]]
    accounts = env.dv.list("accounts", filter="name eq 'Edited Early Ltd'")
    assert [a["accountid"] for a in accounts] == [dv_id]
    assert accounts[0]["telephone1"] == "555-0199" and accounts[0]["address1_city"] == "York"
    coupling = env.coupling(mapping, dv_id=dv_id)
    assert coupling["bc_id"] == made["id"]
    # the job log accounts for it: the recovering job is named on the coupling
    jobs = {j["id"]: j for j in env.state.jobs(mapping.name, limit=100)}
    assert jobs[coupling["to_bc_job"]]["run_id"] == "attempt-2"
    again = env.sync(mapping, run_id="attempt-3")
    assert all(r.modified == 0 and r.inserted == 0 for r in again.values())


def test_lost_create_recovery_keeps_edits_made_on_both_sides_before_the_next_run(
        env, crash_after_write) -> None:
    """After the lost create, one person edits the new customer's phone in Business Central
    and another the account's city in Dataverse: the recovered coupling's baseline is the
    create, so each edit is a change of its own side and both arrive (merge)."""
    mapping = make_mapping(sync_only_coupled=False, conflicts={"update": "merge"})
    dv_id = env.dv_new("Both Edited Ltd", telephone1="555-0105", address1_city="Leeds")
    with pytest.raises(WriteCrash):
        env.sync(mapping, run_id="attempt-1")
    [made] = _bc_named(env, "Both Edited Ltd")
    env.tick()
    env.bc_edit(made["id"], phoneNumber="555-0155")
    env.dv_edit(dv_id, address1_city="Hull")
    reports = env.sync(mapping, run_id="attempt-2")
    assert all(r.failed == 0 for r in reports.values()), reports
    bc = env.bc_get(made["id"])
    dv = env.dv_get(dv_id)
    assert (bc["phoneNumber"], bc["city"]) == ("555-0155", "Hull")
    assert (dv["telephone1"], dv["address1_city"]) == ("555-0155", "Hull")
    assert len(_bc_named(env, "Both Edited Ltd")) == 1
    assert len(env.dv.list("accounts", filter="name eq 'Both Edited Ltd'")) == 1


def test_lost_create_recovery_will_not_guess_between_two_edited_namesakes(
        env, crash_after_write) -> None:
    """Two uncoupled records of the name, neither carrying what was sent: no guess, an error
    row, and no third record."""
    mapping = make_mapping(sync_only_coupled=False)
    dv_id = env.dv_new("Two Namesakes Ltd", telephone1="555-0106")
    with pytest.raises(WriteCrash):
        env.run(mapping, "to_business_central", mode="full", run_id="attempt-1")
    [made] = _bc_named(env, "Two Namesakes Ltd")
    env.bc_edit(made["id"], phoneNumber="555-0166")
    env.bc_new("Two Namesakes Ltd", phoneNumber="555-0177")  # someone else's, same minute
    report = env.run(mapping, "to_business_central", mode="full", run_id="attempt-2")
    assert report.failed == 1 and "will not guess" in report.records[0].message
    assert len(_bc_named(env, "Two Namesakes Ltd")) == 2
    assert env.coupling(mapping, dv_id=dv_id)["pending"]


@pytest.mark.parametrize("mode", ["modified", "full"])
@pytest.mark.parametrize("same_second", [False, True], ids=["later", "same-second"])
def test_lost_dataverse_create_is_coupled_not_upserted_over_a_person_edit(
        env, crash_after_write, mode: str, same_second: bool) -> None:
    """The fault drill's case (seeds 8 and 50): a Dataverse create carries our id, so it
    used to be upserted again on the rerun, over whatever a person had changed in the new
    account meanwhile. Now the record is read by its id and coupled with the create as
    baseline: the edit is a change that reaches Business Central, also when it was made in
    the second of the create (Dataverse stamps whole seconds, so the record then reads as
    older than the create's attempt: the baseline must not be later than it)."""
    mapping = make_mapping(sync_only_coupled=False,  # new accounts pass the Dataverse filter
                           create_values={"dataverse": {"customertypecode": 3}})
    customer = env.bc_new("Upserted Over Ltd", phoneNumber="555-0107", city="Leeds")
    with pytest.raises(WriteCrash):
        env.sync(mapping, run_id="attempt-1")
    [account] = env.dv.list("accounts", filter="name eq 'Upserted Over Ltd'")
    if not same_second:
        env.tick()
    env.dv_edit(account["accountid"], address1_city="Spokane")  # a person
    reports = env.sync(mapping, run_id="attempt-2", mode=mode)
    assert all(r.failed == 0 for r in reports.values()), reports
    assert env.dv_get(account["accountid"])["address1_city"] == "Spokane"
    assert env.bc_get(customer["id"])["city"] == "Spokane"
    assert len(env.dv.list("accounts", filter="name eq 'Upserted Over Ltd'")) == 1
    assert len(_bc_named(env, "Upserted Over Ltd")) == 1
    again = env.sync(mapping, run_id="attempt-3")
    assert all(r.modified == 0 and r.inserted == 0 for r in again.values())
