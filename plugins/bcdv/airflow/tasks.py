"""Task bodies of the sync DAGs: each is a few lines that call one core function."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from bcdv.airflow.connections import endpoints_from_connections, staging_dir, state_url
from bcdv.engine.apply import commit, load
from bcdv.engine.context import SyncContext
from bcdv.engine.extract import extract
from bcdv.engine.plan import plan
from bcdv.engine.staging import PassState
from bcdv.mapping.loader import load_mapping_file
from bcdv.mapping.model import Direction, TableMapping

log = logging.getLogger(__name__)


def mappings_dir(dag_file: str | Path | None = None) -> Path:
    """The effective mappings: ``BCDV_MAPPINGS_DIR``, else include/mappings beside dags/."""
    env = os.environ.get("BCDV_MAPPINGS_DIR")
    if env:
        return Path(env)
    dags = Path(dag_file).resolve().parent if dag_file else Path.cwd() / "dags"
    return dags.parent / "include" / "mappings"


def _mapping(path: str) -> TableMapping:
    return load_mapping_file(path).mapping


def _context(mapping_file: str | None = None) -> SyncContext:
    from bcdv.mapping.loader import load_mappings

    mappings = load_mappings(Path(mapping_file).parent) if mapping_file else {}
    return SyncContext.create(endpoints_from_connections(), state_url(), staging_dir(),
                              mappings)


def couple(mapping_file: str, params: dict[str, Any], run_id: str) -> dict[str, Any]:
    """Match-based coupling before a full synchronisation (a no-op otherwise)."""
    if not params.get("full") or not params.get("couple_first", True) or params.get("dry_run"):
        return {"coupled": 0, "skipped": True}
    from bcdv.engine.coupling import match_couple

    ctx = _context(mapping_file)
    try:
        report = match_couple(ctx, _mapping(mapping_file), run_id=run_id)
        log.info("%s", report.summary())
        return {"coupled": report.coupled, "unmatched": report.unmatched}
    finally:
        ctx.close()


def extract_pass(mapping_file: str, direction: str, params: dict[str, Any], run_id: str) -> str:
    """Extract one pass; returns its staging directory (the only thing passed on)."""
    ctx = _context(mapping_file)
    try:
        mode = "full" if params.get("full") else "modified"
        state = extract(ctx, _mapping(mapping_file), Direction(direction), mode=mode,
                        run_id=run_id, dry_run=bool(params.get("dry_run")))
        log.info("extracted %d %s candidates (%d from the retry set)", state.extracted,
                 direction, state.retried)
        return state.directory
    finally:
        ctx.close()


def plan_pass(mapping_file: str, directory: str) -> str:
    """Transform and plan one pass."""
    ctx = _context(mapping_file)
    try:
        state = plan(ctx, _mapping(mapping_file), PassState.load(directory))
        log.info("plan: %s", state.planned)
        return directory
    finally:
        ctx.close()


def load_pass(mapping_file: str, directory: str) -> str:
    """Apply one pass's plan (safe to retry)."""
    ctx = _context(mapping_file)
    try:
        load(ctx, _mapping(mapping_file), PassState.load(directory))
        return directory
    finally:
        ctx.close()


def commit_passes(mapping_file: str, directories: list[str]) -> list[dict[str, Any]]:
    """Commit every pass: job log, watermarks; returns the small reports (for XCom)."""
    ctx = _context(mapping_file)
    try:
        mapping = _mapping(mapping_file)
        reports = [commit(ctx, mapping, PassState.load(d)) for d in directories]
        for r in reports:
            log.info("%s", r.summary())
            for rec in r.records[:20]:
                log.info("  %s %s (%s): %s", rec.result or rec.action, rec.source_id,
                         rec.name, rec.message)
        return [r.to_dict() for r in reports]
    finally:
        ctx.close()
