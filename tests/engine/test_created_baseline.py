"""The baseline of an account our create made is the first read's (engine/created.py).

Learn, "Use bulk operation messages" (power-apps/developer/data-platform/bulk-operations):
CreateMultiple answers with the new ``Ids`` only, so the engine does not know the rows'
``modifiedon`` nor their values as stored when it stamps the create, and it does not read
them back. Every read carries ``createdon``; Dataverse sets ``createdon`` and
``modifiedon`` when it creates a row and moves ``modifiedon`` on every update, so a row whose
two are equal is as the create left it, and one whose ``modifiedon`` is later was changed
since. Here a person (impersonated, as an edit in Dynamics would be) changes accounts the
engine created before any read met them: their change must be carried, never overwritten,
and a conflict still seen as one.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from bcdv.engine.created import UNREAD
from bcdv.mapping.model import TableMapping

from .conftest import Env
from .conftest import make_mapping as _base_mapping


def make_mapping() -> TableMapping:
    """The behaviour tests' mapping, its creates in the Dataverse filter (Relationship Type
    = Customer, written on create as the shipped mapping does), so a pass back reads them."""
    return _base_mapping(create_values={"dataverse": {"customertypecode": 3}})


def _created(env: Env, mapping: TableMapping, name: str, **fields: Any) -> tuple[str, str]:
    """A BC customer created in Dataverse by a full synchronisation (CreateMultiple), its
    coupling still waiting for a read: (bc id, dv id)."""
    customer = env.bc_new(name, **fields)
    reports = env.sync(mapping, mode="full")
    assert reports["to_dataverse"].inserted >= 1, reports["to_dataverse"].records
    coupling = env.coupling(mapping, bc_id=customer["id"])
    assert coupling is not None and coupling["dv_hash"] == UNREAD
    return customer["id"], str(coupling["dv_id"])


def test_a_person_change_to_a_created_account_goes_back_in_the_scheduled_run(
        env: Env) -> None:
    mapping = make_mapping()
    bc_id, dv_id = _created(env, mapping, "Fresh Fields", phoneNumber="555-0100")
    env.tick()
    env.dv_edit(dv_id, telephone1="555-0199")  # a person, before any read met the row
    reports = env.sync(mapping)
    assert reports["to_dataverse"].modified == 0
    assert reports["to_business_central"].modified == 1, \
        reports["to_business_central"].records
    assert env.bc_get(bc_id)["phoneNumber"] == "555-0199"
    assert env.dv_get(dv_id)["telephone1"] == "555-0199"
    again = env.sync(mapping)
    assert all(r.modified == 0 and r.inserted == 0 and r.failed == 0
               for r in again.values())


def test_a_full_sync_keeps_a_person_change_to_a_created_account(env: Env) -> None:
    """The first round's fault, on a row never read back: the forced pass to Dataverse
    must not overwrite the person's change (its baseline is the create's time, so the row
    is seen as changed since), and the pass back carries it."""
    mapping = make_mapping()
    bc_id, dv_id = _created(env, mapping, "Kept Change", phoneNumber="555-0100")
    env.tick()
    env.dv_edit(dv_id, telephone1="555-0177")
    reports = env.sync(mapping, mode="full")
    assert reports["to_dataverse"].modified == 0
    assert reports["to_business_central"].modified == 1
    assert env.dv_get(dv_id)["telephone1"] == "555-0177"
    assert env.bc_get(bc_id)["phoneNumber"] == "555-0177"


def test_both_sides_changing_a_created_account_is_a_conflict(env: Env) -> None:
    mapping = make_mapping()  # conflicts.update: none
    bc_id, dv_id = _created(env, mapping, "Both Changed", phoneNumber="555-0100")
    env.tick()
    env.bc_edit(bc_id, phoneNumber="555-0111")
    env.dv_edit(dv_id, telephone1="555-0199")
    to_dv = env.sync(mapping)["to_dataverse"]
    assert to_dv.modified == 0 and to_dv.failed == 1
    assert any("both sides changed" in (r.message or "") for r in to_dv.records)
    assert env.dv_get(dv_id)["telephone1"] == "555-0199"  # nothing silently overwritten
    assert env.bc_get(bc_id)["phoneNumber"] == "555-0111"


def test_a_change_in_business_central_to_an_untouched_created_account_is_no_conflict(
        env: Env) -> None:
    """Nobody changed the account since the create (``modifiedon`` equals ``createdon``):
    the first read is its baseline, so a change in Business Central is a plain update, and
    the update's answer stamps a real baseline."""
    mapping = make_mapping()
    bc_id, dv_id = _created(env, mapping, "Quiet Account", phoneNumber="555-0100")
    env.tick()
    env.bc_edit(bc_id, phoneNumber="555-0142")
    reports = env.sync(mapping)
    assert (reports["to_dataverse"].modified, reports["to_dataverse"].failed) == (1, 0), \
        reports["to_dataverse"].records
    assert env.dv_get(dv_id)["telephone1"] == "555-0142"
    coupling = env.coupling(mapping, bc_id=bc_id)
    assert coupling is not None and coupling["dv_hash"] not in (UNREAD, None)
    assert reports["to_business_central"].modified == 0


def test_a_person_change_in_the_very_second_of_the_create_is_not_taken_for_it(
        env: Env) -> None:
    """Dataverse stamps whole seconds, so an edit made in the second the create was made
    leaves ``modifiedon`` equal to ``createdon``; the value the create sent then reads back
    changed, and that tells. The Dataverse emulator's clock is set back into the create's
    second for the edit (``/_emulator/clock``), so the edit is stamped there for sure."""
    mapping = make_mapping()
    bc_id, dv_id = _created(env, mapping, "Same Second", phoneNumber="555-0100")
    created = datetime.fromisoformat(env.dv_get(dv_id)["createdon"].replace("Z", "+00:00"))
    offset = (created.timestamp() + 0.1) - time.time()  # 0.9 s for the edit to arrive
    env.admin("dv", "PUT", "clock", {"offset_seconds": offset})
    try:
        env.dv_edit(dv_id, telephone1="555-0166")  # a person, in the create's second
    finally:
        env.admin("dv", "PUT", "clock", {"offset_seconds": 0})
    row = env.dv_get(dv_id)
    assert row["modifiedon"] == row["createdon"]
    env.tick()
    reports = env.sync(mapping)
    assert reports["to_business_central"].modified == 1, \
        reports["to_business_central"].records
    assert env.bc_get(bc_id)["phoneNumber"] == "555-0166"
    assert env.dv_get(dv_id)["telephone1"] == "555-0166"
