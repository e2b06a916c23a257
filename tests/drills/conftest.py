"""Drill fixtures: empty emulators with fault injection and a drill sync context."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from .harness import DrillEnv

SEED = int(os.environ.get("BCDV_DRILL_SEED", "11"))
"""Every random draw of the drills derives from this (BCDV_DRILL_SEED=n to vary it)."""


@pytest.fixture
def drill(tmp_path: Path) -> Iterator[DrillEnv]:
    """Empty emulators (company and base currency only), a fresh SQLite state store."""
    from bcdv_emulators.testing import run_emulators

    with run_emulators(tmp_path / "emulators", seed="empty") as endpoints:
        env = DrillEnv(endpoints, f"sqlite:///{tmp_path / 'state.db'}", tmp_path / "staging")
        yield env
        env.ctx.close()
