"""``bcdv sync``: the service's runs (:mod:`bcdv.service`), in this process.

- ``sync NAME`` every pass of a mapping (or one ``--direction``), ``--full`` for BC's "Run
  Full Synch.", ``--dry-run`` to plan only;
- ``sync NAME --since ISO --until ISO``: a backfill: re-synchronise the records modified in
  [since, until), the watermarks left where they are;
- ``sync NAME --record ID --side business_central|dataverse``: BC's "Synchronize" of one
  record (forced, watermarks untouched);
- ``sync --all``: every mapping in dependency order (BC: "Synchronize Modified Records").

Each run holds the run lock of every mapping it writes, as the DAGs do: it refuses, naming
the holder, when an Airflow run is writing one of them.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from bcdv.commands.common import (
    EXIT_OK,
    EXIT_PARTIAL,
    UsageError,
    guid_arg,
    load_all,
    load_bar,
    mapping_arg,
    print_json,
    progress,
    sync_context,
    wants_json,
)
from bcdv.service import Observer, new_run_id, runs


class Printed(Observer):
    """A run's progress on stderr (stdout stays for the result)."""

    def note(self, message: str) -> None:
        progress(message)

    def pass_started(self, n: int, total: int, mapping: Any, direction: Any,
                     label: str) -> None:
        progress(f"[{n}/{total}] {mapping.name} {direction.value} ({label})")

    @contextmanager
    def loading(self, mapping: Any, direction: Any) -> Iterator[Callable[[int, int], None]]:
        with load_bar(f"{mapping.name} {direction.value}") as bar:
            yield bar

    def pass_finished(self, report: Any) -> None:
        progress(f"      {report.summary()}")


def print_reports(reports: list[Any]) -> None:
    """Each pass's summary, note and problem records."""
    for r in reports:
        print(r.summary())
        if r.note:
            print(f"  {r.note}")
        for rec in r.records:
            print(f"  {rec.result or rec.action:<10} {rec.source_id} {rec.name}: {rec.message}")


def _check(args: argparse.Namespace) -> None:
    if bool(args.all) == bool(args.name):
        raise UsageError("give a mapping name or --all")
    if args.record and (args.all or not args.side):
        raise UsageError("--record needs a mapping name and --side business_central|dataverse")
    if bool(args.since) != bool(args.until):
        raise UsageError("a backfill needs both --since and --until (ISO 8601 date-times)")
    if args.since and (args.full or args.record):
        raise UsageError("--since/--until re-synchronise a window: not with --full or --record")
    if args.all_records and (args.full or args.record or args.since or args.dry_run
                             or args.direction):
        raise UsageError("--all-records is a run of its own: not with --full, --record, "
                         "--since, --direction or --dry-run")
    if args.record:
        args.record = guid_arg(args.record, "--record")
    if args.since:
        from bcdv.clients.odata import InvalidValue
        from bcdv.service.validate import window

        try:
            args.window = window(args.since, args.until)
        except InvalidValue as exc:
            raise UsageError(str(exc)) from None


def cmd_sync(args: argparse.Namespace) -> int:
    """Synchronise one mapping, one record, a window, or every mapping."""
    from bcdv.service import sync_record, synchronize_all_records

    _check(args)
    mappings = load_all(args)
    run_id = new_run_id("cli")
    with sync_context(args, mappings) as ctx:
        if args.record:
            mapping = mapping_arg(mappings, args.name)
            progress(f"synchronising {mapping.name} record {args.record} ({args.side})")
            reports = [sync_record(ctx, mapping, side=args.side, record_id=args.record,
                                   direction=args.direction, dry_run=args.dry_run,
                                   run_id=run_id)]
        elif args.all_records:
            reports = []
            chosen = (runs.in_dependency_order(mappings) if args.all
                      else [mapping_arg(mappings, args.name)])
            for mapping in chosen:
                progress(f"synchronising all records of {mapping.name} (watermarks reset)")
                reports += synchronize_all_records(ctx, mapping, run_id=run_id)
        else:
            chosen = (runs.in_dependency_order(mappings) if args.all
                      else [mapping_arg(mappings, args.name)])
            reports = runs.sync(
                ctx, chosen, direction=args.direction, full=args.full, dry_run=args.dry_run,
                window=getattr(args, "window", None), run_id=run_id,
                observer=Printed()).reports
    if wants_json(args):
        print_json([r.to_dict() for r in reports])
    else:
        print_reports(reports)
        print(f"run {run_id} (bcdv runs show {run_id})")
    return EXIT_PARTIAL if any(r.failed for r in reports) else EXIT_OK


def register(sub: Any) -> None:
    """Add ``sync`` to the CLI."""
    p = sub.add_parser("sync", help="synchronise a mapping, one record, a window, or --all "
                                    "mappings")
    p.add_argument("name", nargs="?", help="table mapping name (e.g. customer)")
    p.add_argument("--all", action="store_true", help="every mapping, in dependency order")
    p.add_argument("--direction", choices=["to_dataverse", "to_business_central"])
    p.add_argument("--full", action="store_true", help="full synchronisation")
    p.add_argument("--dry-run", action="store_true", help="plan only; write nothing")
    p.add_argument("--all-records", action="store_true",
                   help="BC's Synchronize All: reset the watermarks, then a normal run over "
                        "every record (unchanged records stay unchanged; nothing is forced)")
    p.add_argument("--since", metavar="ISO", help="backfill: re-synchronise the records "
                   "modified from this date-time (with --until; watermarks stay)")
    p.add_argument("--until", metavar="ISO", help="backfill: ... until this date-time "
                   "(exclusive)")
    p.add_argument("--record", metavar="ID", help="synchronise only this record")
    p.add_argument("--side", choices=["business_central", "dataverse"],
                   help="which system --record's id belongs to")
    p.add_argument("--json", dest="sub_json", action="store_true",
                   help="machine-readable output")
    p.set_defaults(func=cmd_sync)
