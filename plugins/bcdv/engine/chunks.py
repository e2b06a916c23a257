"""Split a pass's plan into chunks that load in parallel, and merge their outcomes back.

Each chunk is a pass directory of its own (``<pass>/chunks/<n>``: meta.json and a plan file
with the pass's header), so the ordinary load stage runs on it; commit then reads the merged
outcomes from the pass directory.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from itertools import chain, islice

from bcdv.engine.actions import Action, read_header, read_plan, write_plan
from bcdv.engine.staging import PassState, location, read_jsonl, replace_jsonl

log = logging.getLogger(__name__)
CHUNKS = "chunks"


def split_plan(directory: str, chunk_size: int) -> list[str]:
    """Split a pass's plan into chunk directories of ``chunk_size`` actions each, reading
    the plan one chunk at a time (never all of it).

    Returns the directories to load (the pass itself when it fits in one chunk). Safe to
    rerun: a chunk's outcomes are kept, so a retried chunk resumes where it stopped.
    """
    if not directory:
        return [""]
    state = PassState.load(directory)
    if state.dry_run or not state.plan_file.exists():
        return [directory]
    # The header first: an in-memory object store hands every reader of a file the same
    # handle, so the file is not opened again while its actions are being read.
    header = read_header(state.plan_file)
    parts = _batches(read_plan(state.plan_file), chunk_size)
    first, second = next(parts, []), next(parts, None)
    if second is None:
        return [directory]
    out = []
    total = 0
    for index, actions in enumerate(chain([first, second], parts)):
        chunk = location(directory) / CHUNKS / f"{index:05d}"
        part = PassState(**{**state.__dict__, "directory": str(chunk)})
        part.save()
        total += write_plan(part.plan_file, header, actions)
        out.append(str(chunk))
    log.info("%s %s: %d actions in %d chunks of %d", state.mapping, state.direction,
             total, len(out), chunk_size)
    return out


def _batches(actions: Iterable[Action], size: int) -> Iterator[list[Action]]:
    items = iter(actions)
    while batch := list(islice(items, size)):
        yield batch


def merge_chunks(directory: str) -> None:
    """Gather the chunks' outcomes into the pass's outcomes file (before commit), streamed
    chunk by chunk and line by line."""
    chunks = location(directory) / CHUNKS
    if not chunks.is_dir():
        return
    state = PassState.load(directory)
    names = sorted(d.name for d in chunks.iterdir())
    replace_jsonl(state.outcomes_file, (row for name in names
                                        for row in read_jsonl(chunks / name / "outcomes.jsonl")))
