"""Shared fixtures: real HTTPS emulators on loopback, a state store, a sync context."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Airflow reads its configuration at import: point it at a project-local home first.
os.environ.setdefault("AIRFLOW_HOME", str(ROOT / ".airflow" / "tests"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(ROOT / "dags"))
POSTGRES_URL = os.environ.get("BCDV_TEST_POSTGRES_URL",
                              "postgresql+psycopg2://postgres@127.0.0.1:5432/test")


@pytest.fixture
def emulators(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """The three emulators with the demo data, on free ports, for one test."""
    from bcdv_emulators.testing import run_emulators

    with run_emulators(tmp_path / "emulators", seed="demo") as endpoints:
        yield endpoints


@pytest.fixture
def endpoints(emulators: dict[str, Any]):  # type: ignore[no-untyped-def]
    """Client settings pointing at the emulators."""
    from bcdv.settings import endpoints_from_dict

    return endpoints_from_dict(emulators)


@pytest.fixture
def state_url(tmp_path: Path) -> str:
    """A fresh SQLite state store."""
    return f"sqlite:///{tmp_path / 'state.db'}"


@pytest.fixture
def ctx(endpoints, state_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    """A sync context on the emulators and a fresh state store."""
    from bcdv.engine import SyncContext
    from bcdv.mapping import load_mappings

    context = SyncContext.create(endpoints, state_url, tmp_path / "staging",
                                 load_mappings(ROOT / "include" / "mappings"))
    yield context
    context.close()


@pytest.fixture
def mappings():  # type: ignore[no-untyped-def]
    """The project's effective mappings."""
    from bcdv.mapping import load_mappings

    return load_mappings(ROOT / "include" / "mappings")
