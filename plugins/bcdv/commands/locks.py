"""``bcdv locks list|release``: the mappings' run locks (who is writing a mapping now).

A run lock is normally released by its run, or taken over once it has not been renewed for an
hour; ``release`` is for an operator who knows the holder is dead (e.g. a worker killed without
its cleanup) and does not want to wait.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from typing import Any

from bcdv.commands.common import (
    EXIT_OK,
    UsageError,
    add_json_flag,
    load_all,
    mapping_name,
    open_store,
    print_json,
    print_table,
    wants_json,
)


def cmd_list(args: argparse.Namespace) -> int:
    """Every mapping's current lock."""
    from bcdv.service import list_locks

    holders = list_locks(open_store(args))
    if wants_json(args):
        print_json([asdict(h) for h in holders])
    elif holders:
        print_table(("MAPPING", "OWNER", "ACQUIRED", "RENEWED", "HOST", "PID"),
                    [(h.mapping, h.owner, h.acquired_at, h.renewed_at, h.host or "", h.pid or "")
                     for h in holders])
    else:
        print("no mapping is locked")
    return EXIT_OK


def cmd_release(args: argparse.Namespace) -> int:
    """Break one mapping's lock (``--force`` required: the holder may still be writing)."""
    if not args.force:
        raise UsageError("releasing another run's lock needs --force (make sure that run is "
                         "not writing any more)")
    name = mapping_name(load_all(args), args.mapping)
    from bcdv.service import break_lock

    holder = break_lock(open_store(args), name)
    if wants_json(args):
        print_json({"mapping": name, "released": asdict(holder) if holder else None})
    else:
        print(f"released {name} (held by {holder.describe()})" if holder
              else f"{name} was not locked")
    return EXIT_OK


def register(sub: Any) -> None:
    """Add ``locks`` to the CLI."""
    p = sub.add_parser("locks", help="run locks of the mappings")
    cmds = p.add_subparsers(dest="locks_command", required=True)
    c = cmds.add_parser("list", help="every mapping's current lock")
    add_json_flag(c)
    c.set_defaults(func=cmd_list)
    c = cmds.add_parser("release", help="break a mapping's lock")
    c.add_argument("mapping")
    c.add_argument("--force", action="store_true", help="yes, the holder is gone")
    add_json_flag(c)
    c.set_defaults(func=cmd_release)
