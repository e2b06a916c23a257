"""Run passes end to end in one process (the CLI and tests; Airflow runs the stages as tasks)."""

from __future__ import annotations

import uuid

from bcdv.engine.apply import commit, load
from bcdv.engine.context import SyncContext
from bcdv.engine.extract import extract
from bcdv.engine.plan import plan
from bcdv.engine.report import PassReport
from bcdv.mapping.model import Direction, TableMapping


def run_pass(ctx: SyncContext, mapping: TableMapping, direction: Direction, *,
             mode: str = "modified", dry_run: bool = False,
             run_id: str | None = None) -> PassReport:
    """Extract, plan, load and commit one pass."""
    state = extract(ctx, mapping, direction, mode=mode, run_id=run_id or _run_id(),
                    dry_run=dry_run)
    plan(ctx, mapping, state)
    load(ctx, mapping, state)
    return commit(ctx, mapping, state)


def sync_mapping(ctx: SyncContext, mapping: TableMapping, *, mode: str = "modified",
                 dry_run: bool = False, run_id: str | None = None) -> list[PassReport]:
    """Every pass of a mapping in BC's order (to Dataverse first, then back)."""
    rid = run_id or _run_id()
    return [run_pass(ctx, mapping, d, mode=mode, dry_run=dry_run, run_id=rid)
            for d in mapping.passes()]


def _run_id() -> str:
    return f"manual__{uuid.uuid4().hex[:12]}"
