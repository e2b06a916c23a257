"""Staged run directories are pruned after their retention."""

from __future__ import annotations

import os
import time
from pathlib import Path

from bcdv.engine.staging import prune


def test_prune_removes_only_old_run_directories(tmp_path: Path) -> None:
    old = tmp_path / "customer" / "run-old" / "to_dataverse"
    new = tmp_path / "customer" / "run-new" / "to_dataverse"
    errors = tmp_path / "_task_errors" / "x"
    for d in (old, new, errors):
        d.mkdir(parents=True)
        (d / "plan.jsonl").write_text("{}\n")
    past = time.time() - 10 * 86400
    for f in [old / "plan.jsonl", old, old.parent]:
        os.utime(f, (past, past))
    assert prune(tmp_path, 7) == 1
    assert not old.parent.exists() and new.exists() and errors.exists()
    assert prune(tmp_path / "missing", 7) == 0
