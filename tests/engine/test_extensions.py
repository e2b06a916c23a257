"""bcdv's extensions beyond Business Central's engine (issue 5)."""

from __future__ import annotations

import threading
import time

import pytest

from bcdv.engine.runner import sync_mapping
from bcdv.errors import SafetyStopError

from .conftest import WriteCrash, make_mapping

TO_BC_ONLY = {"business_central": "website", "dataverse": "websiteurl",
              "direction": "to_business_central"}


def test_merge_keeps_different_field_changes_from_both_sides(env) -> None:
    mapping = make_mapping(conflicts={"update": "merge"})
    bc_id, dv_id = env.coupled_pair(mapping, phoneNumber="start", city="Start")
    env.sync(mapping)
    env.bc_edit(bc_id, phoneNumber="bc phone")
    env.dv_edit(dv_id, address1_city="DV City")
    reports = env.sync(mapping)
    assert reports["to_dataverse"].failed == 0 and reports["to_dataverse"].modified == 1
    assert reports["to_business_central"].modified == 1
    assert env.dv_get(dv_id)["telephone1"] == "bc phone"
    assert env.dv_get(dv_id)["address1_city"] == "DV City"
    assert env.bc_get(bc_id)["phoneNumber"] == "bc phone"
    assert env.bc_get(bc_id)["city"] == "DV City"
    after = env.sync(mapping)
    assert all(r.modified == 0 and r.failed == 0 for r in after.values())


def test_merge_still_fails_when_the_same_field_changed_on_both_sides(env) -> None:
    mapping = make_mapping(conflicts={"update": "merge"})
    bc_id, dv_id = env.coupled_pair(mapping, phoneNumber="start")
    env.sync(mapping)
    env.bc_edit(bc_id, phoneNumber="bc")
    env.dv_edit(dv_id, telephone1="dv")
    report = env.sync(mapping)["to_dataverse"]
    assert report.failed == 1 and "telephone1" in report.records[0].message
    assert env.dv_get(dv_id)["telephone1"] == "dv" and env.bc_get(bc_id)["phoneNumber"] == "bc"


def test_exactly_once_dataverse_create_after_crash(env, crash_after_write) -> None:
    mapping = make_mapping(sync_only_coupled=False)
    customer = env.bc_new("Crash Test Dataverse")
    with pytest.raises(WriteCrash):
        env.sync(mapping, run_id="attempt-1")
    assert len(env.dv.list("accounts", filter="name eq 'Crash Test Dataverse'")) == 1
    reports = env.sync(mapping, run_id="attempt-2")
    assert reports["to_dataverse"].failed == 0
    rows = env.dv.list("accounts", filter="name eq 'Crash Test Dataverse'")
    assert len(rows) == 1
    assert env.coupling(mapping, bc_id=customer["id"])["dv_id"] == rows[0]["accountid"]


def test_exactly_once_business_central_create_after_crash(env, crash_after_write) -> None:
    mapping = make_mapping(sync_only_coupled=False)
    dv_id = env.dv_new("Crash Test BC")
    with pytest.raises(WriteCrash):
        env.run(mapping, "to_business_central", mode="full", run_id="attempt-1")
    assert len(env.bc.list("customers", filter="displayName eq 'Crash Test BC'")) == 1
    report = env.run(mapping, "to_business_central", mode="full", run_id="attempt-2")
    assert report.failed == 0
    rows = env.bc.list("customers", filter="displayName eq 'Crash Test BC'")
    assert len(rows) == 1, "the recovery lookup must find the record the crashed run made"
    assert env.coupling(mapping, dv_id=dv_id)["bc_id"] == rows[0]["id"]


def test_retried_load_stage_does_not_write_twice(env) -> None:
    from bcdv.engine.apply import commit, load
    from bcdv.engine.extract import extract
    from bcdv.engine.plan import plan
    from bcdv.mapping.model import Direction

    mapping = make_mapping(sync_only_coupled=False)
    for i in range(3):
        env.bc_new(f"Stage Retry {i}")
    state = extract(env.ctx, mapping, Direction.TO_DATAVERSE, run_id="retry-run")
    plan(env.ctx, mapping, state)
    load(env.ctx, mapping, state)
    before = env.admin("dv", "GET", "requests")
    load(env.ctx, mapping, state)  # Airflow retried the task: everything is already done
    after = env.admin("dv", "GET", "requests")
    writes = lambda c: sum(v for k, v in _flat(c).items() if "PATCH" in k or "POST" in k)  # noqa: E731
    assert writes(after) == writes(before)
    report = commit(env.ctx, mapping, state)
    assert report.inserted == 3
    assert len(env.dv.list("accounts", filter="startswith(name,'Stage Retry')")) == 3


def _flat(counters, prefix=""):
    out = {}
    if isinstance(counters, dict):
        for k, v in counters.items():
            out.update(_flat(v, f"{prefix}/{k}"))
    elif isinstance(counters, list):
        for item in counters:
            if isinstance(item, dict) and "count" in item:
                out["/".join(str(item.get(k, "")) for k in ("method", "entity", "status"))] = \
                    item["count"]
    elif isinstance(counters, (int, float)):
        out[prefix] = counters
    return out


def test_no_echo_after_bidirectional_runs(env) -> None:
    mapping = make_mapping(sync_only_coupled=False, fields=[
        *make_mapping().model_dump(mode="json")["fields"], TO_BC_ONLY])
    env.bc_new("Echo BC", phoneNumber="1")
    env.dv_new("Echo DV", telephone1="2", websiteurl="www.echo.example")
    first = env.sync(mapping)
    assert first["to_dataverse"].inserted == 1 and first["to_business_central"].inserted == 1
    env.sync(mapping)
    third = env.sync(mapping)
    assert all(r.inserted == r.modified == r.failed == r.skipped == 0 for r in third.values())


def test_lookups_resolve_through_other_mappings(ctx, mappings) -> None:
    """CUSTOMER's currency and salesperson lookups use CURRENCY's and SALESPEOPLE's couplings."""
    bc = ctx.business_central.client
    for name in ("SALESPEOPLE", "CURRENCY", "CUSTOMER"):
        reports = sync_mapping(ctx, mappings[name], mode="full")
        assert all(r.direction for r in reports)
    customers = {c["number"]: c for c in bc.list("customers")}
    coupled = ctx.state.couplings("CUSTOMER")
    checked = 0
    for _, row in coupled.iterrows():
        customer = next((c for c in customers.values() if c["id"] == row["bc_id"]), None)
        if customer is None or customer["currencyCode"] in ("", "USD"):
            continue
        account = ctx.dataverse.client.get("accounts", row["dv_id"])
        currency = ctx.state.couplings("CURRENCY", dv_ids=[account["_transactioncurrencyid_value"]])
        assert not currency.empty, customer["currencyCode"]
        bc_currency = bc.get("currencies", currency.at[0, "bc_id"])
        assert bc_currency["code"] == customer["currencyCode"]
        checked += 1
    assert checked > 0


def test_dry_run_writes_nothing_and_matches_the_next_real_run(env) -> None:
    mapping = make_mapping(sync_only_coupled=False,
                           coupling={"match": [{"fields": ["displayName"]}]})
    env.bc_new("Dry A")
    env.bc_new("Dry B", phoneNumber="9")
    env.dv_new("Dry B")
    dry = env.sync(mapping, mode="full", dry_run=True)["to_dataverse"]
    assert env.state.coupling_count("CUSTOMER") == 0
    assert len(env.dv.list("accounts")) == 1
    real = env.sync(mapping, mode="full")["to_dataverse"]
    assert (dry.inserted, dry.modified, dry.unchanged) == (real.inserted, real.modified,
                                                           real.unchanged) == (1, 1, 0)


def test_two_concurrent_runs_of_a_mapping_never_both_write(env) -> None:
    mapping = make_mapping(sync_only_coupled=False)
    for i in range(5):
        env.bc_new(f"Concurrent {i}")
    results: dict[str, object] = {}

    def run(name: str) -> None:
        try:
            results[name] = env.sync(mapping, run_id=name)
        except SafetyStopError as exc:
            results[name] = exc

    with env.state.mapping_lock("CUSTOMER", "holder"):
        threads = [threading.Thread(target=run, args=(n,)) for n in ("a", "b")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert all(isinstance(v, SafetyStopError) for v in results.values())
    assert "holder" in str(results["a"])
    # Released: a run goes through, and exactly one account per customer exists.
    env.sync(mapping, run_id="after")
    names = [a["name"] for a in env.dv.list("accounts")]
    assert sorted(names) == [f"Concurrent {i}" for i in range(5)]


def test_a_crash_while_the_next_batches_are_in_flight_converges(env, monkeypatch) -> None:
    """Business Central batches of creates go up to five at once (apply._Writer, Learn:
    dynamics-rate-limits) and each is stamped once answered: the run dies stamping the
    first batch once the other two have landed, so three batches of creates are left
    unstamped. The rerun recovers all of them by their values, each once."""
    from bcdv.engine import apply

    monkeypatch.setenv("BCDV_BATCH_SIZE", "2")
    mapping = make_mapping(sync_only_coupled=False)
    names = [f"Two In Flight {i}" for i in range(5)]
    ids = [env.dv_new(n) for n in names]

    def made() -> list[dict]:
        return env.bc.list("customers", filter="startswith(displayName,'Two In Flight')")

    def crash(action: dict) -> None:
        deadline = time.monotonic() + 10
        while len(made()) < 5 and time.monotonic() < deadline:
            time.sleep(0.05)  # the later batches are in flight: let them land
        raise WriteCrash(action["source_id"])

    monkeypatch.setattr(apply, "after_write_hook", crash)
    with pytest.raises(WriteCrash):
        env.run(mapping, "to_business_central", mode="full", run_id="attempt-1")
    assert len(made()) == 5  # the first batch, and the two sent before it was stamped
    monkeypatch.setattr(apply, "after_write_hook", None)
    report = env.run(mapping, "to_business_central", mode="full", run_id="attempt-2")
    assert report.failed == 0
    rows = made()
    assert sorted(r["displayName"] for r in rows) == names
    for dv_id in ids:
        assert env.coupling(mapping, dv_id=dv_id)["bc_id"] in {r["id"] for r in rows}


def test_business_central_creates_go_five_batches_at_once(env, monkeypatch) -> None:
    """Business Central processes five requests of a user at once and queues the rest
    (Learn: dynamics-rate-limits), and runs a ``$batch``'s operations one after the other:
    a full pass of 700 accounts into Business Central keeps five batches of 100 creates in
    flight, never more, and every account arrives once, coupled."""
    import threading

    env.admin("dv", "POST", "generate", {"entity": "accounts", "count": 700})
    env.admin("bc", "PUT", "latency", {"rtt_ms": 300})
    adapter = env.ctx.business_central
    write_many = adapter.write_many
    lock = threading.Lock()
    now = {"in": 0, "peak": 0}

    def counted(*args, **kwargs):
        with lock:
            now["in"] += 1
            now["peak"] = max(now["peak"], now["in"])
        try:
            return write_many(*args, **kwargs)
        finally:
            with lock:
                now["in"] -= 1

    monkeypatch.setattr(adapter, "write_many", counted)
    mapping = make_mapping(sync_only_coupled=False)
    report = env.run(mapping, "to_business_central", mode="full")
    assert report.inserted == 700 and report.failed == 0, report.records[:3]
    assert now["peak"] == 5
    rows = env.admin("bc", "GET", "records/customers")["value"]
    assert len(rows) == len({r["displayName"] for r in rows}) == 700
    assert all(env.coupling(mapping, bc_id=r["id"])["dv_id"] for r in rows)
