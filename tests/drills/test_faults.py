"""Fault drill: repeated bidirectional runs on changing data while every service fails 10% of
requests (429/500/502/503/504, timeouts, resets before processing, answers lost after the
write); after the faults stop and one more run, every change has arrived, nothing is
duplicated and the job log accounts for every record."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest

from .conftest import SEED
from .harness import DrillEnv, Model, check_converged, drill_mapping, fault_doc, fault_totals


def edit_round(env: DrillEnv, model: Model, rng: random.Random, creates: int,
               edits: int) -> None:
    """Faults off: new records on both sides, then edits, each record only on its home side
    (so no field ever changes on both sides between two syncs: no conflict to resolve)."""
    for side in ("bc", "dv"):
        for _ in range(creates):
            name = model.new_name(f"Drill {side.upper()}")
            want = {f: model.value(f) for f in Model.FIELDS}
            if side == "bc":
                env.bc_new(name, **want)
            else:
                env.dv_new(name, **{Model.FIELDS[f]: v for f, v in want.items()})
            model.records[name] = want
            model.ids[name] = {"home": rng.choice(["bc", "dv"])}
    present = {"bc": env.by_name("bc"), "dv": env.by_name("dv")}
    names = sorted(model.records)
    rng.shuffle(names)
    done = 0
    for name in names:
        home = model.ids[name]["home"]
        rows = present[home].get(name)
        if not rows or done >= edits:
            continue
        field = rng.choice(sorted(Model.FIELDS))
        value = model.value(field)
        if home == "bc":
            env.bc_edit(rows[0]["id"], **{field: value})
        else:
            env.dv_edit(rows[0]["accountid"], **{Model.FIELDS[field]: value})
        model.records[name][field] = value
        done += 1


def run_fault_drill(env: DrillEnv, seed: int, rounds: int, creates: int, edits: int,
                    rate: float = 0.10) -> dict[str, Any]:
    """The drill; returns its figures."""
    rng = random.Random(seed)
    model = Model(seed)
    mapping = drill_mapping()
    outcomes: Counter[str] = Counter()
    runs = 0
    for n in range(rounds):
        env.faults(None)
        edit_round(env, model, rng, creates, edits)
        env.tick()
        env.faults(fault_doc(rate, seed * 100 + n))
        env.renew()  # each run a new process, as Airflow tasks and the CLI are: new tokens
        mode = "full" if rng.random() < 0.3 else "modified"
        try:
            env.sync(mapping, mode=mode, run_id=f"drill__{n}")
            outcomes[f"{mode}: completed"] += 1
        except Exception as exc:  # expected while faults are on: the figures count them
            outcomes[f"{mode}: {type(exc).__name__}"] += 1
        runs += 1
    injected = env.injected()
    served = env.requests_served()
    env.faults(None)
    env.tick()
    final = env.sync(mapping, mode="modified", run_id="drill__final")
    runs += 1
    result = check_converged(env, model)
    couplings = env.state.couplings(mapping.name)
    jobs = env.state.jobs(mapping.name, limit=1000)
    job_ids = {j["id"] for j in jobs}
    coupled_twice = int(couplings["bc_id"].duplicated().sum() + couplings["dv_id"].duplicated()
                        .sum())
    unaccounted = [r for r in couplings.to_dict("records")
                   if not ({r.get("to_dv_job"), r.get("to_bc_job")} & job_ids)]
    figures = {
        "seed": seed, "runs": runs, "run_outcomes": dict(outcomes),
        "requests": served, "injected": dict(fault_totals(injected)),
        "injected_by_service": {s: dict(c) for s, c in injected.items()},
        "records": result["records"], "lost": len(result["lost"]) + len(result["missing"]),
        "duplicated": len(result["duplicated"]), "unexpected": len(result["unexpected"]),
        "couplings": len(couplings), "coupled_twice": coupled_twice,
        "jobs": dict(Counter(j["status"] for j in jobs)),
        "open_errors": len(env.state.errors(mapping.name)),
        "unaccounted": len(unaccounted),
        "final_run": {d: {"failed": r.failed, "inserted": r.inserted, "modified": r.modified}
                      for d, r in final.items()},
        "details": {k: result[k] for k in ("missing", "lost", "duplicated", "unexpected")},
    }
    print("\nFAULT DRILL", figures)
    return figures


def assert_clean(figures: dict[str, Any]) -> None:
    assert figures["details"]["duplicated"] == [], figures
    assert figures["details"]["missing"] == [], figures
    assert figures["details"]["lost"] == [], figures
    assert figures["details"]["unexpected"] == [], figures
    assert figures["couplings"] == figures["records"], figures
    assert figures["coupled_twice"] == 0, figures
    assert figures["unaccounted"] == 0 and figures["open_errors"] == 0, figures
    assert all(r["failed"] == 0 for r in figures["final_run"].values()), figures


def test_faults_drill_loses_and_duplicates_nothing(drill: DrillEnv,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """10% faults on all three services over 10 bidirectional runs (full and incremental);
    write batches of 2 records, so there are many writes to fail."""
    monkeypatch.setenv("BCDV_BATCH_SIZE", "2")
    figures = run_fault_drill(drill, SEED, rounds=10, creates=3, edits=4)
    assert sum(figures["injected"].values()) > 0
    assert_clean(figures)


@pytest.mark.soak
def test_faults_soak_loses_and_duplicates_nothing(drill: DrillEnv,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The same drill, longer: 30 runs on more data."""
    monkeypatch.setenv("BCDV_BATCH_SIZE", "3")
    figures = run_fault_drill(drill, SEED, rounds=30, creates=4, edits=8)
    assert_clean(figures)
