"""``make demo``: the CUSTOMER mapping end to end, through Airflow itself.

1. Starts the local emulators (Entra ID, Business Central, Dataverse) with the demo data.
2. Runs ``bcdv_sync_customer`` with ``airflow dags test`` on an embedded SQLite metadata
   database in a project-local AIRFLOW_HOME, as a full synchronisation (BC's "Run Full
   Synch." for the mapping): every demo customer becomes a Dataverse account.
3. Changes one customer's phone number in Business Central.
4. Runs ``bcdv_sync_customer`` again as a scheduled run would (modified records only).
   Both runs synchronise every record (no failures).
5. The error-handling example: a person types a country name into a coupled account in
   Dataverse where Business Central expects its Country/Region code; the next scheduled run
   fails that record, the demo prints the error row and what to do, corrects the account and
   runs ``bcdv errors retry N``, which synchronises the record and resolves the error.
6. Prints a summary of each run, stops the emulators and exits 0 if every run did what it
   should.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

DAG_ID = "bcdv_sync_customer"


def project_root() -> Path:
    """The checkout (the directory holding dags/ and include/)."""
    for candidate in (Path.cwd(), Path(__file__).resolve().parents[2]):
        if (candidate / "dags").is_dir() and (candidate / "include" / "mappings").is_dir():
            return candidate
    raise SystemExit("run the demo from the project root (where dags/ and include/ are)")


def airflow_env(root: Path, endpoints: dict[str, Any], state_url: str,
                staging: Path) -> dict[str, str]:
    """Environment for the ``airflow`` CLI: local home, our dags and plugins, connections."""
    from bcdv.airflow.connections import local_airflow_env

    return local_airflow_env(root, root / ".airflow", endpoints, state_url, staging)


def _airflow(env: dict[str, str], *args: str, log_file: Path,
            may_fail: bool = False) -> int:
    """Run the ``airflow`` CLI; its exit code (a non-zero one ends the demo unless
    ``may_fail``: a run with failed records is a failed Airflow run)."""
    exe = Path(sys.executable).with_name("airflow")
    with log_file.open("w") as fh:
        proc = subprocess.run([str(exe), *args], env=env, stdout=fh, stderr=subprocess.STDOUT,
                              check=False)
    if proc.returncode != 0 and not may_fail:
        tail = log_file.read_text().splitlines()[-40:]
        raise SystemExit(f"airflow {' '.join(args)} failed (exit {proc.returncode}); "
                         f"log: {log_file}\n" + "\n".join(tail))
    return proc.returncode


def _print_run(title: str, jobs: list[dict[str, Any]]) -> dict[str, int]:
    totals: dict[str, int] = {}
    print(f"\n== {title}")
    for job in sorted(jobs, key=lambda j: j["started_at"]):
        if job["type"] == "coupling":
            print(f"   {'match-based coupling':<20} coupled {job['coupled']}")
            continue
        counts = {k: job[k] for k in ("inserted", "modified", "unchanged", "skipped", "failed")}
        for k, v in counts.items():
            totals[k] = totals.get(k, 0) + v
        line = " | ".join(f"{k} {v}" for k, v in counts.items())
        print(f"   {job['direction']:<20} {line}")
    print("   total                " + " | ".join(f"{k} {v}" for k, v in totals.items()))
    return totals


def _print_errors(store: Any) -> None:
    errors = store.errors("CUSTOMER")
    if not errors:
        return
    print(f"   {len(errors)} record(s) failed and are kept as error rows (the others went "
          "through); the first:")
    for err in errors[:3]:
        print(f"     #{err['id']} {err['direction']} {err.get('name') or err['source_id']}: "
              f"{err['message'][:140]}")


def _edit_as_person(dv: Any, account_id: str, values: dict[str, Any]) -> None:
    """Change a Dataverse account as the organisation's administrator: a person's edit, which
    the next run picks up (the sync's own application user's writes are echoes it ignores)."""
    from bcdv.local_emulators import emulators_module

    admin = emulators_module("seeds.dv_demo").ADMIN_OBJECT_ID
    time.sleep(1.05)  # Dataverse stamps whole seconds: newer than the last run's watermark
    dv.http.request("PATCH", dv.url("accounts", account_id), json=values,
                    headers={"Content-Type": "application/json", "If-Match": "*",
                             "CallerObjectId": admin}).raise_for_status()


def _bcdv(env: dict[str, str], *args: str) -> tuple[int, str]:
    """Run the ``bcdv`` CLI as a user would; exit code and output."""
    exe = Path(sys.executable).with_name("bcdv")
    proc = subprocess.run([str(exe), *args], env=env, capture_output=True, text=True,
                          check=False)
    return proc.returncode, proc.stderr + proc.stdout  # progress (stderr) before the result


EXPLAIN = """\
   What happened: the account's country was typed as a name, but Business Central's country
   is a Country/Region code of at most 10 characters (US, DE, ...). The CUSTOMER mapping
   copies it as is, as BC's own integration does, so the record fails (the max_length rule
   in include/mappings/customer.yaml) while the other records go through, and Airflow marks
   the run failed, which is what sends the failure alert. The error row stays until the
   record synchronises: `bcdv errors list` shows it, `bcdv errors show N` the whole message.
   How to fix it: correct the value (here: the account's country to US in Dataverse), then
   `bcdv errors retry N` (or wait for the next scheduled run, which picks up the change)."""


def _error_example(env: dict[str, str], endpoints: dict[str, Any], store: Any,
                   work: Path) -> bool:
    """Step 3: a person's edit that Business Central refuses, the error row, the fix and the
    retry. True when exactly that record failed and the retry resolved its error."""
    from bcdv.clients.dataverse import DataverseClient
    from bcdv.settings import endpoints_from_dict

    dv = DataverseClient(endpoints_from_dict(endpoints).dataverse)
    try:
        account = dv.list("accounts", filter="name eq 'Trey Research'")[0]
        _edit_as_person(dv, account["accountid"],
                        {"address1_city": "Evanston", "address1_country": "United States"})
        print("\n   a person edits the Dataverse account Trey Research: address1_city -> "
              "Evanston, address1_country -> 'United States'")
        seen = {j["id"] for j in store.jobs("CUSTOMER")}
        rc = _airflow(env, "dags", "test", DAG_ID, log_file=work / "run3.log", may_fail=True)
        third = _print_run("run 3: scheduled run (the error-handling example)",
                           [j for j in store.jobs("CUSTOMER") if j["id"] not in seen])
        if rc != 0:
            print("   Airflow marks this run failed (a record failed; the others are "
                  "committed)")
        errors = store.errors("CUSTOMER")
        for err in errors:
            field = f", field {err['field']}" if err.get("field") else ""
            print(f"   error #{err['id']}: {err['direction']} {err.get('name') or ''} "
                  f"({err['source_id']}){field}: {err['message'][:160]}")
        print(EXPLAIN)
        if len(errors) != 1:
            return False
        _edit_as_person(dv, account["accountid"], {"address1_country": "US"})
        print("\n   fixed in Dataverse: address1_country -> US")
    finally:
        dv.close()
    code, out = _bcdv(env, "errors", "retry", str(errors[0]["id"]))
    print(f"   $ bcdv errors retry {errors[0]['id']}")
    print("\n".join(f"     {line}" for line in out.strip().splitlines()))
    left = store.errors("CUSTOMER")
    print(f"   open errors now: {len(left)}" + ("" if left else
                                                 " (the retry synchronised the record)"))
    return third.get("failed", 0) == 1 and code == 0 and not left


def main() -> int:
    """Run the demo; 0 when both runs behaved as expected."""
    from bcdv.clients.business_central import BusinessCentralClient
    from bcdv.local_emulators import emulators_module
    from bcdv.settings import endpoints_from_dict
    from bcdv.state.store import StateStore

    run_emulators = emulators_module("testing").run_emulators

    root = project_root()
    work = root / ".data" / "demo"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    state_url = f"sqlite:///{work / 'state.db'}"
    started = time.monotonic()
    print("bcdv demo: CUSTOMER (Business Central customers <-> Dataverse accounts)")
    with run_emulators(work / "emulators", seed="demo") as endpoints:
        print(f"   emulators up: {endpoints['business_central']['base_url']}, "
              f"{endpoints['dataverse']['base_url']}")
        env = airflow_env(root, endpoints, state_url, work / "staging")
        _airflow(env, "db", "migrate", log_file=work / "airflow-db-migrate.log")
        store = StateStore(state_url)

        _airflow(env, "dags", "test", DAG_ID, "--conf", json.dumps({"full": True}),
                 log_file=work / "run1.log")
        first = _print_run("run 1: full synchronisation (couple matching records, create the rest)",
                           store.jobs("CUSTOMER"))
        seen = {j["id"] for j in store.jobs("CUSTOMER")}
        _print_errors(store)

        bc = BusinessCentralClient(endpoints_from_dict(endpoints).business_central)
        customer = bc.list("customers", filter="blocked eq ' '", orderby="number")[0]
        bc.update("customers", customer["id"], {"phoneNumber": "+1 425 555 0199"},
                  etag=customer["@odata.etag"])
        print(f"\n   changed customer {customer['number']} {customer['displayName']}: "
              "phoneNumber -> +1 425 555 0199")
        bc.close()

        _airflow(env, "dags", "test", DAG_ID, log_file=work / "run2.log")
        second = _print_run("run 2: scheduled run (modified records only)",
                            [j for j in store.jobs("CUSTOMER") if j["id"] not in seen])
        (work / "endpoints.json").write_text(json.dumps(endpoints))
        env["BCDV_ENDPOINTS"] = str(work / "endpoints.json")
        example_ok = _error_example(env, endpoints, store, work)
        couplings = store.coupling_count("CUSTOMER")
    print(f"\n   couplings: {couplings}; Airflow logs in {work}; "
          f"took {time.monotonic() - started:.0f} s")
    ok = (first.get("inserted", 0) > 0 and first.get("failed", 0) == 0
          and second.get("inserted", 0) == 0 and second.get("modified", 0) == 1
          and second.get("failed", 0) == 0 and example_ok)
    print("demo OK" if ok else "demo FAILED: the runs did not do what they should")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
