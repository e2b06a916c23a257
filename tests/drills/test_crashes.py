"""Crash drill: ``bcdv sync`` SIGKILLed at each point of a pass, then rerun: the rerun
converges with no duplicate and no lost change.

Points: after extract, mid-transform, mid-load between two write batches (the emulator holds
the second batch and the drill kills the process), after a write before its coupling commits
(the engine's after_write_hook; and from outside: the write applied, the process killed before
the answer), and before the watermark commits; in either pass.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from .harness import DrillEnv, Model, check_converged, drill_mapping, write_mapping_dir

LAUNCHER = Path(__file__).with_name("crashsync.py")


def cli_env(drill: DrillEnv, root: Path, kill: str = "") -> dict[str, str]:
    endpoints = root / "endpoints.json"
    endpoints.write_text(json.dumps(drill.endpoints))
    env = {**os.environ, "BCDV_ENDPOINTS": str(endpoints), "BCDV_STATE_URL": drill.state_url,
           "BCDV_STAGING_DIR": str(drill.staging),
           "BCDV_MAPPINGS_DIR": str(write_mapping_dir(root / "mappings")),
           "BCDV_BATCH_SIZE": "2", "BCDV_DRILL_KILL": kill}
    return env


def bcdv_sync(drill: DrillEnv, root: Path, kill: str = "", wait: bool = True
              ) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, str(LAUNCHER), "sync", "CUSTOMER"],
                            env=cli_env(drill, root, kill), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    if wait:
        proc.wait(timeout=120)
    return proc


def changing_data(drill: DrillEnv) -> Model:
    """Coupled records on both sides, then new records and edits on both sides."""
    model = Model(7)
    for side in ("bc", "dv"):
        for _ in range(3):
            name = model.new_name(f"Crash {side.upper()}")
            want = {f: model.value(f) for f in Model.FIELDS}
            if side == "bc":
                drill.bc_new(name, **want)
            else:
                drill.dv_new(name, **{Model.FIELDS[f]: v for f, v in want.items()})
            model.records[name] = want
        if side == "bc":
            drill.tick()
            drill.sync(drill_mapping(), run_id="crash__setup")
    drill.tick()
    drill.sync(drill_mapping(), run_id="crash__setup2")
    bc, dv = drill.by_name("bc"), drill.by_name("dv")
    names = sorted(model.records)
    for side in ("bc", "dv"):  # new on both sides: 3 creates in each pass
        for _ in range(3):
            name = model.new_name(f"New {side.upper()}")
            want = {f: model.value(f) for f in Model.FIELDS}
            if side == "bc":
                drill.bc_new(name, **want)
            else:
                drill.dv_new(name, **{Model.FIELDS[f]: v for f, v in want.items()})
            model.records[name] = want
    for name in names[:2]:  # edited in BC
        value = model.value("phoneNumber")
        drill.bc_edit(bc[name][0]["id"], phoneNumber=value)
        model.records[name]["phoneNumber"] = value
    for name in names[-2:]:  # edited in Dataverse, by a person
        value = model.value("city")
        drill.dv_edit(dv[name][0]["accountid"], address1_city=value)
        model.records[name]["city"] = value
    drill.tick()
    return model


def converge_after(drill: DrillEnv, root: Path, model: Model) -> dict[str, Any]:
    rerun = bcdv_sync(drill, root)
    output = rerun.stdout.read() if rerun.stdout else ""
    assert rerun.returncode == 0, output
    drill.tick()
    again = bcdv_sync(drill, root)  # nothing left to do
    result = check_converged(drill, model)
    couplings = drill.state.couplings("CUSTOMER")
    result["couplings"] = len(couplings)
    result["second_rerun"] = again.stdout.read() if again.stdout else ""
    return result


def assert_converged(result: dict[str, Any], model: Model) -> None:
    assert result["duplicated"] == [], result
    assert result["missing"] == [] and result["lost"] == [], result
    assert result["unexpected"] == [], result
    assert result["couplings"] == len(model.records), result


POINTS = [
    pytest.param("after_extract:1", id="after-extract-to-dataverse"),
    pytest.param("after_extract:2", id="after-extract-to-business-central"),
    pytest.param("mid_transform:1", id="mid-transform-to-dataverse"),
    pytest.param("mid_transform:2", id="mid-transform-to-business-central"),
    pytest.param("after_write:1", id="after-write-before-coupling-dataverse-create"),
    pytest.param("after_write:4", id="after-write-before-coupling-dataverse-4th"),
    pytest.param("after_write:6", id="after-write-before-coupling-bc-1st"),
    pytest.param("after_write:9", id="after-write-before-coupling-bc-4th"),
    pytest.param("before_watermark:1", id="before-watermark-to-dataverse"),
    pytest.param("before_watermark:2", id="before-watermark-to-business-central"),
]


@pytest.mark.parametrize("kill", POINTS)
def test_sync_killed_at_a_point_converges_on_rerun(drill: DrillEnv, tmp_path: Path,
                                                   kill: str) -> None:
    model = changing_data(drill)
    crashed = bcdv_sync(drill, tmp_path, kill=kill)
    output = crashed.stdout.read() if crashed.stdout else ""
    assert crashed.returncode == -signal.SIGKILL, f"{kill} never reached:\n{output}"
    result = converge_after(drill, tmp_path, model)
    print(f"\nCRASH {kill}: records={len(model.records)} lost={len(result['lost'])} "
          f"missing={len(result['missing'])} duplicated={len(result['duplicated'])}")
    assert_converged(result, model)


HELD = [
    pytest.param("dv", "before", id="between-two-batches-dataverse"),
    pytest.param("bc", "before", id="between-two-batches-bc"),
    pytest.param("dv", "after", id="write-applied-unanswered-dataverse"),
    pytest.param("bc", "after", id="write-applied-unanswered-bc"),
]


@pytest.mark.parametrize("service, when", HELD)
def test_sync_killed_while_the_service_holds_a_write_batch_converges(
        drill: DrillEnv, tmp_path: Path, service: str, when: str) -> None:
    """The emulator stalls the 2nd write batch to ``service`` (before or after applying it);
    the drill SIGKILLs ``bcdv sync`` meanwhile, observed from outside."""
    model = changing_data(drill)
    kinds = ["batch", "bulk", "create", "update"]
    drill.admin(service, "PUT", "faults", {"hold": {"kinds": kinds, "nth": 2, "when": when}})
    proc = bcdv_sync(drill, tmp_path, wait=False)
    deadline = time.monotonic() + 60
    while drill.admin(service, "GET", "faults/injected")["held"] < 1:
        if proc.poll() is not None:
            pytest.fail(f"sync ended before its 2nd write batch: {proc.stdout.read()}")
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    drill.admin(service, "DELETE", "faults")
    drill.tick()
    result = converge_after(drill, tmp_path, model)
    print(f"\nCRASH held {service} {when}: records={len(model.records)} "
          f"lost={len(result['lost'])} missing={len(result['missing'])} "
          f"duplicated={len(result['duplicated'])}")
    assert_converged(result, model)


@pytest.mark.parametrize("kill", [
    # the 4th create is the first to Business Central (the pass to Dataverse makes 3); counted
    # as the 6th write, it was an update when two updates sorted first (a batch is 2 writes)
    pytest.param("after_create:4", id="bc-create-written-uncoupled"),
    pytest.param("after_write:9", id="bc-update-written-unstamped"),
])
def test_people_edit_between_a_killed_sync_and_its_rerun(drill: DrillEnv, tmp_path: Path,
                                                         kill: str) -> None:
    """As a user meets it: ``bcdv sync`` dies after a Business Central write and before its
    coupling; before anyone reruns it, people go on working. One edits every new customer
    the dead run made (nothing told them its answer was lost); another edits again, in
    Dataverse, the accounts the dead run was carrying to Business Central. The rerun makes
    no second record, takes none of its own writes for a person's change (no conflict) and
    every edit arrives."""
    model = changing_data(drill)
    crashed = bcdv_sync(drill, tmp_path, kill=kill)
    output = crashed.stdout.read() if crashed.stdout else ""
    assert crashed.returncode == -signal.SIGKILL, f"{kill} never reached:\n{output}"
    bc, dv = drill.by_name("bc"), drill.by_name("dv")
    made = [name for name in bc if name.startswith("New DV")]
    assert made, "the dead run made no customer"
    for name in made:
        value = model.value("phoneNumber")
        drill.bc_edit(bc[name][0]["id"], phoneNumber=value)
        model.records[name]["phoneNumber"] = value
    for name in sorted(n for n in model.records if n.startswith("Crash DV"))[-2:]:
        value = model.value("city")
        drill.dv_edit(dv[name][0]["accountid"], address1_city=value)
        model.records[name]["city"] = value
    drill.tick()
    result = converge_after(drill, tmp_path, model)
    assert_converged(result, model)
    assert drill.state.errors("CUSTOMER") == [], drill.state.errors("CUSTOMER")
