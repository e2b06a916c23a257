"""What every page and action of the bcdv app reads: the state store, the mappings, the lock
owner of a page action."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from fastapi import HTTPException

from bcdv import service
from bcdv.airflow.ui import security


@lru_cache(maxsize=4)
def _store(url: str) -> Any:
    from bcdv.state.store import StateStore

    return StateStore(url)


def store() -> Any:
    """The state store (``BCDV_STATE_URL`` / connection ``bcdv_state``, through the hooks)."""
    from bcdv.airflow.hooks import state_url

    return _store(state_url())


def mappings_dir() -> Path:
    """``BCDV_MAPPINGS_DIR``, else include/mappings beside the DAGs folder (as the DAGs)."""
    from airflow.configuration import conf

    from bcdv.airflow.tasks import mappings_dir as resolve

    return resolve(Path(conf.get("core", "dags_folder")) / "bcdv.py")


def mappings() -> dict[str, Any]:
    """The effective table mappings, by name."""
    from bcdv.mapping import load_mappings

    return load_mappings(mappings_dir())


def _mapping(name: str) -> Any:
    found = mappings().get(name.upper())
    if found is None:
        raise HTTPException(status_code=404, detail=f"no table mapping {name!r}")
    return found


def run_id_of(viewer: security.Viewer) -> str:
    """The lock owner of a page action: who did it, and a unique suffix."""
    who = "".join(c if c.isalnum() else "_" for c in viewer.name or "")
    return service.new_run_id(f"ui__{who[:40]}" if who else "ui")
