"""``bcdv``: the command line over the same core functions the DAGs call.

Exit codes: 0 success, 1 error, 2 usage error, 3 partial failure (some records failed).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from bcdv.errors import BcdvError

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_PARTIAL = 0, 1, 2, 3


def _mappings_dir(args: argparse.Namespace) -> Path:
    from bcdv.mapping.commands import mappings_dir

    return mappings_dir(args)


def _state_url(args: argparse.Namespace) -> str:
    from bcdv.state.store import default_state_url

    return args.state or os.environ.get("BCDV_STATE_URL") or default_state_url()


def cmd_sync(args: argparse.Namespace) -> int:
    """Synchronise one mapping (all passes, or one direction)."""
    from bcdv.engine import SyncContext, run_pass
    from bcdv.mapping import Direction, load_mappings
    from bcdv.settings import endpoints_from_env

    mappings = load_mappings(_mappings_dir(args))
    name = args.name.upper()
    if name not in mappings:
        print(f"unknown mapping {args.name!r}; known: {', '.join(sorted(mappings))}",
              file=sys.stderr)
        return EXIT_USAGE
    mapping = mappings[name]
    staging = Path(os.environ.get("BCDV_STAGING_DIR") or ".data/staging")
    ctx = SyncContext.create(endpoints_from_env(), _state_url(args), staging, mappings)
    directions = [Direction(args.direction)] if args.direction else mapping.passes()
    reports = [run_pass(ctx, mapping, d, mode="full" if args.full else "modified",
                        dry_run=args.dry_run) for d in directions]
    ctx.close()
    if args.json:
        print(json.dumps([r.to_dict() for r in reports], indent=2, default=str))
    else:
        for r in reports:
            print(r.summary())
            for rec in r.records:
                print(f"  {rec.result or rec.action:<10} {rec.source_id} {rec.name}: {rec.message}")
    return EXIT_PARTIAL if any(r.failed for r in reports) else EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:  # noqa: ARG001
    """Run the demo (same as ``make demo``)."""
    from bcdv.demo import main as demo_main

    return demo_main()


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command."""
    parser = argparse.ArgumentParser(prog="bcdv", description=__doc__.splitlines()[0])
    parser.add_argument("--mappings", help="mappings directory (default include/mappings)")
    parser.add_argument("--state", help="state store URL (default: BCDV_STATE_URL or SQLite)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("sync", help="synchronise one table mapping")
    p.add_argument("name")
    p.add_argument("--direction", choices=["to_dataverse", "to_business_central"])
    p.add_argument("--full", action="store_true", help="full synchronisation of the mapping")
    p.add_argument("--dry-run", action="store_true", help="plan only; write nothing")
    p.set_defaults(func=cmd_sync)

    from bcdv.mapping.commands import register as register_mappings

    register_mappings(sub)

    p = sub.add_parser("demo", help="run the demo")
    p.set_defaults(func=cmd_demo)

    sub.add_parser("emulators", help="local emulators (bcdv emulators --help)", add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``bcdv`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "emulators":
        from bcdv.emulators.cli import main as emulators_main

        return emulators_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except BcdvError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
