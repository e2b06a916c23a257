"""The core package imports and works with Airflow absent from the import path."""

from __future__ import annotations

import subprocess
import sys
import textwrap

CORE_MODULES = [
    "bcdv", "bcdv.errors", "bcdv.settings", "bcdv.clients", "bcdv.clients.http",
    "bcdv.clients.auth", "bcdv.state", "bcdv.state.store", "bcdv.mapping", "bcdv.engine",
    "bcdv.engine.plan", "bcdv.engine.apply", "bcdv.engine.records", "bcdv.engine.merge",
    "bcdv.engine.coupling", "bcdv.clients.batch", "bcdv.clients.bulk", "bcdv.mapping.commands",
    "bcdv.state.locks", "bcdv.bench", "bcdv.cli",
]


def test_core_imports_without_airflow() -> None:
    script = textwrap.dedent(f"""
        import importlib, sys

        class BlockAirflow:
            def find_spec(self, name, path=None, target=None):
                if name == "airflow" or name.startswith("airflow."):
                    raise ImportError(f"blocked: {{name}}")
                return None

        sys.meta_path.insert(0, BlockAirflow())
        for mod in {CORE_MODULES!r}:
            importlib.import_module(mod)
        assert not any(m == "airflow" or m.startswith("airflow.") for m in sys.modules), \\
            sorted(m for m in sys.modules if m.startswith("airflow"))
        print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_blocker_really_blocks_airflow() -> None:
    """Guard: the blocker above must make an Airflow import fail."""
    script = textwrap.dedent("""
        import sys
        class BlockAirflow:
            def find_spec(self, name, path=None, target=None):
                if name == "airflow" or name.startswith("airflow."):
                    raise ImportError("blocked")
        sys.meta_path.insert(0, BlockAirflow())
        try:
            import bcdv.airflow.dag_factory
        except ImportError:
            print("blocked")
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.stdout.strip() == "blocked", proc.stderr
