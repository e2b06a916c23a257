"""Issue 11 regressions: a full synchronisation never loses a person's change, and values
are compared per type (a Dataverse null against Business Central's 0 is no change).

Edits in Dataverse are made as a person (impersonated org admin), never as the integration's
own application user, whose edits are echoes by BC's rules.
"""
from __future__ import annotations

from datetime import datetime

from .conftest import make_mapping


def test_full_sync_keeps_a_person_change_made_in_dataverse_since_the_last_sync(env) -> None:
    mapping = make_mapping()
    bc_id, dv_id = env.coupled_pair(mapping, phoneNumber="555-0100")
    env.tick()
    env.dv_edit(dv_id, telephone1="555-0199")  # a person, after the last sync
    reports = env.sync(mapping, mode="full")
    assert env.dv_get(dv_id)["telephone1"] == "555-0199"
    assert env.bc_get(bc_id)["phoneNumber"] == "555-0199"
    assert reports["to_dataverse"].modified == 0
    assert reports["to_business_central"].modified == 1
    again = env.sync(mapping)
    assert all(r.modified == 0 and r.inserted == 0 for r in again.values())


def test_full_sync_reports_a_conflict_when_both_sides_changed_the_same_field(env) -> None:
    mapping = make_mapping()  # conflicts.update: none
    bc_id, dv_id = env.coupled_pair(mapping, phoneNumber="555-0100")
    env.tick()
    env.bc_edit(bc_id, phoneNumber="555-0111")
    env.dv_edit(dv_id, telephone1="555-0199")
    reports = env.sync(mapping, mode="full")
    to_dv = reports["to_dataverse"]
    assert to_dv.modified == 0 and to_dv.failed == 1
    assert any("both sides changed" in (r.message or "") for r in to_dv.records)
    assert env.dv_get(dv_id)["telephone1"] == "555-0199"   # nothing silently overwritten
    assert env.bc_get(bc_id)["phoneNumber"] == "555-0111"


def test_full_sync_applies_the_winner_rule_when_both_sides_changed(env) -> None:
    mapping = make_mapping(conflicts={"update": "dataverse_wins"})
    bc_id, dv_id = env.coupled_pair(mapping, phoneNumber="555-0100")
    env.tick()
    env.bc_edit(bc_id, phoneNumber="555-0111")
    env.dv_edit(dv_id, telephone1="555-0199")
    env.sync(mapping, mode="full")
    assert env.dv_get(dv_id)["telephone1"] == "555-0199"
    assert env.bc_get(bc_id)["phoneNumber"] == "555-0199"


def test_full_sync_merges_different_fields_changed_on_both_sides(env) -> None:
    mapping = make_mapping(conflicts={"update": "merge"})
    bc_id, dv_id = env.coupled_pair(mapping, phoneNumber="555-0100", city="Oslo")
    env.tick()
    env.bc_edit(bc_id, city="Bergen")
    env.dv_edit(dv_id, telephone1="555-0199")
    env.sync(mapping, mode="full")
    for row in (env.dv_get(dv_id), ):
        assert row["telephone1"] == "555-0199" and row["address1_city"] == "Bergen"
    bc = env.bc_get(bc_id)
    assert bc["phoneNumber"] == "555-0199" and bc["city"] == "Bergen"


def test_full_sync_still_overwrites_a_destination_that_did_not_move(env) -> None:
    mapping = make_mapping()
    bc_id, dv_id = env.coupled_pair(mapping, phoneNumber="555-0100")
    env.tick()
    env.bc_edit(bc_id, phoneNumber="555-0111")
    reports = env.sync(mapping, mode="full")
    assert reports["to_dataverse"].modified == 1
    assert env.dv_get(dv_id)["telephone1"] == "555-0111"


def test_null_credit_limit_in_dataverse_equals_zero_in_business_central(env) -> None:
    mapping = make_mapping()
    customer = env.bc_new("Zero Credit Ltd", creditLimit=0)
    account = env.dv_new("Zero Credit Ltd")          # creditlimit null
    assert env.dv_get(account)["creditlimit"] is None
    env.state.couple(mapping.name, customer["id"], account)
    first = env.sync(mapping, mode="full")
    assert first["to_dataverse"].modified == 0, first["to_dataverse"].records
    for _ in range(2):
        again = env.sync(mapping, mode="full")
        assert again["to_dataverse"].modified == 0 and again["to_business_central"].modified == 0


def test_values_compare_per_type() -> None:
    from bcdv.engine.values import same

    assert same(None, 0) and same(0.0, None) and same(None, False) and same("", None)
    assert same("_x0020_", None) and same("00000000-0000-0000-0000-000000000000", None)
    assert same("{AB12CD34-0000-0000-0000-00000000000A}", "ab12cd34-0000-0000-0000-00000000000a")
    assert same(3, "3") and same(5000, 5000.0)
    assert not same(None, 1) and not same(None, True) and not same(None, "0")
    assert not same(0, 1) and not same("a", "b")


def test_full_pass_keeps_the_hash_baseline_of_an_edit_made_in_the_second_of_its_write(
        env) -> None:
    """Dataverse stamps whole seconds (modifiedon has no milliseconds), so a person's edit
    in the second of bcdv's last write leaves modifiedon where the baseline is and only the
    hash shows it. A full pass that finds such an edit leaves it for the pass back; its
    restamp must keep the hash baseline, or a second full pass (after a run that stopped
    between its passes, as the fault drill's did) overwrites the edit."""
    from sqlalchemy import update

    from bcdv.state.schema import couplings

    mapping = make_mapping()
    bc_id, dv_id = env.coupled_pair(mapping, phoneNumber="555-0100")
    env.tick()
    env.dv_edit(dv_id, telephone1="555-0199")  # a person
    moved = env.dv_get(dv_id)["modifiedon"]
    with env.state.engine.begin() as conn:  # as if the edit fell in the second of our write
        conn.execute(update(couplings).where(couplings.c.dv_id == dv_id).values(
            dv_modified=datetime.fromisoformat(moved.replace("Z", "+00:00"))
            .replace(tzinfo=None)))
    for _ in range(2):  # two full passes to Dataverse, no pass back in between
        report = env.run(mapping, "to_dataverse", mode="full")
        assert report.modified == 0, report.records
        assert env.dv_get(dv_id)["telephone1"] == "555-0199"
    back = env.run(mapping, "to_business_central", mode="full")
    assert back.modified == 1, back.records
    assert env.bc_get(bc_id)["phoneNumber"] == "555-0199"
