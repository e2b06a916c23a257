"""State-store fixtures: every test runs on a fresh SQLite file and on a fresh PostgreSQL schema.

PostgreSQL isolation: each xdist worker creates its own database (from ``test``, with
AUTOCOMMIT) and drops it at the end; each test gets its own schema in it, selected through the
URL's ``search_path`` (the store's documented way to choose a schema).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url

from bcdv.state import StateStore
from bcdv.state.db import forget_engine

POSTGRES_URL = os.environ.get("BCDV_TEST_POSTGRES_URL",
                              "postgresql+psycopg2://postgres@127.0.0.1:5432/test")
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def _admin(database: str | None = None) -> Engine:
    url = make_url(POSTGRES_URL)
    if database:
        url = url.set(database=database)
    return create_engine(url, isolation_level="AUTOCOMMIT", pool_pre_ping=True)


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A PostgreSQL database of this test worker (created, then dropped at the end)."""
    name = f"bcdv_state_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}_{os.getpid()}"
    admin = _admin()
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        admin.dispose()
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES_URL}: {exc}")
    yield name
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _postgres_url(request: pytest.FixtureRequest) -> Iterator[str]:
    database = request.getfixturevalue("pg_database")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = _admin(database)
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    base = make_url(POSTGRES_URL).set(database=database)
    url = (base.render_as_string(hide_password=False)
           + f"?options={quote(f'-csearch_path={schema}', safe='')}")
    try:
        yield url
    finally:
        forget_engine(url)
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=BACKENDS)
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of an empty state-store database, once per backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'state.db'}"
        yield url
        forget_engine(url)
    else:
        yield from _postgres_url(request)


@pytest.fixture
def store(backend_url: str) -> StateStore:
    """A migrated state store on each backend."""
    return StateStore(backend_url)
