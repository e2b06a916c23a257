"""As a user meets it (issue 14, ``engine/created.py``): a full sync's CreateMultiple answers
with ids only and the rows it made are not read back; the ``bcdv`` CLI's next runs settle
each one the first time a read meets it. Driven through the CLI against the emulators, with
names the happy path did not pick, people editing the new accounts (impersonated) before
any read, and every result checked over the APIs.

Learn: bulk-operations ("CreateMultiple ... returns the ids of the created records"); the
Dataverse emulator's ``createdon`` and ``modifiedon`` are whole seconds, as the service's.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .harness import DrillEnv
from .test_crashes import cli_env

NAMES = ["Café O'Brien & Søn", "  Leading spaces Ltd", "Ünïcode ☃ Snowman GmbH",
         "A" * 100, "Plain Customer", "Zero-phone Inc."]


def bcdv(drill: DrillEnv, root: Path, *args: str) -> str:
    """``bcdv sync CUSTOMER <args>``, the console script, as a user runs it."""
    proc = subprocess.run([str(Path(sys.executable).with_name("bcdv")), "sync", "CUSTOMER",
                           *args], env=cli_env(drill, root), capture_output=True, text=True,
                          timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_people_edit_the_accounts_a_full_sync_just_created(drill: DrillEnv,
                                                            tmp_path: Path) -> None:
    made = {name: drill.bc_new(name, phoneNumber="", city="")["id"] for name in NAMES}
    drill.tick()
    bcdv(drill, tmp_path, "--full")
    # Made by CreateMultiple, not read back: every coupling waits for a read to settle it.
    couplings = drill.state.couplings("CUSTOMER")
    assert len(couplings) == len(NAMES)
    assert set(couplings["dv_hash"]) == {"created"}
    assert couplings["dv_modified"].isna().all()
    accounts = {str(r["name"]): r for r in drill.rows("dv")}
    stored = {str(r["displayName"]): r for r in drill.rows("bc")}
    assert set(accounts) == set(stored)  # as BC stored each name (it may trim)

    # Before anything reads them: a person moves two new accounts to another city; a BC
    # user gives a third customer a phone number.
    person = [stored[NAMES[0]]["displayName"], stored[NAMES[2]]["displayName"]]
    for name in person:
        drill.dv_edit(accounts[name]["accountid"], address1_city="Person's Town")
    drill.bc_edit(made[NAMES[4]], phoneNumber="+1 425 555 0142")
    drill.tick()

    out = bcdv(drill, tmp_path)  # the scheduled run: both directions
    bc = {str(r["displayName"]): r for r in drill.rows("bc")}
    dv = {str(r["name"]): r for r in drill.rows("dv")}
    for name in person:  # the person's edit went to Business Central
        assert bc[name]["city"] == "Person's Town", out
        assert dv[name]["address1_city"] == "Person's Town", out
    assert dv[stored[NAMES[4]]["displayName"]]["telephone1"] == "+1 425 555 0142", out
    untouched = [stored[n]["displayName"] for n in (NAMES[1], NAMES[3], NAMES[5])]
    for name in untouched:  # nobody changed these: nothing was written to them
        assert bc[name]["lastModifiedDateTime"] == stored[name]["lastModifiedDateTime"], out
        assert dv[name]["modifiedon"] == accounts[name]["modifiedon"], out
    assert drill.state.errors("CUSTOMER") == []

    # A full synchronisation afterwards keeps the person's edits and writes nothing new.
    drill.tick()
    again = bcdv(drill, tmp_path, "--full")
    bc = {str(r["displayName"]): r for r in drill.rows("bc")}
    dv = {str(r["name"]): r for r in drill.rows("dv")}
    for name in person:
        assert bc[name]["city"] == dv[name]["address1_city"] == "Person's Town", again
    assert len(bc) == len(dv) == len(NAMES)
    assert len(drill.state.couplings("CUSTOMER")) == len(NAMES)
    assert drill.state.errors("CUSTOMER") == []
