"""``bcdv runs list|show``: the job log (BC's Integration Synch. Job list), one row per pass."""

from __future__ import annotations

import argparse
from typing import Any

from bcdv.commands.common import (
    EXIT_OK,
    add_json_flag,
    load_all,
    mapping_name,
    open_store,
    print_json,
    print_table,
    wants_json,
)
from bcdv.errors import BcdvError
from bcdv.service import views

COUNTERS = ("inserted", "modified", "unchanged", "skipped", "failed", "coupled", "uncoupled")
HEAD = ("JOB", "MAPPING", "DIRECTION", "TYPE", "MODE", "STATUS", "STARTED", "INS", "MOD",
        "UNCH", "SKIP", "FAIL", "RUN")


def _row(j: dict[str, Any]) -> tuple[Any, ...]:
    return (j["id"][:8], j["mapping"], j["direction"], j["type"], j["mode"]
            + (" (dry run)" if j["dry_run"] else ""), j["status"], j["started_at"],
            j["inserted"], j["modified"], j["unchanged"], j["skipped"], j["failed"],
            j["run_id"])


def cmd_list(args: argparse.Namespace) -> int:
    """Recent passes, newest first."""
    mapping = mapping_name(load_all(args), args.mapping) if args.mapping else None
    rows = open_store(args).jobs(mapping, limit=args.limit)
    if wants_json(args):
        print_json(rows)
    elif rows:
        print_table(HEAD, [_row(j) for j in rows])
    else:
        print("no runs yet")
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    """One pass by job id (or its first characters), or every pass of an Airflow run id."""
    store = open_store(args)
    found = views.jobs_of_run(store, args.id)
    is_run = bool(found)
    if not found:
        job = store.job(args.id)
        if job is None:
            matches = [j for j in store.jobs(limit=10_000) if j["id"].startswith(args.id)]
            job = matches[0] if len(matches) == 1 else None
        found = [job] if job else []
    if not found:
        raise BcdvError(f"no run or job {args.id!r}")
    out = [{**j, "errors": views.errors_of_job(store, j["id"])} for j in found]
    if wants_json(args):
        print_json(out if is_run else out[0])
        return EXIT_OK
    for j in out:
        print(f"job {j['id']}  {j['mapping']} {j['direction']}  {j['type']} {j['mode']}"
              f"{' (dry run)' if j['dry_run'] else ''}  status {j['status']}")
        print(f"  run {j['run_id'] or '-'}  started {j['started_at']}  finished "
              f"{j['finished_at'] or '-'}")
        print("  " + " | ".join(f"{c} {j[c]}" for c in COUNTERS))
        if j["message"]:
            print(f"  message: {j['message']}")
        for err in j["errors"]:
            print(f"  error #{err['id']} {err['source_id']}: {err['message']}")
    return EXIT_OK


def register(sub: Any) -> None:
    """Add ``runs`` to the CLI."""
    group = sub.add_parser("runs", help="the synchronisation log: list, show")
    cmds = group.add_subparsers(dest="runs_command", required=True)
    p = cmds.add_parser("list", help="recent passes, newest first")
    p.add_argument("--mapping", "-m")
    p.add_argument("--limit", type=int, default=50)
    p.set_defaults(func=cmd_list)
    p = cmds.add_parser("show", help="one pass (job id) or all passes of a run id")
    p.add_argument("id")
    p.set_defaults(func=cmd_show)
    for p in cmds.choices.values():
        add_json_flag(p)
