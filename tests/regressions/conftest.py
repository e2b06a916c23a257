"""Regression fixtures: the CLI's in-process runner, an emulator environment of one's own,
the engine harness and the state store on SQLite and PostgreSQL."""

# Fixtures shared with other suites, imported here (not in the test modules) so that pytest
# registers them for this folder and the tests' parameters do not shadow imported names.
from cli.demo_env import bcdv, fresh  # noqa: F401
from engine.conftest import crash_after_write, env  # noqa: F401 - the engine harness
from state.conftest import backend_url, pg_database, store  # noqa: F401 - SQLite + PostgreSQL
