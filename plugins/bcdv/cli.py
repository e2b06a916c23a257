"""``bcdv``: the command line over the same service functions the DAGs and the UI call.

Exit codes: 0 success, 1 error, 2 usage error, 3 partial failure (some records failed).
Settings: ``bcdv.settings.load_settings`` (``BCDV_ENDPOINTS`` or the ``BCDV_*`` variables,
``BCDV_STATE_URL``, ``BCDV_MAPPINGS_DIR``, state under ``BCDV_HOME``); the command groups
live in ``bcdv.commands``, the operations in ``bcdv.service``.
"""

from __future__ import annotations

import argparse
import sys

from bcdv.commands.common import (
    EXIT_ERROR,
    EXIT_OK,
    EXIT_PARTIAL,
    EXIT_USAGE,
    UsageError,
    terminal_safe_output,
)
from bcdv.errors import BcdvError

__all__ = ["EXIT_ERROR", "EXIT_OK", "EXIT_PARTIAL", "EXIT_USAGE", "build_parser", "main"]


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the demo (same as ``make demo``)."""
    from bcdv.demo import main as demo_main

    return demo_main()


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command."""
    from bcdv.commands import couplings, errors, locks, runs, sync, up
    from bcdv.mapping.commands import register as register_mappings

    parser = argparse.ArgumentParser(prog="bcdv", description=__doc__.splitlines()[0])
    parser.add_argument("--mappings", help="mappings directory (default: BCDV_MAPPINGS_DIR "
                                           "or include/mappings)")
    parser.add_argument("--state", help="state store URL (default: BCDV_STATE_URL or SQLite)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    sub = parser.add_subparsers(dest="command", required=True)
    register_mappings(sub)
    sync.register(sub)
    couplings.register(sub)
    errors.register(sub)
    runs.register(sub)
    locks.register(sub)
    up.register(sub)
    sub.add_parser("demo", help="run the demo").set_defaults(func=cmd_demo)
    sub.add_parser("emulators", help="local emulators (bcdv emulators --help)", add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``bcdv`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "emulators":
        from bcdv.local_emulators import emulators_module

        try:
            emulators_cli = emulators_module("cli")
        except BcdvError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        return int(emulators_cli.main(argv[1:]))
    # Values from mappings, the state store and the services reach the terminal: none may
    # carry escape sequences or other control characters.
    with terminal_safe_output():
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as exc:  # argparse: 2 on a usage error, 0 for --help
            return int(exc.code or 0)
        try:
            return int(args.func(args))
        except UsageError as exc:
            print(f"usage error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except BcdvError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
