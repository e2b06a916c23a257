"""The plan as a table: literal source rows, couplings and target rows in, typed actions out.

No emulator, no state store, no network (a guard refuses sockets): every rule about a
record's fate that the plan decides is pinned here by a small case.
"""

from __future__ import annotations

import copy
import json
import socket
import uuid
from typing import Any

import pytest

from bcdv.engine.actions import (
    Fail,
    Ignore,
    Insert,
    PlanFormatError,
    Skip,
    Unchanged,
    Uncouple,
    Update,
    action_from_row,
    plan_header,
    read_plan,
    write_plan,
)
from bcdv.engine.inputs import PlanInputs, targets_to_read
from bcdv.engine.outcome import failure_result, skipped_message
from bcdv.engine.plan import (
    CONFLICT_MESSAGE,
    DELETED_MESSAGE,
    NEW_ID_NAMESPACE,
    new_target_id,
    plan_records,
)
from bcdv.engine.transform import side_fields
from bcdv.engine.values import canon, row_hash
from bcdv.mapping.model import Direction, TableMapping

TO_DV, TO_BC = Direction.TO_DATAVERSE, Direction.TO_BUSINESS_CENTRAL
T0 = "2026-03-01T10:00:00+00:00"  # last sync
T1 = "2026-03-01T11:00:00+00:00"  # a change after it
T2 = "2026-03-01T12:00:00+00:00"
SEED = "job-1"

BASE: dict[str, Any] = {
    "name": "CUSTOMER",
    "business_central": {"entity_set": "customers", "key": "id",
                         "modified_on": "lastModifiedDateTime", "name_field": "displayName"},
    "dataverse": {"entity_set": "accounts", "key": "accountid", "modified_on": "modifiedon",
                  "name_field": "name"},
    "direction": "bidirectional",
    "sync_only_coupled": True,
    "fields": [
        {"business_central": "displayName", "dataverse": "name"},
        {"business_central": "phoneNumber", "dataverse": "telephone1"},
        {"business_central": "city", "dataverse": "address1_city"},
        {"business_central": "creditLimit", "dataverse": "creditlimit",
         "direction": "to_dataverse"},
    ],
}


def mapping(**changes: Any) -> TableMapping:
    """BASE with top-level keys replaced (dicts merged)."""
    data = copy.deepcopy(BASE)
    for key, value in changes.items():
        data[key] = {**data[key], **value} if isinstance(value, dict) and isinstance(
            data.get(key), dict) else value
    return TableMapping.model_validate(data)


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Planning reads nothing: any connection attempt fails the test."""
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the plan opened a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def bc(rid: str = "b1", modified: str = T1, name: str = "Acme", phone: str = "1",
       city: str = "Oslo", credit: float = 100.0) -> dict[str, Any]:
    return {"id": rid, "lastModifiedDateTime": modified, "displayName": name,
            "phoneNumber": phone, "city": city, "creditLimit": credit}


def dv(rid: str = "d1", modified: str = T1, name: str = "Acme", phone: str = "1",
       city: str = "Oslo", credit: float = 100.0) -> dict[str, Any]:
    return {"accountid": rid, "modifiedon": modified, "name": name, "telephone1": phone,
            "address1_city": city, "creditlimit": credit, "@odata.etag": 'W/"7"'}


def coupling(m: TableMapping, bc_row: dict[str, Any], dv_row: dict[str, Any], *,
             bc_modified: str | None = T0, dv_modified: str | None = T0,
             **extra: Any) -> dict[str, Any]:
    """A coupling as the last sync left it: baselines, hashes and synced values of both rows."""
    bc_f, dv_f = side_fields(m, "business_central"), side_fields(m, "dataverse")
    synced = {"business_central": {f: canon(bc_row.get(f)) for f in bc_f},
              "dataverse": {f: canon(dv_row.get(f)) for f in dv_f}}
    return {"id": 1, "bc_id": bc_row["id"], "dv_id": dv_row["accountid"], "pending": False,
            "skipped": False, "bc_modified": bc_modified, "dv_modified": dv_modified,
            "bc_hash": row_hash(bc_row, bc_f), "dv_hash": row_hash(dv_row, dv_f),
            "to_dv_result": "success", "to_bc_result": "success",
            "synced": json.dumps(synced), **extra}


def one(m: TableMapping, direction: Direction, source: dict[str, Any], *,
        couplings: list[dict[str, Any]] = (), targets: list[dict[str, Any]] = (),
        mode: str = "modified", **kw: Any) -> Any:
    inputs = PlanInputs.build(m, direction, source=[source], couplings=list(couplings),
                              targets=list(targets), mode=mode, id_seed=SEED, **kw)
    actions = plan_records(inputs)
    assert len(actions) == 1
    return actions[0]


# -- uncoupled records -------------------------------------------------------------------------
def test_insert_when_uncoupled_and_creates_allowed() -> None:
    a = one(mapping(sync_only_coupled=False), TO_DV, bc("b9", name="New Co"))
    assert a == Insert(source_id="b9", name="New Co", reason="new record",
                       target_id=new_target_id(SEED, "b9"),
                       payload={"name": "New Co", "telephone1": "1", "address1_city": "Oslo",
                                "creditlimit": 100.0},
                       source_modified=T1, source_hash=a.source_hash,
                       source_values={"displayName": "New Co", "phoneNumber": "1",
                                      "city": "Oslo", "creditLimit": "100"})


def test_insert_to_business_central_lets_the_service_choose_the_id() -> None:
    a = one(mapping(sync_only_coupled=False), TO_BC, dv("d9", name="Other"))
    assert isinstance(a, Insert) and a.target_id is None and not a.resume
    assert a.payload == {"displayName": "Other", "phoneNumber": "1", "city": "Oslo"}


def test_full_sync_creates_even_when_only_coupled_records_sync() -> None:
    assert isinstance(one(mapping(), TO_DV, bc("b9"), mode="full"), Insert)


def test_ignore_when_the_mapping_syncs_only_coupled_records() -> None:
    a = one(mapping(), TO_DV, bc("b9"))
    assert a == Ignore(source_id="b9", name="Acme",
                       reason="not coupled, and the mapping synchronises only coupled records")


def test_new_ids_are_a_function_of_seed_and_source() -> None:
    assert new_target_id("job-1", "b1") == new_target_id("job-1", "b1")
    assert new_target_id("job-1", "b1") != new_target_id("job-2", "b1")
    # The version 5 UUID of "seed/source id" (ids chosen by earlier releases stay the same).
    for source_id in ("b1", "0d7b3e2f-8c11-4c1e-9a57-6f1c2a4e5b0d", "Ünïcödé 10000", ""):
        assert new_target_id("job-1", source_id) == str(
            uuid.uuid5(NEW_ID_NAMESPACE, f"job-1/{source_id}"))


# -- coupled, compared by hash and timestamps ---------------------------------------------------
def test_unchanged_when_nothing_moved() -> None:
    m = mapping()
    src, tgt = bc(modified=T0), dv(modified=T0)
    a = one(m, TO_DV, src, couplings=[coupling(m, src, tgt)])
    assert isinstance(a, Unchanged) and not a.restamp and a.target_id == "d1"
    assert a.reason == "no mapped field changed since the last synchronization"


def test_unchanged_when_hashes_equal_moves_the_baseline_only() -> None:
    m = mapping()
    src, tgt = bc(modified=T1), dv(modified=T0)  # touched, same values
    inputs = PlanInputs.build(m, TO_DV, source=[src], couplings=[coupling(m, src, tgt)])
    assert targets_to_read(inputs) == []  # nothing to compare: no read of the target
    (a,) = plan_records(inputs)
    assert isinstance(a, Unchanged) and a.restamp


def test_update_sends_only_the_fields_that_differ() -> None:
    m = mapping()
    old, tgt = bc(modified=T0), dv(modified=T0)
    src = bc(modified=T1, phone="2")
    c = coupling(m, old, tgt)
    inputs = PlanInputs.build(m, TO_DV, source=[src], couplings=[c], targets=[tgt])
    assert targets_to_read(inputs) == ["d1"]
    (a,) = plan_records(inputs)
    assert isinstance(a, Update)
    assert (a.target_id, a.payload, a.diff, a.etag) == ("d1", {"telephone1": "2"},
                                                        ("telephone1",), 'W/"7"')
    assert a.reason == "changed: telephone1" and a.baseline_slack_ms == 0 and not a.conflict


def test_values_already_equal_on_the_target_restamp() -> None:
    m = mapping()
    src = bc(modified=T1, phone="2")
    c = coupling(m, bc(modified=T0), dv(modified=T0))
    a = one(m, TO_DV, src, couplings=[c], targets=[dv(modified=T1, phone="2")])
    assert isinstance(a, Unchanged) and a.restamp and a.reason == "the mapped values already match"


def test_echo_of_our_own_write_is_suppressed() -> None:
    """The pass back reads the Dataverse row bcdv just wrote: it moved, its values did not."""
    m = mapping()
    src, tgt = bc(modified=T1, phone="2"), dv(modified=T1, phone="2")
    c = coupling(m, src, tgt, bc_modified=T1, dv_modified=T1)
    a = one(m, TO_BC, dv(modified="2026-03-01T11:00:00.005+00:00", phone="2"), couplings=[c])
    assert isinstance(a, Unchanged) and not a.restamp


def test_a_same_second_edit_with_other_values_is_a_change() -> None:
    """Dataverse stamps whole seconds: an edit in the second of our write has the same
    modified-on, so the hash decides."""
    m = mapping()
    src, tgt = bc(modified=T1), dv(modified=T1)
    c = coupling(m, src, tgt, bc_modified=T1, dv_modified=T1)
    a = one(m, TO_BC, dv(modified=T1, phone="edited"), couplings=[c], targets=[src])
    assert isinstance(a, Update) and a.payload == {"phoneNumber": "edited"}


def test_skipped_coupling_is_skipped() -> None:
    m = mapping()
    c = coupling(m, bc(modified=T0), dv(modified=T0), skipped=True)
    a = one(m, TO_DV, bc(phone="2"), couplings=[c])
    assert a == Skip(source_id="b1", name="Acme", target_id="d1",
                     reason="the coupling is marked Skipped; restore it to retry")


def test_a_failed_coupling_is_compared_again_even_unchanged() -> None:
    m = mapping()
    src, tgt = bc(modified=T0), dv(modified=T0)
    c = coupling(m, src, tgt, to_dv_result="failure")
    inputs = PlanInputs.build(m, TO_DV, source=[src], couplings=[c], targets=[tgt])
    assert targets_to_read(inputs) == ["d1"]
    (a,) = plan_records(inputs)
    assert isinstance(a, Unchanged) and a.restamp


def test_a_failed_update_carries_what_bcs_skip_rule_needs() -> None:
    m = mapping()
    c = coupling(m, bc(modified=T0), dv(modified=T0), to_dv_result="failure")
    a = one(m, TO_DV, bc(modified=T0, phone="2"), couplings=[c], targets=[dv(modified=T0)],
            prior_errors={"b1": "Phone is too long."})
    assert isinstance(a, Update) and a.payload == {"telephone1": "2"}
    assert a.failed_before and a.prior_error == "Phone is too long."


PAYMENT = {"business_central": "paymentTermsCode", "dataverse": "paymenttermscode",
           "direction": "to_dataverse", "value_map": "TERMS"}
TERMS = {"TERMS": {"unmapped": "error",
                   "values": [{"business_central": "NET30", "dataverse": 1}]}}


def test_values_that_cannot_be_transferred_fail() -> None:
    m = mapping(fields=[*BASE["fields"], PAYMENT], value_maps=TERMS)
    a = one(m, TO_DV, {**bc("b9"), "paymentTermsCode": "NET99"}, mode="full")
    assert isinstance(a, Fail) and a.reason.startswith("The data could not be transferred:")
    assert "NET99" in a.reason and not a.skips


def test_untransferable_values_of_an_uncoupled_record_are_ignored_when_not_creating() -> None:
    m = mapping(fields=[*BASE["fields"], PAYMENT], value_maps=TERMS)
    a = one(m, TO_DV, {**bc("b9"), "paymentTermsCode": "NET99"})
    assert isinstance(a, Ignore) and "NET99" in a.reason


# -- both sides changed: the update-conflict rule ---------------------------------------------
def _both_changed(m: TableMapping, direction: Direction = TO_DV, *, bc_phone: str = "bc",
                  dv_phone: str = "dv", **kw: Any) -> Any:
    c = coupling(m, bc(modified=T0), dv(modified=T0), **kw.pop("coupling", {}))
    if direction is TO_DV:
        return one(m, TO_DV, bc(modified=T1, phone=bc_phone), couplings=[c],
                   targets=[dv(modified=T1, phone=dv_phone)], **kw)
    return one(m, TO_BC, dv(modified=T1, phone=dv_phone), couplings=[c],
               targets=[bc(modified=T1, phone=bc_phone)], **kw)


def test_bidirectional_conflict_fails_without_a_rule() -> None:
    a = _both_changed(mapping())
    assert a == Fail(source_id="b1", name="Acme", target_id="d1", conflict=True,
                     reason=CONFLICT_MESSAGE.format(target="Dataverse", fields="telephone1"))


def test_the_same_conflict_twice_makes_the_coupling_skipped() -> None:
    message = CONFLICT_MESSAGE.format(target="Dataverse", fields="telephone1")
    a = _both_changed(mapping(), coupling={"to_dv_result": "failure"},
                      prior_errors={"b1": message})
    assert isinstance(a, Fail) and a.skips
    other = _both_changed(mapping(), coupling={"to_dv_result": "failure"},
                          prior_errors={"b1": "Some other error"})
    assert isinstance(other, Fail) and not other.skips


def test_business_central_wins_sends_from_business_central() -> None:
    m = mapping(conflicts={"update": "business_central_wins"})
    a = _both_changed(m)
    assert isinstance(a, Update) and a.conflict and a.payload == {"telephone1": "bc"}
    assert a.reason == "update conflict on telephone1: Business Central wins (conflict resolution)"


def test_business_central_wins_skips_the_dataverse_change() -> None:
    m = mapping(conflicts={"update": "business_central_wins"})
    a = _both_changed(m, TO_BC)
    assert isinstance(a, Skip) and a.conflict and "Business Central wins" in a.reason


def test_dataverse_wins_skips_the_business_central_change() -> None:
    a = _both_changed(mapping(conflicts={"update": "dataverse_wins"}))
    assert isinstance(a, Skip) and a.conflict and a.target_id == "d1"


def test_merge_sends_ours_when_different_fields_changed() -> None:
    m = mapping(conflicts={"update": "merge"})
    c = coupling(m, bc(modified=T0), dv(modified=T0))
    a = one(m, TO_DV, bc(modified=T1, phone="bc"), couplings=[c],
            targets=[dv(modified=T1, city="Bergen")])
    assert isinstance(a, Update) and a.conflict and a.payload == {"telephone1": "bc"}
    assert a.baseline_slack_ms == 999 and a.reason.startswith("merged:")


def test_merge_of_the_same_field_is_a_conflict() -> None:
    a = _both_changed(mapping(conflicts={"update": "merge"}))
    assert isinstance(a, Fail) and a.conflict and "telephone1" in a.reason


def test_an_overwrite_with_fields_to_carry_back_sets_the_baseline_behind() -> None:
    """Both moved, only a one-way field differs: it is sent, and the target's baseline is set
    behind so the pass back still carries the fields mapped only towards Business Central."""
    fields = [*BASE["fields"], {"business_central": "state", "dataverse": "address1_county",
                                "direction": "to_business_central"}]
    m = mapping(fields=fields)
    c = coupling(m, bc(modified=T0), dv(modified=T0))
    a = one(m, TO_DV, bc(modified=T1, credit=200.0), couplings=[c],
            targets=[dv(modified=T1, name="Acme")])
    assert isinstance(a, Update) and a.payload == {"creditlimit": 200.0}
    assert a.baseline_slack_ms == 999 and a.both_modified


# -- full synchronisation -----------------------------------------------------------------------
def test_full_sync_forces_an_unchanged_record() -> None:
    """A pair recorded out of step (neither side moved since): BC's forced modify."""
    m = mapping()
    src, tgt = bc(modified=T0), dv(modified=T0, phone="x")
    a = one(m, TO_DV, src, couplings=[coupling(m, src, tgt)], targets=[tgt], mode="full")
    assert isinstance(a, Update) and a.payload == {"telephone1": "1"}


def test_full_sync_protects_a_destination_change_when_the_source_did_not_move() -> None:
    m = mapping()
    src = bc(modified=T0)
    c = coupling(m, src, dv(modified=T0))
    a = one(m, TO_DV, src, couplings=[c], targets=[dv(modified=T1, phone="person")],
            mode="full")
    assert isinstance(a, Unchanged) and a.restamp and a.goes_back
    # the destination keeps its baselines (time and hash): the change is still seen as one
    assert a.target_modified == T0
    assert a.target_hash == c["dv_hash"]
    assert "its change goes back in the next pass" in a.reason


def test_full_sync_with_both_moved_applies_the_conflict_rule() -> None:
    a = _both_changed(mapping(), mode="full")
    assert isinstance(a, Fail) and a.conflict


def test_full_sync_pass_back_is_not_forced() -> None:
    m = mapping()
    src = dv(modified=T0)
    c = coupling(m, bc(modified=T0), src)
    a = one(m, TO_BC, src, couplings=[c], mode="full")
    assert isinstance(a, Unchanged) and not a.restamp


# -- the counterpart was deleted: the deletion-conflict rule ------------------------------------
def _deleted(m: TableMapping, mode: str = "modified") -> Any:
    c = coupling(m, bc(modified=T0), dv(modified=T0))
    return one(m, TO_DV, bc(modified=T1, phone="2"), couplings=[c], targets=[], mode=mode)


def test_deleted_counterpart_fails_without_a_rule() -> None:
    a = _deleted(mapping())
    assert isinstance(a, Fail) and a.reason == DELETED_MESSAGE.format(target="Dataverse",
                                                                      target_id="d1")


def test_deleted_counterpart_removes_the_coupling() -> None:
    a = _deleted(mapping(conflicts={"deletion": "remove_coupling"}))
    assert isinstance(a, Uncouple) and a.target_id == "d1"


def test_deleted_counterpart_is_restored() -> None:
    a = _deleted(mapping(conflicts={"deletion": "restore_records"}))
    assert isinstance(a, Insert) and a.restore and a.deleted_target_id == "d1"
    assert a.target_id == new_target_id(SEED, "b1") and a.payload["telephone1"] == "2"


def test_a_forced_sync_restores_a_deleted_counterpart() -> None:
    a = _deleted(mapping(), mode="full")
    assert isinstance(a, Insert) and a.restore


# -- unconfirmed creates ---------------------------------------------------------------------------
def test_business_central_create_is_looked_for_before_it_is_sent_again() -> None:
    intent = {"id": 5, "bc_id": None, "dv_id": "d9", "pending": True}
    a = one(mapping(), TO_BC, dv("d9"), couplings=[intent])
    assert isinstance(a, Insert) and a.resume and a.look_up_first and a.target_id is None
    assert a.reason == "resuming an unconfirmed create"


def test_dataverse_create_is_looked_for_by_the_id_recorded_before() -> None:
    """The record may exist (the answer was lost) and a person may have edited it since:
    it is read by that id before anything is sent (apply._resume_creates)."""
    intent = {"id": 5, "bc_id": "b9", "dv_id": "d-chosen", "pending": True}
    a = one(mapping(), TO_DV, bc("b9"), couplings=[intent])
    assert isinstance(a, Insert) and a.resume and a.look_up_first
    assert a.target_id == "d-chosen"


# -- dry runs ------------------------------------------------------------------------------------
def test_dry_run_pass_back_sees_what_the_first_pass_writes() -> None:
    m = mapping(sync_only_coupled=False)
    a = one(m, TO_BC, dv("d-new", name="Made"), first_pass={"d-new": "Made Co"})
    assert isinstance(a, Unchanged) and a.name == "Made Co" and not a.restamp


# -- the outcome rule and the plan file ------------------------------------------------------------
def test_failure_result_is_bcs_same_error_twice_rule() -> None:
    first = "Field X is wrong.  CorrelationId:  0d5a7c3e-9b1f-4e2d-8c6a-5f4e3d2c1b0a."
    again = "Field X is wrong.  CorrelationId:  1d5a7c3e-9b1f-4e2d-8c6a-5f4e3d2c1b0a."
    assert failure_result(True, first, again) == "skipped"
    assert failure_result(False, first, again) == "failed"  # the last sync succeeded
    assert failure_result(True, "Field Y is wrong.", again) == "failed"
    assert failure_result(True, None, again) == "failed"
    assert skipped_message("E").endswith("(the same error twice: the record is now Skipped)")


def test_actions_round_trip_through_the_plan_file(tmp_path) -> None:
    m = mapping(sync_only_coupled=False, conflicts={"update": "merge"})
    c = coupling(m, bc(modified=T0), dv(modified=T0))
    inputs = PlanInputs.build(m, TO_DV, source=[bc("b9"), bc(modified=T1, phone="2")],
                              couplings=[c], targets=[dv(modified=T0)], id_seed=SEED)
    actions = plan_records(inputs)
    path = tmp_path / "plan.jsonl"
    write_plan(path, plan_header("CUSTOMER", "to_dataverse"), actions)
    assert list(read_plan(path)) == actions
    assert [type(a) for a in actions] == [Insert, Update]


def test_a_plan_file_of_another_schema_is_refused(tmp_path) -> None:
    old = tmp_path / "plan.jsonl"
    old.write_text(json.dumps({"action": "insert", "source_id": "b1"}) + "\n")
    with pytest.raises(PlanFormatError, match="schema 1; this bcdv reads schema 2"):
        list(read_plan(old))
    with pytest.raises(PlanFormatError, match="unknown fields: payload"):
        action_from_row({"action": "skip", "source_id": "b1", "payload": {}})
