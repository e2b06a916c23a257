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
