"""What every command group shares: settings, output (tables or JSON), exit codes."""

from __future__ import annotations

import argparse
import io
import json
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from bcdv.errors import ConfigError

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_PARTIAL = 0, 1, 2, 3


class UsageError(ConfigError):
    """Wrong arguments (an unknown mapping, a missing id): exit code 2."""


# Escape sequences (CSI, OSC, other ESC x), then single control characters: C0 but tab and
# newline, DEL, C1, and the bidirectional overrides/isolates that reorder what is shown.
_ESCAPES = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])?")
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e"
                       "\u2066-\u2069]")


def terminal_safe(text: str) -> str:
    """``text`` without terminal control: escape sequences removed, other control
    characters (tab and newline kept) dropped. Every CLI output goes through it."""
    return _CONTROLS.sub("", _ESCAPES.sub("", text))


class TerminalSafeStream(io.TextIOBase):
    """A text stream writing :func:`terminal_safe` text to another (stdout, stderr)."""

    def __init__(self, raw: TextIO) -> None:
        super().__init__()
        self.raw = raw

    def write(self, text: str) -> int:  # type: ignore[override]
        self.raw.write(terminal_safe(text))
        return len(text)

    def flush(self) -> None:
        self.raw.flush()

    def isatty(self) -> bool:
        return bool(getattr(self.raw, "isatty", lambda: False)())

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.raw, "encoding", None) or "utf-8"

    def fileno(self) -> int:
        return self.raw.fileno()


@contextmanager
def terminal_safe_output() -> Iterator[None]:
    """While inside, everything printed to stdout and stderr is made terminal-safe."""
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = TerminalSafeStream(saved[0]), TerminalSafeStream(saved[1])
    try:
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        sys.stdout, sys.stderr = saved


def state_url(args: argparse.Namespace) -> str:
    """``--state``, else the settings' (``BCDV_STATE_URL``, else SQLite under the home)."""
    from bcdv.settings import load_settings

    return getattr(args, "state", None) or load_settings().state_url


def mappings_dir(args: argparse.Namespace) -> Path:
    """``--mappings``, else the settings' (``BCDV_MAPPINGS_DIR``, else the shipped ones)."""
    from bcdv.settings import load_settings

    return Path(getattr(args, "mappings", None) or load_settings().mappings_dir)


def staging_dir() -> Path:
    """Where passes stage their files (``BCDV_STAGING_DIR``, else under the home)."""
    from bcdv.settings import load_settings

    return load_settings().staging_dir


def guid_arg(value: str, name: str) -> str:
    """A record id given on the command line that will reach a URL: a GUID, else a usage
    error naming the argument."""
    from bcdv.clients.odata import InvalidValue, guid

    try:
        return guid(value, name)
    except InvalidValue as exc:
        raise UsageError(str(exc)) from None


def mapping_arg(mappings: dict[str, Any], name: str) -> Any:
    """The mapping called ``name`` (any case), or a usage error listing the known ones."""
    return mappings[mapping_name(mappings, name)]


def load_all(args: argparse.Namespace) -> dict[str, Any]:
    """Every effective mapping by name."""
    from bcdv.mapping import load_mappings

    return load_mappings(mappings_dir(args))


def mapping_name(mappings: dict[str, Any], name: str) -> str:
    """The canonical (upper-case) name of a mapping, or a usage error listing the known ones."""
    key = name.upper()
    if key not in mappings:
        raise UsageError(f"unknown mapping {name!r}; known: {', '.join(sorted(mappings))}")
    return key


def open_store(args: argparse.Namespace) -> Any:
    """The state store (no network needed)."""
    from bcdv.state.store import StateStore

    return StateStore(state_url(args))


@contextmanager
def sync_context(args: argparse.Namespace, mappings: dict[str, Any]) -> Iterator[Any]:
    """A sync context on the configured endpoints and state store; closed on exit."""
    from bcdv.engine import SyncContext
    from bcdv.settings import endpoints_from_env

    ctx = SyncContext.create(endpoints_from_env(), state_url(args), staging_dir(), mappings)
    try:
        yield ctx
    finally:
        ctx.close()


def wants_json(args: argparse.Namespace) -> bool:
    """``--json`` given before or after the command."""
    return bool(getattr(args, "json", False) or getattr(args, "sub_json", False))


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    """Accept ``--json`` after the command too (``bcdv runs list --json``)."""
    parser.add_argument("--json", dest="sub_json", action="store_true",
                        help="machine-readable output")


def print_json(data: Any) -> None:
    """JSON on stdout (datetimes as ISO 8601)."""
    print(json.dumps(data, indent=2, default=_json_default))


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def cell(value: Any) -> str:
    """A table cell: datetimes to the second, None as '-'."""
    if value is None or value == "":
        return "-"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def print_table(head: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Aligned columns, upper-case headings, like ``bcdv mappings list``."""
    lines = [tuple(head)] + [tuple(cell(c) for c in row) for row in rows]
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(head))]
    for line in lines:
        print("  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())


def progress(message: str) -> None:
    """A progress line on stderr (stdout stays clean for --json)."""
    print(message, file=sys.stderr, flush=True)


@contextmanager
def load_bar(title: str) -> Iterator[Callable[[int, int], None]]:
    """A progress bar on stderr for a pass's load (only on a terminal; silent otherwise)."""
    if not sys.stderr.isatty():
        yield lambda done, total: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    # The bar draws with escape sequences: it writes to the real stream, its title is safe.
    raw = getattr(sys.stderr, "raw", sys.stderr)
    title = terminal_safe(title)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  transient=True, console=Console(file=raw)) as bar:
        task = bar.add_task(title, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total or None)

        yield update
