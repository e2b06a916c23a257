"""``bcdv errors list|show|retry``: BC's Integration Synch. Job Errors page and its actions."""

from __future__ import annotations

import argparse
from typing import Any

from bcdv.commands.common import (
    EXIT_OK,
    EXIT_PARTIAL,
    add_json_flag,
    load_all,
    mapping_name,
    open_store,
    print_json,
    print_table,
    sync_context,
    wants_json,
)
from bcdv.errors import BcdvError
from bcdv.service import views

HEAD = ("#", "MAPPING", "DIRECTION", "NAME", "SOURCE ID", "FIELD", "VALUE", "CODE", "ATTEMPTS",
        "CAUSED BY", "LAST SEEN", "RESOLVED", "MESSAGE")


def _short(text: str, width: int = 80) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[:width - 1] + "…"


def _dash(value: Any) -> Any:
    return "-" if value in (None, "") else value


def cmd_list(args: argparse.Namespace) -> int:
    """Open record errors (or all with --all), newest first."""
    mapping = None
    if args.mapping:
        mapping = mapping_name(load_all(args), args.mapping)
    rows = open_store(args).errors(mapping, include_resolved=args.all, limit=args.limit)
    if wants_json(args):
        print_json(rows)
    elif rows:
        print_table(HEAD, [(r["id"], r["mapping"], r["direction"], _short(_dash(r["name"]), 30),
                            r["source_id"], _dash(r["field"]), _short(_dash(r["value"]), 24),
                            _dash(r["code"]), r["attempts"], _dash(r["caused_by"]),
                            r["last_seen"], r["resolved"], _short(r["message"]))
                           for r in rows])
    else:
        print("no synchronisation errors")
    return EXIT_OK


def _get(args: argparse.Namespace, error_id: int) -> dict[str, Any]:
    row = views.error(open_store(args), error_id)
    if row is None:
        raise BcdvError(f"no synchronisation error #{error_id}")
    return row


def cmd_show(args: argparse.Namespace) -> int:
    """One error with the whole message."""
    row = _get(args, args.id)
    if wants_json(args):
        print_json(row)
        return EXIT_OK
    for key in ("id", "mapping", "direction", "name", "source_id", "bc_id", "dv_id", "field",
                "value", "code", "caused_by", "job_id", "attempts", "first_seen", "last_seen",
                "resolved"):
        print(f"{key:<11} {_dash(row.get(key))}")
    print(f"message\n{row['message']}")
    return EXIT_OK


def cmd_retry(args: argparse.Namespace) -> int:
    """Synchronise the records of these errors again now (restoring skipped ones first)."""
    from bcdv.commands.sync import Printed
    from bcdv.service import new_run_id, retry
    from bcdv.service.records import error_rows

    error_rows(open_store(args), args.ids)  # every error exists, before any network
    mappings = load_all(args)
    with sync_context(args, mappings) as ctx:
        reports = retry(ctx, mappings, args.ids, run_id=new_run_id("cli"),
                        observer=Printed()).reports
    failed = sum(r.failed for r in reports)
    if wants_json(args):
        print_json([r.to_dict() for r in reports])
    else:
        for r in reports:
            print(r.summary())
            for rec in r.records:
                if rec.result == "failed":
                    print(f"  failed {rec.source_id} {rec.name}: {rec.message}")
    return EXIT_PARTIAL if failed else EXIT_OK


def register(sub: Any) -> None:
    """Add ``errors`` to the CLI."""
    group = sub.add_parser("errors", help="synchronisation errors: list, show, retry")
    cmds = group.add_subparsers(dest="errors_command", required=True)

    p = cmds.add_parser("list", help="open record errors, newest first")
    p.add_argument("--mapping", "-m")
    p.add_argument("--all", action="store_true", help="resolved errors too")
    p.add_argument("--limit", type=int, default=200)
    p.set_defaults(func=cmd_list)

    p = cmds.add_parser("show", help="one error with its whole message")
    p.add_argument("id", type=int)
    p.set_defaults(func=cmd_show)

    p = cmds.add_parser("retry", help="synchronise the errors' records again now")
    p.add_argument("ids", type=int, nargs="+", metavar="ID")
    p.set_defaults(func=cmd_retry)
    for p in cmds.choices.values():
        add_json_flag(p)
