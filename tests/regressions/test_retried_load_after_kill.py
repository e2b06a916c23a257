"""A load task whose first try dies after its writes and before its stamps, retried by
Airflow with the same plan file (same job), must neither duplicate creates nor refuse its own
updates.

Found by tests/airflow/test_real_airflow.py (every load's first try SIGKILLed after its second
write): the retried Business Central load sent both creates again (two "Fourth Coffee" and two
"Tailspin Toys" customers), and every retried update was refused with the service's
optimistic-concurrency answer because the plan's etag was the one before the first try's own
write (Dataverse 412 "The version of the existing record doesn't match the RowVersion
property provided"; Business Central 409 Request_EntityChanged "Another user has already
changed the record").

Learn: Dataverse "Perform conditional operations using the Web API" (If-Match with a stale
ETag: 412 Precondition Failed); Business Central "Using ETags" in the API v2.0 reference
(a PATCH with an old @odata.etag is refused; the emulator answers 409 Request_EntityChanged as
recorded from the service). The retry here is what Airflow does with a task that has
``retries``: the same load stage over the same staged plan.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from bcdv.engine.apply import commit, load
from bcdv.engine.extract import extract
from bcdv.engine.plan import plan
from bcdv.engine.staging import PassState, read_jsonl
from bcdv.mapping.model import Direction
from engine.conftest import WriteCrash, make_mapping


def _planned(env, mapping, direction: str, run_id: str):
    state = extract(env.ctx, mapping, Direction(direction), mode="full", run_id=run_id)
    return plan(env.ctx, mapping, state)


def test_retried_business_central_creates_are_resumed_not_sent_twice(
        env, crash_after_write) -> None:
    mapping = make_mapping(sync_only_coupled=False)
    ids = [env.dv_new("Fourth Coffee", telephone1="+1 503 555 0302"),
           env.dv_new("Tailspin Toys", telephone1="+49 89 555 0307")]
    state = _planned(env, mapping, "to_business_central", "kill-1")
    with pytest.raises(WriteCrash):
        load(env.ctx, mapping, state)  # first try: both POSTs committed, then killed
    load(env.ctx, mapping, state)      # Airflow's retry: the same plan, the same job
    report = commit(env.ctx, mapping, state)
    assert report.failed == 0, report.records
    for name in ("Fourth Coffee", "Tailspin Toys"):
        rows = env.bc.list("customers", filter=f"displayName eq '{name}'")
        assert len(rows) == 1, f"{name} created {len(rows)} times"
    coupled = {env.coupling(mapping, dv_id=i)["bc_id"] for i in ids}
    assert len(coupled) == 2 and None not in coupled
    outcomes = read_jsonl(state.outcomes_file)
    assert sorted(o["result"] for o in outcomes) == ["inserted", "inserted"]
    assert all("no duplicate made" in o["message"] for o in outcomes), outcomes


@pytest.mark.parametrize("direction", ["to_dataverse", "to_business_central"])
def test_retried_updates_recognise_their_own_write(env, crash_after_write, direction) -> None:
    crash_after_write["armed"] = False
    mapping = make_mapping()
    bc_id, dv_id = env.coupled_pair(mapping, "Alpine Ski House", phoneNumber="+1 303 555 0140")
    env.tick()
    if direction == "to_dataverse":
        env.bc_edit(bc_id, phoneNumber="+1 303 555 0199")
    else:
        env.dv_edit(dv_id, telephone1="+1 303 555 0199")
    state = _planned(env, mapping, direction, "kill-2")
    crash_after_write["armed"] = True
    with pytest.raises(WriteCrash):
        load(env.ctx, mapping, state)
    load(env.ctx, mapping, state)
    report = commit(env.ctx, mapping, state)
    assert report.failed == 0, report.records
    assert report.modified == 1
    assert env.dv_get(dv_id)["telephone1"] == "+1 303 555 0199"
    assert env.bc_get(bc_id)["phoneNumber"] == "+1 303 555 0199"
    # The stamps were recorded: the next incremental run sees nothing to do either way.
    env.tick()
    again = env.sync(mapping)
    assert all(r.modified == 0 and r.failed == 0 for r in again.values()), again


def test_a_retried_update_still_refuses_a_change_someone_else_made(
        env, crash_after_write) -> None:
    """Between the killed try and the retry a person changed the same field to another
    value: the update is not forced over it; the service's refusal stands as the error."""
    crash_after_write["armed"] = False
    mapping = make_mapping()
    bc_id, dv_id = env.coupled_pair(mapping, "Trey Research", phoneNumber="+1 425 555 0100")
    env.tick()
    env.bc_edit(bc_id, phoneNumber="+1 425 555 0101")
    state = _planned(env, mapping, "to_dataverse", "kill-3")
    crash_after_write["armed"] = True
    with pytest.raises(WriteCrash):
        load(env.ctx, mapping, state)
    env.dv_edit(dv_id, telephone1="+1 425 555 0999")  # a person, after our write
    load(env.ctx, mapping, state)
    report = commit(env.ctx, mapping, state)
    assert report.failed == 1
    assert "version of the existing record" in report.records[0].message
    assert env.dv_get(dv_id)["telephone1"] == "+1 425 555 0999"


def test_retried_full_sync_of_the_shipped_customer_mapping_on_the_demo_data(
        tmp_path, crash_after_write) -> None:
    """The real-Airflow case in one process: the shipped mappings, the demo companies (owner
    and currency lookups written as ``nav@odata.bind``, read back as ``_nav_value``, payment
    terms), every load's first try killed after a write, then retried with the same plan."""
    from bcdv.engine import SyncContext, sync_mapping
    from bcdv.mapping import load_mappings
    from bcdv.service import stages
    from bcdv.settings import endpoints_from_dict
    from bcdv_emulators.testing import run_emulators

    root = Path(__file__).resolve().parents[2]
    crash_after_write["armed"] = False
    with run_emulators(tmp_path / "emulators", seed="demo") as endpoints:
        mappings = load_mappings(root / "include" / "mappings")
        ctx = SyncContext.create(endpoints_from_dict(endpoints), f"sqlite:///{tmp_path}/s.db",
                                 tmp_path / "staging", mappings)
        for name in ("SALESPEOPLE", "CURRENCY"):
            sync_mapping(ctx, mappings[name], mode="full", run_id="setup")
        customer = mappings["CUSTOMER"]
        bc, dv = ctx.business_central.client, ctx.dataverse.client
        before = (len(bc.list("customers")), len(dv.list("accounts")))
        created = 0
        # The stages of bcdv_full_sync's CUSTOMER group, as its tasks call them.
        with ctx.state.mapping_lock(customer.name, "full"):
            stages.couple_stage(ctx, customer, "full")
            for direction in ("to_dataverse", "to_business_central"):
                state = stages.extract_stage(ctx, customer, direction, run_id="full", full=True)
                state = stages.plan_stage(ctx, customer, state.directory)
                writes = state.planned.get("insert", 0) + state.planned.get("update", 0)
                assert writes, (direction, state.planned)
                crash_after_write["armed"] = True
                with pytest.raises(WriteCrash):
                    stages.load_stage(ctx, customer, state.directory)
                stages.load_stage(ctx, customer, state.directory)
                [report] = stages.commit_stage(ctx, customer, [state.directory], "full",
                                               release=False)
                assert report.failed == 0, [(r.name, r.message) for r in report.records]
                created += report.inserted
        names = sorted(r["displayName"] for r in bc.list("customers")) + sorted(
            r["name"] for r in dv.list("accounts"))
        assert len(names) == sum(before) + created, names
        again = {r.direction: r for r in sync_mapping(ctx, customer, run_id="next")}
        changed = {d: [(o["name"], o["changes"]) for o in read_jsonl(PassState.load(str(
            tmp_path / "staging" / "customer" / "next" / d)).outcomes_file)
            if o["action"] != "unchanged"] for d in again}
        assert all(r.failed == 0 and r.modified == 0 for r in again.values()), changed
