"""Shared fixtures: real HTTPS emulators on loopback, a state store, a sync context."""

from __future__ import annotations

import logging
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


DEBUG_LOGGERS = ("", "urllib3", "urllib3.connectionpool", "msal", "msal.application",
                 "msal.telemetry", "requests", "bcdv", "airflow", "airflow.task",
                 "airflow.sdk", "sqlalchemy.engine")


@pytest.fixture
def debug_everything() -> Iterator[list[str]]:
    """Every logger at DEBUG, records written through a plain handler to a list."""
    import airflow.sdk.log  # noqa: F401  (Airflow configures logging on import: first)

    from bcdv.airflow import connections  # noqa: F401

    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = Collect(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    saved = {n: logging.getLogger(n).level for n in DEBUG_LOGGERS}
    root = logging.getLogger()
    root.addHandler(handler)
    for name in DEBUG_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        yield lines
    finally:
        root.removeHandler(handler)
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)
