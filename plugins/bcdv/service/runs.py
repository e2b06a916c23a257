"""Synchronisation runs: incremental, full, dry run (a flag of each), backfill window, and
every mapping in dependency order. Each takes the run lock of every mapping it writes."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from datetime import datetime
from typing import Any

from bcdv.engine.context import SyncContext
from bcdv.engine.coupling import match_couple
from bcdv.engine.report import PassReport
from bcdv.engine.runner import failing_job, run_pass
from bcdv.errors import ConfigError
from bcdv.mapping.model import Direction, TableMapping
from bcdv.service import validate
from bcdv.service.locks import new_run_id, run_locks
from bcdv.service.results import RunResult

Window = tuple[datetime, datetime]


class Observer:
    """Progress of a run; the CLI prints it, the default says nothing."""

    def note(self, message: str) -> None:
        """A line about what is about to happen."""

    def pass_started(self, n: int, total: int, mapping: TableMapping, direction: Direction,
                     label: str) -> None:
        """Pass ``n`` of ``total`` starts (``label``: its mode, e.g. ``full, dry run``)."""

    @contextmanager
    def loading(self, mapping: TableMapping, direction: Direction
                ) -> Iterator[Callable[[int, int], None]]:
        """While a pass loads: a ``progress(done, total)`` callback."""
        yield lambda done, total: None

    def pass_finished(self, report: PassReport) -> None:
        """A pass is committed."""


QUIET = Observer()


def passes_of(mappings: Sequence[TableMapping], direction: Direction | None = None
              ) -> list[tuple[TableMapping, Direction]]:
    """The passes of these mappings in order (each mapping's own order, or one direction)."""
    return [(m, d) for m in mappings for d in ([direction] if direction else m.passes())]


def writing(ctx: SyncContext, names: Sequence[str], run_id: str, *, dry_run: bool,
            wait_seconds: float = 0) -> Any:
    """The run locks of a writing run (a dry run writes nothing and takes none)."""
    if dry_run:
        return nullcontext()
    return run_locks(ctx.state, names, run_id, wait_seconds=wait_seconds)


def sync(ctx: SyncContext, mappings: Sequence[TableMapping], *,
         direction: str | Direction | None = None, full: bool = False, dry_run: bool = False,
         window: Window | None = None, couple_first: bool = True, run_id: str | None = None,
         lock_wait: float = 0, observer: Observer = QUIET) -> RunResult:
    """Synchronise these mappings' passes (one ``direction`` or all), in the given order.

    ``full``: BC's "Run Full Synch." (match-based coupling first unless ``couple_first`` is
    off); ``dry_run``: plan only, write nothing; ``window=(since, until)``: re-synchronise the
    records modified in it, leaving the watermarks alone. Holds every mapping's run lock
    (waiting up to ``lock_wait`` s) for the whole run.
    """
    if full and window is not None:
        raise ConfigError("a backfill window and a full synchronisation exclude each other")
    rid = run_id or new_run_id("manual")
    passes = passes_of(mappings, validate.direction(direction))
    mode = "full" if full else "modified"
    label = ("window" if window else mode) + (", dry run" if dry_run else "")
    reports: list[PassReport] = []
    names = [m.name for m in mappings]
    with writing(ctx, names, rid, dry_run=dry_run, wait_seconds=lock_wait):
        coupled: set[str] = set()
        for n, (mapping, pass_direction) in enumerate(passes, 1):
            assumed: list[list[str]] = []
            if full and couple_first and mapping.name not in coupled:
                coupled.add(mapping.name)
                with failing_job(ctx, mapping.name, "coupling", rid):
                    result = match_couple(ctx, mapping, run_id=rid, dry_run=dry_run)
                assumed = [list(p) for p in result.pairs] if dry_run else []
            observer.pass_started(n, len(passes), mapping, pass_direction, label)
            with observer.loading(mapping, pass_direction) as bar:
                report = run_pass(ctx, mapping, pass_direction, mode=mode, dry_run=dry_run,
                                  assumed_pairs=assumed or None, run_id=rid, window=window,
                                  progress=bar)
            observer.pass_finished(report)
            reports.append(report)
    return RunResult(rid, reports)


def full_sync(ctx: SyncContext, mappings: Sequence[TableMapping], **options: Any) -> RunResult:
    """BC's "Run Full Synch." of these mappings (see :func:`sync`)."""
    return sync(ctx, mappings, full=True, **options)


def backfill(ctx: SyncContext, mappings: Sequence[TableMapping], since: str | datetime,
             until: str | datetime, **options: Any) -> RunResult:
    """Re-synchronise the records modified in [since, until) (ISO 8601 date-times, naive ones
    taken as UTC); the watermarks do not move."""
    return sync(ctx, mappings, window=validate.window(since, until), **options)


def in_dependency_order(mappings: dict[str, TableMapping]) -> list[TableMapping]:
    """Every mapping, dependencies first (BC: "Synchronize Modified Records")."""
    from bcdv.engine.records import dependency_waves

    return [mappings[name] for wave in dependency_waves(mappings) for name in wave]
