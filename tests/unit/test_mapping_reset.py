"""Reset a mapping to its shipped default as the pages do (bcdv.service.mappings): the plan
names what changes back, the user's file is copied to backups/ first (never loaded as a
mapping), a file under another name is replaced by the shipped one, and a running sync of the
mapping (its run lock) refuses the reset."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bcdv.errors import BcdvError
from bcdv.mapping import load_mappings
from bcdv.mapping.loader import DEFAULTS_DIR
from bcdv.service import mappings as files
from bcdv.state import StateStore

SHIPPED = (DEFAULTS_DIR / "customer.yaml").read_text()
MINE = SHIPPED.replace('schedule: "*/30 * * * *"', 'schedule: "0 * * * *"', 1)


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    target = tmp_path / "mappings"
    shutil.copytree(DEFAULTS_DIR, target)
    return target


@pytest.fixture
def store(tmp_path: Path) -> StateStore:
    return StateStore(f"sqlite:///{tmp_path / 'state.db'}")


def test_reset_copies_the_users_file_then_writes_the_default(directory: Path,
                                                             store: StateStore) -> None:
    assert MINE != SHIPPED
    (directory / "customer.yaml").write_text(MINE)
    plan = files.reset_plan(directory, "customer")
    assert plan.status == "changed"
    assert [(c["path"], c["local"], c["shipped"]) for c in plan.changes] == [
        ("schedule", "0 * * * *", "*/30 * * * *")]
    done = files.reset_to_default(store, directory, "CUSTOMER")
    assert done.backup is not None and done.backup.parent == directory / "backups"
    assert done.backup.read_text() == MINE
    assert (directory / "customer.yaml").read_text() == SHIPPED
    assert sorted(load_mappings(directory)) == files.shipped_names()  # backup not loaded
    assert store.lock_holder("CUSTOMER") is None
    again = files.reset_to_default(store, directory, "CUSTOMER")
    assert (again.plan.status, again.backup) == ("identical", None)
    assert len(list((directory / "backups").iterdir())) == 1


def test_reset_replaces_a_file_of_another_name_and_an_invalid_one(directory: Path,
                                                                  store: StateStore) -> None:
    (directory / "customer.yaml").rename(directory / "my-customers.yaml")
    (directory / "my-customers.yaml").write_text(MINE)
    done = files.reset_to_default(store, directory, "customer")
    assert not (directory / "my-customers.yaml").exists()
    assert done.backup is not None and done.backup.name.startswith("my-customers.")
    assert (directory / "customer.yaml").read_text() == SHIPPED
    (directory / "vendor.yaml").write_text("name: VENDOR\nnot: [valid")
    assert files.reset_plan(directory, "VENDOR").status == "invalid"
    files.reset_to_default(store, directory, "VENDOR")
    assert (directory / "vendor.yaml").read_text() == (DEFAULTS_DIR / "vendor.yaml").read_text()


def test_reset_refuses_under_a_running_sync_and_unknown_names(directory: Path,
                                                              store: StateStore) -> None:
    (directory / "customer.yaml").write_text(MINE)
    store.acquire_lock("CUSTOMER", "scheduled__running")
    with pytest.raises(BcdvError, match="locked"):
        files.reset_to_default(store, directory, "CUSTOMER")
    assert (directory / "customer.yaml").read_text() == MINE
    assert not (directory / "backups").exists()
    with pytest.raises(BcdvError, match="not a shipped mapping"):
        files.reset_plan(directory, "NOPE")
