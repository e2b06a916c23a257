"""Staged files of a pass: source records, the plan and the outcomes, as JSON lines.

Stages hand data to each other by reference (a directory), never through XCom, so a failed
load can retry without extracting again. Appends are flushed per line: after a crash the file
holds every outcome that was written before it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np


def _default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float) and value != value:  # NaN
        return None
    raise TypeError(f"cannot stage a {type(value).__name__}")


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]], *, append: bool = False) -> int:
    """Write rows as JSON lines; returns how many were written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("a" if append else "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, default=_default, ensure_ascii=False) + "\n")
            count += 1
        fh.flush()
        os.fsync(fh.fileno())
    return count


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """Rows of a JSON-lines file (none if it does not exist; a torn last line is ignored)."""
    if not path.exists():
        return
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.endswith("\n"):
                yield json.loads(line)


@dataclass
class PassState:
    """Everything the stages of one pass share (persisted as meta.json in the pass dir)."""

    mapping: str
    direction: str
    mode: str
    dry_run: bool
    job_id: str
    run_id: str
    directory: str
    signpost: str | None = None
    latest_modified: str | None = None
    extracted: int = 0
    retried: int = 0
    planned: dict[str, int] = field(default_factory=dict)
    # Dry runs only: couplings match-based coupling would make, as [bc_id, dv_id] pairs.
    assumed_pairs: list[list[str]] = field(default_factory=list)
    # Dry runs only: the plan file of the same run's first pass, whose writes the second
    # pass would see in a real run (see plan.first_pass_writes).
    prior_plan: str | None = None

    @property
    def path(self) -> Path:
        """The pass directory."""
        return Path(self.directory)

    @property
    def source_file(self) -> Path:
        """Extracted source records."""
        return self.path / "source.jsonl"

    @property
    def plan_file(self) -> Path:
        """Planned actions, one per source record."""
        return self.path / "plan.jsonl"

    @property
    def outcomes_file(self) -> Path:
        """Applied actions' outcomes, appended as they happen."""
        return self.path / "outcomes.jsonl"

    def save(self) -> None:
        """Persist to meta.json (atomically)."""
        self.path.mkdir(parents=True, exist_ok=True)
        tmp = self.path / "meta.json.tmp"
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.replace(self.path / "meta.json")

    @classmethod
    def load(cls, directory: str | Path) -> PassState:
        """Read a pass's meta.json."""
        return cls(**json.loads((Path(directory) / "meta.json").read_text()))


def prune(root: Path, older_than_days: float) -> int:
    """Delete run directories (``<root>/<mapping>/<run>``) untouched for that many days.

    Staged files are kept for a while to explain a run (source, plan, outcomes); a committed
    pass never needs them again. Returns how many run directories were removed.
    """
    import shutil
    import time

    cutoff = time.time() - older_than_days * 86400
    removed = 0
    if not root.is_dir():
        return 0
    for mapping_dir in (p for p in root.iterdir() if p.is_dir() and not p.name.startswith("_")):
        for run_dir in (p for p in mapping_dir.iterdir() if p.is_dir()):
            newest = max((f.stat().st_mtime for f in run_dir.rglob("*")),
                         default=run_dir.stat().st_mtime)
            if newest < cutoff:
                shutil.rmtree(run_dir, ignore_errors=True)
                removed += 1
    return removed
