"""Every ``bcdv`` command against the emulators and a real state store: readable tables,
``--json`` for scripts, and the exit codes (0 ok, 1 error, 2 usage, 3 some records failed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from .demo_env import ROOT, Demo, fill_demo_state


def lines_with(out: str, text: str) -> list[str]:
    return [line for line in out.splitlines() if text in line]


# -- read-only commands on a shared demo ------------------------------------------------
def test_couplings_list(demo: Demo, bcdv: Any) -> None:
    code, out, _ = bcdv(demo, "couplings", "list", "customer")
    assert code == 0
    head, *rows = out.splitlines()
    assert head.split()[:4] == ["BUSINESS", "CENTRAL", "ID", "DATAVERSE"]
    assert len(rows) == 7 and lines_with(out, "Adatum Corporation")

    code, out, _ = bcdv(demo, "--json", "couplings", "list", "customer")
    rows = json.loads(out)
    assert code == 0 and len(rows) == 7
    assert {"bc_id", "dv_id", "name", "skipped", "to_dv_result"} <= set(rows[0])
    adatum = next(r for r in rows if r["name"] == "Adatum Corporation")

    for search in ("adatum", "ADATUM CORP", adatum["bc_id"][:8], adatum["dv_id"][:6]):
        code, out, _ = bcdv(demo, "couplings", "list", "customer", "--search", search, "--json")
        assert [r["bc_id"] for r in json.loads(out)] == [adatum["bc_id"]], search

    code, out, _ = bcdv(demo, "couplings", "list", "customer", "--skipped", "--json")
    assert [r["bc_id"] for r in json.loads(out)] == [demo.skipped["bc_id"]]
    code, out, _ = bcdv(demo, "couplings", "list", "vendor")
    assert code == 0 and "no couplings in VENDOR" in out


def test_couplings_show(demo: Demo, bcdv: Any) -> None:
    by_bc = bcdv(demo, "couplings", "show", "customer", demo.skipped["bc_id"], "--json")
    by_dv = bcdv(demo, "couplings", "show", "customer", demo.skipped["dv_id"], "--json")
    assert by_bc[0] == by_dv[0] == 0 and json.loads(by_bc[1]) == json.loads(by_dv[1])
    shown = json.loads(by_bc[1])
    assert shown["skipped"] is True and shown["to_dv_result"] == "failure"
    assert "coupled to a deleted record" in shown["errors"][0]["message"]

    code, out, _ = bcdv(demo, "couplings", "show", "customer", demo.skipped["bc_id"])
    assert code == 0 and lines_with(out, "skipped")[0].split()[-1] == "True"
    assert lines_with(out, "error #") and "attempts 2" in out

    code, _, err = bcdv(demo, "couplings", "show", "customer", "no-such-id")
    assert code == 1 and "not coupled in CUSTOMER" in err


def test_errors_list_and_show(demo: Demo, bcdv: Any) -> None:
    code, out, _ = bcdv(demo, "errors", "list")
    assert code == 0
    assert out.splitlines()[0].split() == ["#", "MAPPING", "DIRECTION", "NAME", "SOURCE", "ID",
                                           "FIELD", "VALUE", "CODE", "ATTEMPTS", "CAUSED",
                                           "BY", "LAST", "SEEN", "RESOLVED", "MESSAGE"]
    assert len(out.splitlines()) == 4 and lines_with(out, "NET45")

    code, out, _ = bcdv(demo, "--json", "errors", "list", "--mapping", "customer")
    errors = json.loads(out)
    assert code == 0 and len(errors) == 3
    conflict = next(e for e in errors if e["source_id"] == demo.skipped["bc_id"])
    assert conflict["attempts"] == 2 and conflict["direction"] == "to_dataverse"
    assert json.loads(bcdv(demo, "errors", "list", "-m", "vendor", "--json")[1]) == []

    code, out, _ = bcdv(demo, "errors", "show", str(conflict["id"]))
    assert code == 0 and "coupled to a deleted record" in out and demo.skipped["dv_id"] in out
    code, out, _ = bcdv(demo, "errors", "show", str(conflict["id"]), "--json")
    assert json.loads(out)["message"] == conflict["message"]
    assert bcdv(demo, "errors", "show", "99999")[0] == 1
    assert bcdv(demo, "errors", "show", "not-a-number")[0] == 2


def test_runs_list_and_show(demo: Demo, bcdv: Any) -> None:
    code, out, _ = bcdv(demo, "runs", "list")
    assert code == 0 and out.splitlines()[0].startswith("JOB ")
    assert len(lines_with(out, "demo__full")) == 3

    code, out, _ = bcdv(demo, "runs", "list", "--mapping", "customer", "--json")
    jobs = json.loads(out)
    assert code == 0 and len(jobs) == 7 and {j["mapping"] for j in jobs} == {"CUSTOMER"}

    code, out, _ = bcdv(demo, "runs", "show", "demo__full", "--json")
    passes = json.loads(out)
    assert code == 0 and [p["direction"] for p in passes] == [
        "coupling", "to_dataverse", "to_business_central"]
    assert passes[2]["failed"] == 2 and len(passes[2]["errors"]) == 2

    job = next(j for j in jobs if j["run_id"] == "demo__full" and j["direction"] == "to_dataverse")
    code, out, _ = bcdv(demo, "runs", "show", job["id"][:8])
    assert code == 0 and f"job {job['id']}" in out and "inserted 2" in out
    assert json.loads(bcdv(demo, "runs", "show", job["id"], "--json")[1])["id"] == job["id"]
    code, _, err = bcdv(demo, "runs", "show", "no-such-run")
    assert code == 1 and "no run or job" in err


def test_usage_errors_exit_2(demo: Demo, bcdv: Any) -> None:
    for argv in (["couplings", "list", "nosuch"], ["sync"], ["sync", "customer", "--all"],
                 ["sync", "customer", "--record", "x"], ["couplings", "restore", "customer"],
                 ["runs", "list", "-m", "nosuch"], ["no-such-command"],
                 ["sync", "customer", "--direction", "sideways"]):
        code, _, err = bcdv(demo, *argv)
        assert code == 2, argv
        assert err.strip(), argv
    assert bcdv(demo, "--help")[0] == 0


def test_mappings_and_emulators_still_there(demo: Demo, bcdv: Any) -> None:
    code, out, _ = bcdv(demo, "mappings", "list", "--json")
    assert code == 0 and "CUSTOMER" in {m["name"] for m in json.loads(out)}
    assert bcdv(demo, "emulators", "env", str(demo.root / "no-emulators-here"))[0] != 0


def test_console_entry_in_a_subprocess(demo: Demo) -> None:
    env = {**os.environ, **demo.env()}
    proc = subprocess.run([sys.executable, "-m", "bcdv.cli", "--json", "errors", "list"],
                          env=env, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0 and len(json.loads(proc.stdout)) == 3
    proc = subprocess.run([sys.executable, "-m", "bcdv.cli", "couplings", "list", "nosuch"],
                          env=env, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 2 and "unknown mapping 'nosuch'" in proc.stderr


# -- commands that change things, each on its own emulators and store -------------------
def test_sync_full_partial_failure_exit_3(fresh: Demo, bcdv: Any) -> None:
    code, out, err = bcdv(fresh, "sync", "customer", "--full", "--json")
    assert code == 3
    reports = json.loads(out)
    assert [r["direction"] for r in reports] == ["to_dataverse", "to_business_central"]
    assert reports[0]["inserted"] == 2 and reports[0]["failed"] == 0
    assert reports[1]["failed"] == 2 and len(reports[1]["records"]) >= 2
    assert "[1/2] CUSTOMER to_dataverse (full)" in err and "[2/2]" in err

    code, out, _ = bcdv(fresh, "sync", "customer", "--direction", "to_dataverse")
    assert code == 0 and "CUSTOMER to_dataverse: read" in out and "run cli__" in out


def test_sync_dry_run_writes_nothing(fresh: Demo, bcdv: Any) -> None:
    code, out, _ = bcdv(fresh, "sync", "customer", "--full", "--dry-run", "--json")
    assert code == 3 or code == 0
    assert all(r["dry_run"] for r in json.loads(out))
    assert json.loads(bcdv(fresh, "couplings", "list", "customer", "--json")[1]) == []


def test_sync_all_in_dependency_order(fresh: Demo, bcdv: Any) -> None:
    code, out, err = bcdv(fresh, "sync", "--all", "--dry-run", "--json")
    assert code == 0
    order = [r["mapping"] for r in json.loads(out)]
    assert order.index("CUSTOMER") > order.index("SALESPEOPLE")
    assert order.index("CUSTOMER") > order.index("CURRENCY")
    assert order.index("CONTACT") > order.index("CUSTOMER")
    assert order.index("CONTACT") > order.index("VENDOR")
    assert f"[{len(order)}/{len(order)}]" in err


def test_sync_one_record(fresh: Demo, bcdv: Any) -> None:
    bcdv(fresh, "sync", "customer", "--full")
    rows = json.loads(bcdv(fresh, "couplings", "list", "customer", "--json")[1])
    pair = next(r for r in rows if r["name"] == "Adatum Corporation")
    code, out, err = bcdv(fresh, "sync", "customer", "--record", pair["dv_id"], "--side",
                          "dataverse", "--json")
    report = json.loads(out)[0]
    assert code == 0 and report["mode"] == "record" and report["extracted"] == 1
    assert report["direction"] == "to_business_central" and "record" in err
    code, out, _ = bcdv(fresh, "sync", "customer", "--record", pair["bc_id"], "--side",
                        "business_central")
    assert code == 0 and "CUSTOMER to_dataverse: read 1" in out


def test_uncouple_couple_restore(fresh: Demo, bcdv: Any) -> None:
    skipped = fill_demo_state(fresh.endpoints, fresh.state_url, fresh.root / "staging")
    rows = json.loads(bcdv(fresh, "couplings", "list", "customer", "--json")[1])
    pair = next(r for r in rows if r["name"] == "Adatum Corporation")

    code, out, _ = bcdv(fresh, "couplings", "uncouple", "customer", pair["dv_id"], "--json")
    assert code == 0 and json.loads(out)["removed"] == 1
    assert bcdv(fresh, "couplings", "show", "customer", pair["bc_id"])[0] == 1
    assert bcdv(fresh, "couplings", "uncouple", "customer", pair["bc_id"])[0] == 1

    code, out, _ = bcdv(fresh, "couplings", "couple", "customer", pair["bc_id"], pair["dv_id"],
                        "--sync", "to_dataverse", "--json")
    result = json.loads(out)
    assert code == 0 and result["coupled"] and result["sync"]["failed"] == 0
    code, _, err = bcdv(fresh, "couplings", "couple", "customer", pair["bc_id"], pair["dv_id"])
    assert code == 1 and "already coupled" in err
    code, _, err = bcdv(fresh, "couplings", "couple", "customer", pair["bc_id"],
                        "00000000-0000-0000-0000-000000000000")
    assert code == 1 and "does not exist" in err

    code, out, _ = bcdv(fresh, "couplings", "restore", "customer", skipped["dv_id"])
    assert code == 0 and "restored 1 skipped coupling(s)" in out
    shown = json.loads(bcdv(fresh, "couplings", "show", "customer", skipped["bc_id"],
                            "--json")[1])
    assert shown["skipped"] is False and shown["errors"] == []
    code, out, _ = bcdv(fresh, "couplings", "restore", "customer", "--all", "--json")
    assert code == 0 and json.loads(out)["restored"] == 0


def test_errors_retry(fresh: Demo, bcdv: Any) -> None:
    skipped = fill_demo_state(fresh.endpoints, fresh.state_url, fresh.root / "staging")
    errors = json.loads(bcdv(fresh, "errors", "list", "--json")[1])
    conflict = next(e for e in errors if e["source_id"] == skipped["bc_id"])
    refused = [e for e in errors if e["direction"] == "to_business_central"]
    assert len(refused) == 2

    # BC's manual Synchronize of the skipped record: forced, so it recreates the deleted row.
    code, out, err = bcdv(fresh, "errors", "retry", str(conflict["id"]), "--json")
    assert code == 0 and json.loads(out)[0]["inserted"] == 1 and "retrying error #" in err
    shown = json.loads(bcdv(fresh, "couplings", "show", "customer", skipped["bc_id"],
                            "--json")[1])
    assert shown["skipped"] is False and shown["to_dv_result"] == "success"

    # Business Central still refuses the other two: partial failure.
    code, out, err = bcdv(fresh, "errors", "retry", *[str(e["id"]) for e in refused])
    assert code == 3 and len(lines_with(out, "CUSTOMER to_business_central")) == 2
    assert "NET45" in out and "[2/2]" in err
    assert bcdv(fresh, "errors", "retry", "424242")[0] == 1


def test_configuration_error_exit_1(fresh: Demo, bcdv: Any, monkeypatch: Any) -> None:
    fresh.endpoints_file.unlink()
    code, _, err = bcdv(fresh, "sync", "customer")
    assert code == 1 and "endpoints file not found" in err


def test_up_refuses_a_busy_port(demo: Demo, bcdv: Any) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        code, _, err = bcdv(demo, "up", "--port", str(busy.getsockname()[1]))
    assert code == 1 and "is in use" in err
