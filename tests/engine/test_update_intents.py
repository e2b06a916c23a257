"""An update whose answer never came (a lost response, a timeout, a run dying between write
and stamp) is settled before the next pass compares anything (engine/updates.py): our own
write is not taken for a person's change. The fault drill (seed 58) found the case: an
update to Business Central landed unstamped, a person then edited the Dataverse account, and
the next run reported a conflict that nobody had made, for good.

Edits are made as a person (impersonated), never as the integration's application user.
"""
from __future__ import annotations

import pytest

from .conftest import WriteCrash, make_mapping


def _lost_update_to_bc(env, crash_after_write, mapping):
    """A coupled pair; a person moves the account to Olympia; the pass to Business Central
    writes it, and the run dies before the stamp."""
    bc_id, dv_id = env.coupled_pair(mapping, phoneNumber="555-0100", city="Bellevue")
    env.tick()
    env.dv_edit(dv_id, address1_city="Olympia")
    crash_after_write["armed"] = True
    with pytest.raises(WriteCrash):
        env.sync(mapping, run_id="lost-answer")
    assert env.bc_get(bc_id)["city"] == "Olympia"  # it landed
    intents = env.state.update_intents(mapping.name)
    assert [i["intent"]["sent"] for i in intents] == [{"city": "Olympia"}]
    return bc_id, dv_id


def test_a_landed_update_without_its_answer_is_not_a_conflict_with_a_later_edit(
        env, crash_after_write) -> None:
    crash_after_write["armed"] = False
    mapping = make_mapping(conflicts={"update": "merge"})
    bc_id, dv_id = _lost_update_to_bc(env, crash_after_write, mapping)
    env.tick()
    env.dv_edit(dv_id, address1_city="Tacoma")  # a person, after our unanswered write
    reports = env.sync(mapping, run_id="next")
    assert all(r.failed == 0 for r in reports.values()), reports
    assert env.bc_get(bc_id)["city"] == "Tacoma" and env.dv_get(dv_id)["address1_city"] == \
        "Tacoma"
    assert env.state.update_intents(mapping.name) == []
    assert env.state.errors(mapping.name) == []
    again = env.sync(mapping, run_id="quiet")
    assert all(r.modified == 0 and r.failed == 0 for r in again.values())


def test_an_edit_made_on_the_target_after_an_unanswered_update_still_arrives(
        env, crash_after_write) -> None:
    """The baseline of a settled update is our write, not what the target holds now: a
    person's later edit of another field there is still a change, and arrives."""
    crash_after_write["armed"] = False
    mapping = make_mapping(conflicts={"update": "merge"})
    bc_id, dv_id = _lost_update_to_bc(env, crash_after_write, mapping)
    env.tick()
    env.bc_edit(bc_id, phoneNumber="555-0177")  # a person, in Business Central
    env.dv_edit(dv_id, address1_city="Hull")     # another, in Dataverse
    reports = env.sync(mapping, run_id="next")
    assert all(r.failed == 0 for r in reports.values()), reports
    bc, dv = env.bc_get(bc_id), env.dv_get(dv_id)
    assert (bc["phoneNumber"], bc["city"]) == ("555-0177", "Hull")
    assert (dv["telephone1"], dv["address1_city"]) == ("555-0177", "Hull")


def test_an_update_that_did_not_land_leaves_the_baselines_as_they_were(env) -> None:
    """An update refused by the service keeps its intent until the next pass reads the
    target, finds the values not there, and drops it; the record is retried as before."""
    mapping = make_mapping()
    bc_id, dv_id = env.coupled_pair(mapping, phoneNumber="555-0100")
    env.tick()
    env.dv_edit(dv_id, telephone1="x" * 40)  # longer than BC's 30 characters: refused
    first = env.run(mapping, "to_business_central", run_id="refused")
    assert first.failed == 1
    assert len(env.state.update_intents(mapping.name)) == 1
    env.tick()
    env.dv_edit(dv_id, telephone1="555-0142")
    second = env.run(mapping, "to_business_central", run_id="fixed")
    assert second.failed == 0 and second.modified == 1, second.records
    assert env.bc_get(bc_id)["phoneNumber"] == "555-0142"
    assert env.state.update_intents(mapping.name) == []
