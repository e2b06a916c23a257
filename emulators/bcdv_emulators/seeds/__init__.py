"""Seeds: deterministic data sets for both APIs.

- ``empty``: BC company ``CRONUS USA, Inc.`` with its local currency (USD, General Ledger
  Setup only: LCY is not a row of ``currencies``); Dataverse root business unit, the org base
  currency (USD), the SYSTEM/INTEGRATION users and the application user of the emulator's
  client id.
- ``demo``: see :mod:`bcdv_emulators.seeds.bc_demo` and :mod:`bcdv_emulators.seeds.dv_demo`.
- ``synthetic:N``: ``demo`` plus N generated customers, vendors and BC contacts, and N
  Dataverse accounts and contacts (deterministic, see :mod:`bcdv_emulators.seeds.synthetic`).

Ids are ``uuid5`` of fixed names, timestamps fixed, so tests can rely on them.
"""
from __future__ import annotations

import re
import uuid

from bcdv_emulators.db import Database

NAMESPACE = uuid.UUID("6f1d3c2b-8a4e-4b7d-9c1a-2e3f4a5b6c7d")


def gid(*parts: object) -> str:
    """A deterministic GUID for a seeded record."""
    return str(uuid.uuid5(NAMESPACE, "/".join(str(p) for p in parts)))


def parse_seed(seed: str) -> tuple[str, int]:
    """``"synthetic:500"`` -> ("synthetic", 500); others -> (name, 0). Raises ValueError."""
    m = re.fullmatch(r"(empty|demo|synthetic)(?::(\d+))?", seed.strip())
    if not m or (m.group(1) == "synthetic") != (m.group(2) is not None):
        raise ValueError(f"unknown seed {seed!r} (empty, demo or synthetic:N)")
    return m.group(1), int(m.group(2) or 0)


def seed_bc(db: Database, seed: str) -> None:
    """Load a seed into the Business Central database."""
    from bcdv_emulators.seeds import bc_demo, synthetic
    name, n = parse_seed(seed)
    bc_demo.load_empty(db)
    if name in ("demo", "synthetic"):
        bc_demo.load_demo(db)
    if name == "synthetic":
        synthetic.load_bc(db, n)


def seed_dv(db: Database, seed: str) -> None:
    """Load a seed into the Dataverse database."""
    from bcdv_emulators.seeds import dv_demo, synthetic
    name, n = parse_seed(seed)
    dv_demo.load_empty(db)
    if name in ("demo", "synthetic"):
        dv_demo.load_demo(db)
    if name == "synthetic":
        synthetic.load_dv(db, n)
