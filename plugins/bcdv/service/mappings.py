"""A mapping file reset to its shipped default (BC's "Use Default Synchronization Setup"),
as the pages do it: what would change first, then the reset, which keeps a copy of the
user's file.

The copy goes to ``backups/`` under the mappings directory, named by the file and the time
(``customer.20261206T021500Z.yaml``): the loader reads only the directory's own ``*.yaml``,
so a backup is never loaded as a mapping. The reset holds the mapping's run lock, so it never
changes the file under a running sync of that mapping.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bcdv.errors import BcdvError, MappingError
from bcdv.mapping.commands import mapping_diff
from bcdv.mapping.loader import DEFAULTS_DIR, mapping_files, parse_mapping_file
from bcdv.mapping.model import TableMapping
from bcdv.service.locks import new_run_id, run_lock
from bcdv.state.store import StateStore

BACKUPS = "backups"


@dataclass(frozen=True)
class ResetPlan:
    """What resetting a mapping changes: its file, the shipped file, the settings reverted
    (``path``, ``local``, ``shipped``) and the state of the local file."""

    name: str
    file: Path
    shipped: Path
    status: str  # identical, changed, invalid, missing locally
    changes: list[dict[str, Any]] = field(default_factory=list)
    local_file: Path | None = None


@dataclass(frozen=True)
class ResetResult:
    """A reset done: the plan it carried out and where the user's file was copied to."""

    plan: ResetPlan
    backup: Path | None


def _index(directory: Path) -> dict[str, tuple[Path, TableMapping | None, str | None]]:
    out: dict[str, tuple[Path, TableMapping | None, str | None]] = {}
    for path in mapping_files(directory):
        try:
            mapping = parse_mapping_file(path).mapping
            out[mapping.name] = (path, mapping, None)
        except MappingError as exc:
            out[path.stem.upper()] = (path, None, str(exc))
    return out


def shipped_names() -> list[str]:
    """The mappings bcdv ships defaults for."""
    return sorted(_index(DEFAULTS_DIR))


def reset_plan(directory: str | Path, name: str) -> ResetPlan:
    """What :func:`reset_to_default` would change; BcdvError for a mapping not shipped."""
    shipped = _index(DEFAULTS_DIR)
    key = name.upper()
    if key not in shipped:
        raise BcdvError(f"{name!r} is not a shipped mapping; shipped: "
                        f"{', '.join(sorted(shipped))}")
    src, default, _ = shipped[key]
    local = _index(Path(directory)).get(key)
    target = Path(directory) / src.name
    if local is None:
        return ResetPlan(key, target, src, "missing locally")
    path, mapping, error = local
    if error is not None:
        return ResetPlan(key, target, src, "invalid",
                         [{"path": "(file)", "local": error, "shipped": "valid"}], path)
    changes = mapping_diff(mapping, default)
    return ResetPlan(key, target, src, "changed" if changes else "identical", changes, path)


def backup_path(local: Path, now: datetime | None = None) -> Path:
    """Where the copy of ``local`` goes: ``backups/<stem>.<UTC time>.yaml`` beside it."""
    moment = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return local.parent / BACKUPS / f"{local.stem}.{moment.strftime('%Y%m%dT%H%M%S%fZ')}.yaml"


def reset_to_default(store: StateStore, directory: str | Path, name: str, *,
                     run_id: str | None = None, lock_wait: float = 0) -> ResetResult:
    """Replace a mapping's file by the shipped default, first copying the user's file to
    ``backups/`` (no copy when there was no file, nothing to copy when already identical:
    then nothing is written). Holds the mapping's run lock."""
    plan = reset_plan(directory, name)
    if plan.status == "identical":
        return ResetResult(plan, None)
    with run_lock(store, plan.name, run_id or new_run_id("manual"), wait_seconds=lock_wait):
        backup = None
        if plan.local_file is not None:
            backup = backup_path(plan.local_file)
            backup.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(plan.local_file, backup)
            if plan.local_file.name != plan.file.name:
                plan.local_file.unlink()  # one file per mapping: the shipped file's name
        plan.file.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(plan.shipped, plan.file)
    return ResetResult(plan, backup)
