"""``bcdv couplings list|show|couple|match|uncouple|restore``: BC's coupled-records actions.

A record is named by either its Business Central id or its Dataverse id.
"""

from __future__ import annotations

import argparse
from typing import Any

from bcdv.commands.common import (
    EXIT_ERROR,
    EXIT_OK,
    EXIT_PARTIAL,
    UsageError,
    add_json_flag,
    guid_arg,
    load_all,
    mapping_name,
    open_store,
    print_json,
    print_table,
    sync_context,
    wants_json,
)
from bcdv.errors import BcdvError
from bcdv.service import new_run_id, views

HEAD = ("BUSINESS CENTRAL ID", "DATAVERSE ID", "NAME", "TO DV", "TO BC", "SKIPPED", "UPDATED")


def _row(c: dict[str, Any]) -> tuple[Any, ...]:
    return (c["bc_id"], c["dv_id"], c["name"], c["to_dv_result"], c["to_bc_result"],
            c["skipped"], c["updated_at"])


def _mapping(args: argparse.Namespace) -> tuple[dict[str, Any], Any]:
    mappings = load_all(args)
    return mappings, mappings[mapping_name(mappings, args.mapping)]


def cmd_list(args: argparse.Namespace) -> int:
    """Coupled records of a mapping (optionally searched by id or name, or skipped only)."""
    _, mapping = _mapping(args)
    rows = views.list_couplings(open_store(args), mapping, search=args.search or "",
                                skipped=args.skipped, limit=args.limit)
    if wants_json(args):
        print_json(rows)
    elif rows:
        print_table(HEAD, [_row(r) for r in rows])
    else:
        print(f"no couplings in {mapping.name}" + (f" matching {args.search!r}"
                                                   if args.search else ""))
    return EXIT_OK


def _find(args: argparse.Namespace, mapping: Any) -> dict[str, Any]:
    found = views.find_coupling(open_store(args), mapping, args.id)
    if found is None:
        raise BcdvError(f"{args.id} is not coupled in {mapping.name}")
    return found


def cmd_show(args: argparse.Namespace) -> int:
    """One coupling with its open errors."""
    _, mapping = _mapping(args)
    found = _find(args, mapping)
    errs = views.record_errors_of(open_store(args), mapping.name,
                                  [found["bc_id"], found["dv_id"]])
    if wants_json(args):
        print_json({**found, "errors": errs})
        return EXIT_OK
    for key, value in found.items():
        print(f"{key:<14} {value if value not in (None, '') else '-'}")
    for err in errs:
        print(f"error #{err['id']} {err['direction']} (attempts {err['attempts']}): "
              f"{err['message']}")
    return EXIT_OK


def _record_arg(args: argparse.Namespace) -> str:
    return guid_arg(args.id, "id")


def cmd_couple(args: argparse.Namespace) -> int:
    """Couple a Business Central record to a Dataverse row (both must exist)."""
    from bcdv.service import couple

    args.bc_id, args.dv_id = guid_arg(args.bc_id, "bc_id"), guid_arg(args.dv_id, "dv_id")
    mappings, mapping = _mapping(args)
    with sync_context(args, mappings) as ctx:
        result = couple(ctx, mapping, bc_id=args.bc_id, dv_id=args.dv_id,
                        synchronize=args.sync, run_id=new_run_id("cli"))
    report = result.report
    if wants_json(args):
        print_json({"mapping": mapping.name, "bc_id": result.bc_id, "dv_id": result.dv_id,
                    "coupled": True, "sync": report.to_dict() if report else None})
    else:
        print(f"coupled {result.bc_id} <-> {result.dv_id} in {mapping.name}")
        if report:
            print(report.summary())
    return EXIT_PARTIAL if report and report.failed else EXIT_OK


def cmd_match(args: argparse.Namespace) -> int:
    """BC's "Match-Based Coupling": couple uncoupled records on the mapping's match criteria
    (then create or synchronise as the mapping's coupling settings say)."""
    from bcdv.service import couple_by_match

    mappings, mapping = _mapping(args)
    with sync_context(args, mappings) as ctx:
        report, syncs = couple_by_match(ctx, mapping, run_id=new_run_id("cli"))
    if wants_json(args):
        print_json({"mapping": mapping.name, "coupled": report.coupled,
                    "unmatched": report.unmatched, "pairs": [list(p) for p in report.pairs],
                    "syncs": [r.to_dict() for r in syncs]})
    else:
        print(report.summary())
        for sync_report in syncs:
            print(sync_report.summary())
    return EXIT_PARTIAL if any(r.failed for r in syncs) else EXIT_OK


def cmd_uncouple(args: argparse.Namespace) -> int:
    """Remove the coupling of a record (BC: Delete Coupling); the records stay."""
    from bcdv.service import uncouple

    _, mapping = _mapping(args)
    result = uncouple(open_store(args), mapping, _record_arg(args), run_id=new_run_id("cli"))
    if result.coupling is None:
        raise BcdvError(f"{args.id} is not coupled in {mapping.name}")
    if wants_json(args):
        print_json({"mapping": mapping.name, "bc_id": result.bc_id, "dv_id": result.dv_id,
                    "removed": result.changed})
    else:
        print(f"uncoupled {result.bc_id} <-> {result.dv_id} in {mapping.name}")
    return EXIT_OK if result.changed else EXIT_ERROR


def cmd_restore(args: argparse.Namespace) -> int:
    """Clear Skipped so the next run retries the record (BC: Restore / Restore All)."""
    from bcdv.service import restore, restore_all

    _, mapping = _mapping(args)
    store, run_id = open_store(args), new_run_id("cli")
    if args.all:
        restored = restore_all(store, mapping, run_id=run_id)
    elif args.id:
        result = restore(store, mapping, _record_arg(args), run_id=run_id)
        if result.coupling is None:
            raise BcdvError(f"{args.id} is not coupled in {mapping.name}")
        restored = result.changed
    else:
        raise UsageError("give a record id or --all")
    if wants_json(args):
        print_json({"mapping": mapping.name, "restored": restored})
    else:
        print(f"restored {restored} skipped coupling(s) in {mapping.name}")
    return EXIT_OK


def register(sub: Any) -> None:
    """Add ``couplings`` to the CLI."""
    group = sub.add_parser("couplings", help="coupled records: list, show, couple, uncouple, "
                                             "restore")
    cmds = group.add_subparsers(dest="couplings_command", required=True)

    p = cmds.add_parser("list", help="coupled records of a mapping")
    p.add_argument("mapping")
    p.add_argument("--search", "-s", help="start of either id, or part of the name")
    p.add_argument("--skipped", action="store_true", help="skipped records only")
    p.add_argument("--limit", type=int, default=100)
    p.set_defaults(func=cmd_list)

    p = cmds.add_parser("show", help="one coupling and its open errors")
    p.add_argument("mapping")
    p.add_argument("id", help="Business Central id or Dataverse id")
    p.set_defaults(func=cmd_show)

    p = cmds.add_parser("couple", help="couple a Business Central record to a Dataverse row")
    p.add_argument("mapping")
    p.add_argument("bc_id")
    p.add_argument("dv_id")
    p.add_argument("--sync", choices=["to_dataverse", "to_business_central"],
                   help="synchronise the pair right away in this direction")
    p.set_defaults(func=cmd_couple)

    p = cmds.add_parser("match", help="match-based coupling: couple uncoupled records on the "
                                      "mapping's match criteria")
    p.add_argument("mapping")
    p.set_defaults(func=cmd_match)

    p = cmds.add_parser("uncouple", help="remove the coupling of a record")
    p.add_argument("mapping")
    p.add_argument("id", help="Business Central id or Dataverse id")
    p.set_defaults(func=cmd_uncouple)

    p = cmds.add_parser("restore", help="clear Skipped so the next run retries the record")
    p.add_argument("mapping")
    p.add_argument("id", nargs="?", help="Business Central id or Dataverse id")
    p.add_argument("--all", action="store_true", help="every skipped record of the mapping")
    p.set_defaults(func=cmd_restore)
    for p in cmds.choices.values():
        add_json_flag(p)
