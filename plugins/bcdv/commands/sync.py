"""``bcdv sync``: the service's runs (:mod:`bcdv.service`), in this process.

- ``sync NAME`` every pass of a mapping (or one ``--direction``), ``--full`` for BC's "Run
  Full Synch.", ``--dry-run`` to plan only;
- ``sync NAME --since ISO --until ISO``: a backfill: re-synchronise the records modified in
  [since, until), the watermarks left where they are;
- ``sync NAME --record ID --side business_central|dataverse``: BC's "Synchronize" of one
  record (forced, watermarks untouched);
- ``sync --all``: every mapping in dependency order (BC: "Synchronize Modified Records");
- ``--show-changes`` (with or without ``--dry-run``): per record the action, the name, both
  ids and, for updates, each field ``old -> new``.

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
from bcdv.service import Observer, new_run_id, runs, views

# The result an action has when it went as planned (shown only when it differs).
ACTION_WORD = {"insert": "inserted", "update": "modified", "skip": "skipped", "fail": "failed",
               "unchanged": "unchanged"}


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


def print_reports(reports: list[Any], changes: dict[str, list[dict[str, Any]]] | None = None
                  ) -> None:
    """Each pass's summary, note and problem records; with ``changes`` (job id -> the job's
    records, see ``views.records_of_job``) every record the pass acts on, with its diff."""
    for r in reports:
        print(r.summary())
        if r.note:
            print(f"  {r.note}")
        if changes is not None:
            print_changes(changes.get(r.job_id, []))
            continue
        for rec in r.records:
            print(f"  {rec.result or rec.action:<10} {rec.source_id} {rec.name}: {rec.message}")


def _shown(value: Any) -> str:
    return "(empty)" if value in (None, "") else repr(value)


def print_changes(rows: list[dict[str, Any]]) -> None:
    """Per record: action (and result when it differs), name, both ids; for an update each
    field ``old -> new``; for a failure or skip its message."""
    for row in rows:
        result = row["result"] or ""
        label = row["action"] if result in ("", ACTION_WORD.get(row["action"])) else (
            f"{row['action']} ({result})")
        ids = f"bc {row['bc_id'] or '-'}  dv {row['dv_id'] or '-'}"
        print(f"  {label:<18} {row['name'] or '(no name)'}  [{ids}]")
        for name, (old, new) in row["changes"].items():
            print(f"      {name}: {_shown(old)} -> {_shown(new)}")
        if row["action"] not in ("insert", "update") or result in ("failed", "skipped"):
            print(f"      {row['message']}")


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
        changes = ({r.job_id: views.records_of_job(ctx.state, r.job_id) for r in reports}
                   if args.show_changes else None)
    if wants_json(args):
        print_json([{**r.to_dict(), **({"changes": changes[r.job_id]} if changes is not None
                                       else {})} for r in reports])
    else:
        print_reports(reports, changes)
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
    p.add_argument("--show-changes", action="store_true",
                   help="list every record the run acts on (or, with --dry-run, would act "
                        "on): action, name, ids and, for updates, each field old -> new")
    p.add_argument("--json", dest="sub_json", action="store_true",
                   help="machine-readable output")
    p.set_defaults(func=cmd_sync)
