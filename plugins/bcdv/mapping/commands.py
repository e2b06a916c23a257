"""``bcdv mappings ...``: list, show, validate (and, as they arrive, diff and reset)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from bcdv.mapping.loader import load_mappings

EXIT_OK = 0


def mappings_dir(args: argparse.Namespace) -> Path:
    """The effective mappings directory (``--mappings``, ``BCDV_MAPPINGS_DIR``, include/mappings)."""
    return Path(getattr(args, "mappings", None) or os.environ.get("BCDV_MAPPINGS_DIR")
                or "include/mappings")


def cmd_mappings(args: argparse.Namespace) -> int:
    """List or validate the effective mappings."""
    mappings = load_mappings(mappings_dir(args))
    rows: list[dict[str, Any]] = [
        {"name": m.name, "business_central": m.business_central.entity_set,
         "dataverse": m.dataverse.entity_set, "direction": m.direction.value,
         "schedule": m.schedule, "fields": len(m.fields)} for m in mappings.values()]
    if args.json:
        print(json.dumps(rows, indent=2))
    elif args.action == "validate":
        print(f"{len(rows)} mapping(s) valid in {mappings_dir(args)}")
    else:
        for r in rows:
            print(f"{r['name']:<12} {r['business_central']:<22} {r['direction']:<20} "
                  f"{r['dataverse']:<22} {r['schedule']}")
    return EXIT_OK


def register(sub: Any) -> None:
    """Add the ``mappings`` command to the CLI's subparsers."""
    p = sub.add_parser("mappings", help="list or validate the mappings")
    p.add_argument("action", choices=["list", "validate"], nargs="?", default="list")
    p.set_defaults(func=cmd_mappings)
