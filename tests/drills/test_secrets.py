"""Secrets drill: everything a run writes - CLI output with every logger at DEBUG, staged
files, the state store - is searched for the client secret and for bearer tokens."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
from pathlib import Path

from .harness import DrillEnv, fault_doc
from .test_crashes import LAUNCHER, cli_env

JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*")


def leaks(text: str, secret: str) -> list[str]:
    """What in ``text`` is a secret: the client secret (whole, or its long part), a JWT."""
    found = [m.group(0)[:24] + "..." for m in JWT.finditer(text)]
    for needle in {secret, secret.split("~", 1)[-1]}:
        if needle and needle in text:
            found.append("client secret")
    return found


def test_nothing_a_run_writes_holds_a_secret_or_a_token(drill: DrillEnv, tmp_path: Path) -> None:
    secret = drill.endpoints["identity"]["client_secret"]
    for i in range(3):
        drill.bc_new(f"Secret Drill BC {i}")
        drill.dv_new(f"Secret Drill DV {i}")
    drill.tick()
    # Token endpoint faults and API faults too: error paths log more than the happy path.
    drill.admin("id", "PUT", "token-faults", {"status": 503, "count": 1, "retry_after": 0})
    drill.faults({**fault_doc(0.2, 5), "retry_after": 0}, services=("bc", "dv"))
    outputs = []
    for argv in (["sync", "CUSTOMER"], ["sync", "CUSTOMER", "--full"],
                 ["sync", "CUSTOMER", "--json"], ["runs", "list"], ["errors", "list"]):
        proc = subprocess.run([sys.executable, str(LAUNCHER), *argv], timeout=180,
                              env={**cli_env(drill, tmp_path), "BCDV_DRILL_LOG": "DEBUG"},
                              capture_output=True, text=True)
        outputs.append((" ".join(argv), proc.stdout + proc.stderr))
    drill.faults(None, services=("bc", "dv"))
    scanned = {f"bcdv {cmd}": text for cmd, text in outputs}
    assert any("DEBUG" in text for text in scanned.values()), "nothing was logged at DEBUG"
    for path in drill.staging.rglob("*"):
        if path.is_file():
            scanned[str(path.relative_to(drill.staging))] = path.read_text(errors="replace")
    db = drill.state_url.removeprefix("sqlite:///")
    with sqlite3.connect(db) as conn:
        scanned["state store dump"] = "\n".join(conn.iterdump())
    found = {where: leaks(text, secret) for where, text in scanned.items()}
    found = {k: v for k, v in found.items() if v}
    size = sum(len(t) for t in scanned.values())
    print(f"\nSECRETS scanned={len(scanned)} sources, {size} characters; leaks={found}")
    assert found == {}
