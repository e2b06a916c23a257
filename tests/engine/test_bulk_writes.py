"""Dataverse creates go through CreateMultiple (issue 14), one request per 1,000 rows, with
the ids the engine chose in the targets.

Learn, "Use bulk operation messages" (power-apps/developer/data-platform/bulk-operations):
CreateMultiple creates records of one table in one request and answers with their ``Ids``;
on standard tables one bad target fails the whole request. The engine does not read the new
rows back: the first read that meets a created row settles its baseline
(engine/created.py). It sends a refused request again as single upserts so only the bad row
fails with the service's message, and treats a lost answer the same way (an upsert by our id
of a row the lost request made updates it: no duplicate). Updates keep If-Match per record.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from bcdv.clients.odata import parse_datetime
from bcdv.engine.created import UNREAD
from bcdv.engine.staging import read_jsonl
from bcdv.engine.transform import side_fields
from bcdv.engine.values import row_hash

from .conftest import Env, make_mapping

NAMES = ["Alder Foods", "Birch Labs", "Cedar Systems", "Delta Traders"]


def _accounts(env: Env) -> list[dict[str, Any]]:
    return list(env.admin("dv", "GET", "records/accounts")["value"])


def _kinds(env: Env) -> dict[str, Any]:
    return dict(env.admin("dv", "GET", "stats"))


def test_a_full_pass_creates_through_create_multiple_and_stamps_what_dataverse_stored(
        env: Env) -> None:
    mapping = make_mapping()
    for name in NAMES:
        env.bc_new(name, city="Oslo", phoneNumber="+47 555 0100")
    env.admin("dv", "DELETE", "stats")
    report = env.run(mapping, "to_dataverse", mode="full")
    assert report.inserted == len(NAMES) and report.failed == 0, report.records
    stats = _kinds(env)
    assert stats["by_kind"]["CreateMultiple"]["requests"] == 1
    assert stats["by_kind"]["CreateMultiple"]["rows_written"] == len(NAMES)
    assert "patch" not in stats["by_kind"] and "post" not in stats["by_kind"]
    assert set(stats["batch_ops"]) <= {"GET"}  # nothing written by $batch
    assert stats["requests"] <= 1 + 1  # CreateMultiple and the lookups: no read-back
    rows = {r["accountid"]: r for r in _accounts(env)}
    assert len(rows) == len(NAMES)
    for coupling in env.state.couplings(mapping.name).to_dict("records"):
        assert coupling["dv_id"] in rows and coupling["pending"] is False
        # No baseline yet: the first read that meets the row takes it (engine/created.py).
        assert coupling["dv_hash"] == UNREAD and pd.isna(coupling["dv_modified"])
    back = env.run(mapping, "to_business_central")
    assert (back.inserted, back.modified, back.failed) == (0, 0, 0), back.records


def test_a_refused_create_multiple_fails_only_its_bad_row(env: Env) -> None:
    mapping = make_mapping()
    for name in [*NAMES, "Refused Ltd"]:
        env.bc_new(name, city="Oslo")
    env.admin("dv", "PUT", "faults", {"rules": [{
        "entity": "accounts", "match": {"name": "Refused Ltd"}, "status": 400,
        "code": "0x80040265", "message": "Accounts named like this are refused (test).",
        "methods": ["POST", "PATCH"]}]})
    env.admin("dv", "DELETE", "stats")
    report = env.run(mapping, "to_dataverse", mode="full")
    assert (report.inserted, report.failed) == (len(NAMES), 1), report.records
    stats = _kinds(env)
    assert stats["by_kind"]["CreateMultiple"]["errors"] == 1  # all-or-nothing: rolled back
    [error] = env.state.errors(mapping.name)
    assert error["code"] == "0x80040265" and error["name"] == "Refused Ltd"
    assert sorted(r["name"] for r in _accounts(env)) == sorted(NAMES)
    refused = next(r for r in report.records if r.name == "Refused Ltd")
    assert env.coupling(mapping, bc_id=refused.source_id) is None  # the intent is void


def test_a_lost_create_multiple_answer_makes_no_duplicate(env: Env) -> None:
    mapping = make_mapping()
    for name in NAMES:
        env.bc_new(name, city="Oslo")
    env.admin("dv", "PUT", "faults", {"lost_response_count": 1, "lost_kinds": ["bulk"]})
    report = env.run(mapping, "to_dataverse", mode="full")
    injected = env.admin("dv", "GET", "faults/injected")["injected"]
    assert injected.get("lost_response:bulk") == 1
    assert report.inserted == len(NAMES) and report.failed == 0, report.records
    assert all("no duplicate made" in (r.message or "") for r in report.records)
    assert sorted(r["name"] for r in _accounts(env)) == sorted(NAMES)
    assert env.state.coupling_count(mapping.name) == len(NAMES)


def test_a_full_sync_reads_business_central_once_for_matching_and_its_pass(env: Env) -> None:
    """Match-based coupling and the first pass of a full synchronisation share one read
    of the Business Central records (issue 14): the matching account is coupled, the rest
    are created, and the customers are read with one request."""
    mapping = make_mapping(coupling={"match": [{"priority": 1, "fields": ["displayName"]}],
                                     "create_new_if_no_match": True})
    for name in NAMES:
        env.bc_new(name, city="Oslo")
    existing = env.dv_new(NAMES[0], address1_city="Bergen")
    env.admin("bc", "DELETE", "requests")
    reports = env.sync(mapping, mode="full")
    counts = env.admin("bc", "GET", "requests")["requests"]
    reads = sum(r["count"] for r in counts
                if r["method"] == "GET" and r["entity"] == "customers")
    assert reads == 1, counts
    forward = reports["to_dataverse"]
    assert (forward.inserted, forward.modified, forward.failed) == (len(NAMES) - 1, 1, 0)
    coupled = env.coupling(mapping, dv_id=existing)
    assert coupled is not None and env.dv_get(existing)["address1_city"] == "Oslo"
    assert len(_accounts(env)) == len(NAMES)


def test_an_incremental_pass_does_not_plan_what_the_pass_back_just_wrote(env: Env) -> None:
    """The Business Central customers the pass back of a full synchronisation created sit
    after the forward watermark; the next incremental pass reads them but recognises them
    as the synchronisation's own writes (hash and baseline as stamped) and plans only the
    record a person changed (issue 14). They still count as unchanged, as before."""
    from bcdv.engine.actions import read_plan
    from bcdv.engine.staging import PassState

    mapping = make_mapping(sync_only_coupled=False)
    customer = env.bc_new("Edited Later", city="Oslo")
    for name in NAMES:
        env.dv_new(name, address1_city="Bergen")
    full = env.sync(mapping, mode="full")
    assert full["to_business_central"].inserted == len(NAMES)
    env.tick()
    env.bc_edit(customer["id"], city="Trondheim")
    forward = env.sync(mapping)["to_dataverse"]
    assert (forward.modified, forward.unchanged, forward.failed) == (1, len(NAMES), 0)
    [meta] = [p for p in env.ctx.staging.rglob("to_dataverse/meta.json")
              if forward.job_id in p.read_text()]
    state = PassState.load(meta.parent)
    assert state.echoes == len(NAMES) and state.extracted == len(NAMES) + 1
    assert [a.name for a in read_plan(state.plan_file)] == ["Edited Later"]
    assert env.dv_get(env.coupling(mapping, bc_id=customer["id"])["dv_id"])[
        "address1_city"] == "Trondheim"


def _generated_pass(env: Env, count: int, rtt_ms: int = 300) -> Any:
    """A full pass of ``count`` generated customers (several CreateMultiple requests) with a
    round trip long enough that requests sent together are in flight together."""
    mapping = make_mapping()
    env.admin("bc", "POST", "generate", {"entity": "customers", "count": count})
    env.admin("dv", "PUT", "latency", {"rtt_ms": rtt_ms})
    env.admin("dv", "DELETE", "stats")
    report = env.run(mapping, "to_dataverse", mode="full")
    assert report.inserted == count and report.failed == 0, report.records[:3]
    assert len(_accounts(env)) == count  # every record once, none twice
    return _kinds(env)


def test_create_multiple_requests_go_several_at_once(env: Env) -> None:
    """Learn (power-apps/developer/data-platform/api-limits): Dataverse serves up to 52
    concurrent requests per user; a pass sends its CreateMultiple requests a few at once."""
    # A round trip of 2 s: on a loaded CI machine, building and parsing 1,000-row bodies
    # must not outlast it, or requests sent together no longer overlap at the service.
    stats = _generated_pass(env, 2500, rtt_ms=2000)
    assert stats["by_kind"]["CreateMultiple"]["requests"] == 3
    assert stats["peak_delaying"] >= 2


def test_throttled_create_multiple_requests_back_off(env: Env) -> None:
    """A throttled request is answered 429 with Retry-After (Learn: api-limits, service
    protection limits); it is retried after that wait, none is lost or duplicated, and the
    pass sends fewer requests at once from then on."""
    env.admin("dv", "PUT", "faults", {"next": [429, 429], "retry_after": 1,
                                      "kinds": ["bulk"]})
    stats = _generated_pass(env, 2500)
    assert stats["throttled_429"] == 2
    assert stats["by_kind"]["CreateMultiple"]["requests"] == 3 + 2
    assert env.ctx.dataverse.pace.workers < 4


def test_created_accounts_take_the_baseline_the_service_stored_from_the_first_read(
        tmp_path: Path) -> None:
    """The shipped CUSTOMER mapping on the demo data writes owner and currency lookups as
    ``nav@odata.bind``, which Dataverse reads back as ``_nav_value``, and the service fills
    what a create does not send: a user-owned record created without an owner is owned by
    the calling user (the emulator does as Dataverse does). So the values sent are not the
    baseline; the created rows are not read back, and the first read that meets them takes
    the row as stored (``modifiedon`` equal to ``createdon``: nobody changed it since),
    owner included. Here that read is a full synchronisation's pass back: it finds nothing
    to carry, and the pass after a change in Business Central updates the account without
    a conflict.
    Were the values sent taken as the baseline, the pass back would take the engine's own
    create for a person's change."""
    from bcdv.engine import SyncContext, sync_mapping
    from bcdv.mapping import load_mappings
    from bcdv.settings import endpoints_from_dict
    from bcdv_emulators.testing import run_emulators

    root = Path(__file__).resolve().parents[2]
    with run_emulators(tmp_path / "emulators", seed="demo") as endpoints:
        mappings = load_mappings(root / "include" / "mappings")
        ctx = SyncContext.create(endpoints_from_dict(endpoints), f"sqlite:///{tmp_path}/s.db",
                                 tmp_path / "staging", mappings)
        try:
            for name in ("SALESPEOPLE", "CURRENCY"):
                sync_mapping(ctx, mappings[name], mode="full", run_id="setup")
            customer = mappings["CUSTOMER"]
            before = {r["accountid"] for r in ctx.dataverse.client.list("accounts")}
            # A full synchronisation: the pass to Dataverse creates the accounts, the pass
            # back (not forced) reads every account, ours included.
            report, back = sync_mapping(ctx, customer, mode="full", run_id="full")
            assert report.inserted > 0 and report.failed == 0, report.records[:3]
            assert back.failed == 0 and back.conflicts == 0, back.records[:3]
            fields = side_fields(customer, "dataverse")
            made = [c for c in ctx.state.couplings(customer.name).to_dict("records")
                    if c["dv_id"] not in before]
            assert len(made) == report.inserted
            staged = tmp_path / "staging" / "customer" / "full"
            sent = {a["source_id"]: a for a in read_jsonl(staged / "to_dataverse" / "plan.jsonl")
                    if a.get("action") == "insert"}
            owned_by_default = [c for c in made if "ownerid@odata.bind" not in
                                sent[c["bc_id"]]["payload"]]
            assert owned_by_default  # some demo customers have no salesperson
            ours = {c["dv_id"] for c in made}
            planned = {a["source_id"]: a for a in read_jsonl(
                staged / "to_business_central" / "plan.jsonl") if a.get("source_id") in ours}
            assert set(planned) == ours
            # Unchanged since the last synchronization: not compared as changed rows (with
            # the values sent as baseline, every one would have been, owner and all).
            assert {a["action"] for a in planned.values()} == {"unchanged"}
            assert {a["reason"] for a in planned.values()} == {
                "no mapped field changed since the last synchronization"}

            # A change in Business Central: the account is compared with the row as stored
            # (owner filled by the service), not with what was sent: an update, no conflict.
            bc_id = owned_by_default[0]["bc_id"]
            bc = ctx.business_central.client
            current = bc.get("customers", bc_id)
            assert current is not None
            bc.update("customers", bc_id, {"phoneNumber": "+47 555 0199"},
                      etag=current["@odata.etag"])
            again, _ = sync_mapping(ctx, customer, mode="modified", run_id="again")
            assert (again.modified, again.conflicts, again.failed) == (1, 0, 0), \
                again.records[:3]
            rows = {r["accountid"]: r for r in ctx.dataverse.client.list("accounts")}
            settled = next(c for c in ctx.state.couplings(customer.name).to_dict("records")
                           if c["bc_id"] == bc_id)
            row = rows[settled["dv_id"]]
            assert row["telephone1"] == "+47 555 0199"
            assert settled["dv_hash"] == row_hash(row, fields)
            assert settled["dv_modified"] == parse_datetime(row["modifiedon"])
        finally:
            ctx.close()
