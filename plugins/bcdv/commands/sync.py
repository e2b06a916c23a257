"""``bcdv sync NAME|--all``: run passes now, in this process (the DAGs' core functions).

- ``sync NAME`` every pass of a mapping (or one ``--direction``), ``--full`` for BC's "Run
  Full Synch.", ``--dry-run`` to plan only;
- ``sync NAME --record ID --side business_central|dataverse``: BC's "Synchronize" of one
  record (forced, watermarks untouched);
- ``sync --all``: every mapping in dependency order (BC: "Synchronize Modified Records").
"""

from __future__ import annotations

import argparse
import contextlib
import uuid
from typing import Any

from bcdv.commands.common import (EXIT_OK, EXIT_PARTIAL, UsageError, guid_arg, load_all,
                                  load_bar, mapping_name, print_json, progress, sync_context, wants_json)


def _print_reports(reports: list[Any]) -> None:
    for r in reports:
        print(r.summary())
        if r.note:
            print(f"  {r.note}")
        for rec in r.records:
            print(f"  {rec.result or rec.action:<10} {rec.source_id} {rec.name}: {rec.message}")


def _passes(args: argparse.Namespace, mappings: dict[str, Any]) -> list[tuple[Any, Any]]:
    from bcdv.engine.records import dependency_waves
    from bcdv.mapping.model import Direction

    if args.all:
        names = [n for wave in dependency_waves(mappings) for n in wave]
    else:
        names = [mapping_name(mappings, args.name)]
    passes = []
    for name in names:
        m = mappings[name]
        dirs = [Direction(args.direction)] if args.direction else m.passes()
        passes.extend((m, d) for d in dirs)
    return passes


def cmd_sync(args: argparse.Namespace) -> int:
    """Synchronise one mapping, one record, or every mapping."""
    from bcdv.engine.coupling import match_couple
    from bcdv.engine.records import sync_record
    from bcdv.engine.runner import run_pass
    from bcdv.mapping.model import Direction

    if bool(args.all) == bool(args.name):
        raise UsageError("give a mapping name or --all")
    if args.record and (args.all or not args.side):
        raise UsageError("--record needs a mapping name and --side business_central|dataverse")
    if args.record:
        args.record = guid_arg(args.record, "--record")
    mappings = load_all(args)
    mode = "full" if args.full else "modified"
    run_id = f"cli__{uuid.uuid4().hex[:12]}"
    reports = []
    with sync_context(args, mappings) as ctx, contextlib.ExitStack() as locks:
        # The same run locks as the DAGs: a CLI run never writes a mapping that an Airflow
        # run is writing (it refuses, naming the holder).
        names = ([mapping_name(mappings, args.name)] if args.record
                 else list(dict.fromkeys(m.name for m, _ in _passes(args, mappings))))
        if not args.dry_run:
            for name in names:
                locks.enter_context(ctx.state.mapping_lock(name, run_id))
        if args.record:
            mapping = mappings[mapping_name(mappings, args.name)]
            direction = Direction(args.direction) if args.direction else None
            progress(f"synchronising {mapping.name} record {args.record} ({args.side})")
            reports.append(sync_record(ctx, mapping, system=args.side, record_id=args.record,
                                       direction=direction, dry_run=args.dry_run,
                                       run_id=run_id))
        else:
            passes = _passes(args, mappings)
            coupled: set[str] = set()
            for n, (mapping, direction) in enumerate(passes, 1):
                assumed: list[list[str]] = []
                if args.full and mapping.name not in coupled:
                    coupled.add(mapping.name)
                    result = match_couple(ctx, mapping, run_id=run_id, dry_run=args.dry_run)
                    assumed = [list(p) for p in result.pairs] if args.dry_run else []
                progress(f"[{n}/{len(passes)}] {mapping.name} {direction.value} ({mode}"
                         f"{', dry run' if args.dry_run else ''})")
                with load_bar(f"{mapping.name} {direction.value}") as bar:
                    report = run_pass(ctx, mapping, direction, mode=mode,
                                      dry_run=args.dry_run, assumed_pairs=assumed or None,
                                      run_id=run_id, progress=bar)
                progress(f"      {report.summary()}")
                reports.append(report)
    if wants_json(args):
        print_json([r.to_dict() for r in reports])
    else:
        _print_reports(reports)
        print(f"run {run_id} (bcdv runs show {run_id})")
    return EXIT_PARTIAL if any(r.failed for r in reports) else EXIT_OK


def register(sub: Any) -> None:
    """Add ``sync`` to the CLI."""
    p = sub.add_parser("sync", help="synchronise a mapping, one record, or --all mappings")
    p.add_argument("name", nargs="?", help="table mapping name (e.g. customer)")
    p.add_argument("--all", action="store_true", help="every mapping, in dependency order")
    p.add_argument("--direction", choices=["to_dataverse", "to_business_central"])
    p.add_argument("--full", action="store_true", help="full synchronisation")
    p.add_argument("--dry-run", action="store_true", help="plan only; write nothing")
    p.add_argument("--record", metavar="ID", help="synchronise only this record")
    p.add_argument("--side", choices=["business_central", "dataverse"],
                   help="which system --record's id belongs to")
    p.add_argument("--json", dest="sub_json", action="store_true",
                   help="machine-readable output")
    p.set_defaults(func=cmd_sync)
