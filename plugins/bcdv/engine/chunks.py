"""Split a pass's plan into chunks that load in parallel, and merge their outcomes back.

Each chunk is a pass directory of its own (``<pass>/chunks/<n>``: meta.json and a plan file
with the pass's header), so the ordinary load stage runs on it; commit then reads the merged
outcomes from the pass directory.
"""

from __future__ import annotations

import logging

from bcdv.engine.actions import read_header, read_plan, write_plan
from bcdv.engine.staging import PassState, location, read_jsonl, write_jsonl

log = logging.getLogger(__name__)
CHUNKS = "chunks"


def split_plan(directory: str, chunk_size: int) -> list[str]:
    """Split a pass's plan into chunk directories of ``chunk_size`` actions each.

    Returns the directories to load (the pass itself when it fits in one chunk). Safe to
    rerun: a chunk's outcomes are kept, so a retried chunk resumes where it stopped.
    """
    if not directory:
        return [""]
    state = PassState.load(directory)
    actions = list(read_plan(state.plan_file))
    if len(actions) <= chunk_size or state.dry_run:
        return [directory]
    header = read_header(state.plan_file)
    out = []
    for index, start in enumerate(range(0, len(actions), chunk_size)):
        chunk = location(directory) / CHUNKS / f"{index:05d}"
        part = PassState(**{**state.__dict__, "directory": str(chunk)})
        part.save()
        write_plan(part.plan_file, header, actions[start:start + chunk_size])
        out.append(str(chunk))
    log.info("%s %s: %d actions in %d chunks of %d", state.mapping, state.direction,
             len(actions), len(out), chunk_size)
    return out


def merge_chunks(directory: str) -> None:
    """Gather the chunks' outcomes into the pass's outcomes file (before commit)."""
    chunks = location(directory) / CHUNKS
    if not chunks.is_dir():
        return
    state = PassState.load(directory)
    names = sorted(d.name for d in chunks.iterdir())
    rows = [row for name in names for row in read_jsonl(chunks / name / "outcomes.jsonl")]
    write_jsonl(state.outcomes_file, rows)
