"""Staged files of a pass: source records, the plan and the outcomes, as JSON lines.

Stages hand data to each other by reference (a directory), never through XCom, so a failed
load can retry without extracting again. Appends are flushed per line: after a crash the file
holds every outcome that was written before it.

Where: a local directory, or any fsspec URL (``file:///shared/staging``, ``s3://bucket/x``,
``abfs://container/x``, ...) through universal_pathlib, the layer Airflow's ObjectStoragePath
is built on, so workers on different machines share one staging area (``BCDV_STAGING_URL``).
S3 needs the s3fs package, Azure Blob adlfs; a URL whose filesystem is not installed fails with
fsspec's message naming the package. The Airflow layer may install an opener that turns URLs
into ObjectStoragePath objects (credentials from an Airflow connection:
``s3://aws_default@bucket/x``; :func:`set_opener`). Directories travel between tasks as
strings: :func:`location` turns one back into a path.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from itertools import islice
from pathlib import Path
from typing import Any

from upath import UPath

from bcdv import fastjson

# A staging location: a local Path, or a UPath (an ObjectStoragePath is one) for a URL.
StagingPath = Path | UPath
_opener: Callable[[str], UPath] | None = None


def set_opener(opener: Callable[[str], UPath] | None) -> None:
    """Make :func:`location` open URLs with ``opener`` (e.g. Airflow's ObjectStoragePath,
    which resolves ``scheme://conn_id@...`` with an Airflow connection); None = plain UPath."""
    global _opener
    _opener = opener


def location(where: str | os.PathLike[str] | StagingPath) -> StagingPath:
    """The path of a staging location: a UPath as given, a URL (``scheme://...``) as a UPath
    (or through the opener of :func:`set_opener`), anything else as a local Path."""
    if isinstance(where, (Path, UPath)):
        return where
    text = os.fspath(where)
    if "://" in text:
        return _opener(text) if _opener is not None else UPath(text)
    return Path(text)


def safe_name(text: str) -> str:
    """``text`` as one directory name (a run id such as ``scheduled__2026-01-01T00:00``)."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


def is_local(path: StagingPath) -> bool:
    """Whether a staging path is on this machine's file system (fsync applies)."""
    return isinstance(path, Path) or getattr(path, "protocol", "") in ("file", "local")


def write_jsonl(path: str | os.PathLike[str] | StagingPath, rows: Iterable[dict[str, Any]], *,
                append: bool = False) -> int:
    """Write rows as JSON lines; returns how many were written.

    Local files are fsynced. On an object store an append rewrites the object with the new
    lines added where the store cannot append (an object is replaced whole, never torn).
    """
    path = location(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = _lines(rows)
    if isinstance(path, UPath) and not is_local(path):
        _write_remote(path, text, append)
    else:
        with path.open("a" if append else "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
    return text.count("\n")


def _lines(rows: Iterable[dict[str, Any]]) -> str:
    return fastjson.lines(list(rows), strict=True).decode("utf-8")


def replace_jsonl(path: str | os.PathLike[str] | StagingPath, rows: Iterable[dict[str, Any]],
                  *, batch: int = 5000) -> int:
    """Write rows as a JSON-lines file ``batch`` at a time (the rows are never all held),
    then put it in place of ``path`` whole (a reader sees the old file or the new one, never
    a part); returns how many were written. Local files are fsynced before the rename."""
    path = location(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    count = 0
    pending = iter(rows)
    try:
        with part.open("w", encoding="utf-8") as fh:
            while group := list(islice(pending, batch)):
                fh.write(_lines(group))
                count += len(group)
            if is_local(part):
                fh.flush()
                os.fsync(fh.fileno())
        if isinstance(part, Path) and isinstance(path, Path):
            part.replace(path)
        elif isinstance(part, UPath) and isinstance(path, UPath):
            part.rename(path)  # a file:// URL: a rename; an object store: copy and delete
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return count


def _write_remote(path: UPath, text: str, append: bool) -> None:
    if append and path.exists():
        try:
            with path.open("a", encoding="utf-8") as fh:
                fh.write(text)
            return
        except (NotImplementedError, ValueError, OSError):
            text = path.read_text(encoding="utf-8") + text
    path.write_text(text, encoding="utf-8")


def read_jsonl(path: str | os.PathLike[str] | StagingPath) -> Iterator[dict[str, Any]]:
    """Rows of a JSON-lines file (none if it does not exist; a torn last line is ignored)."""
    path = location(path)
    if not path.exists():
        return
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.endswith("\n"):
                yield fastjson.loads(line)


class SeenIds:
    """The source ids a pass has staged, kept on disk: a private temporary SQLite database
    that SQLite deletes when it is closed.

    A full pass reads every record of a table and drops the ones a shifting page returns
    twice; a Python set of a million ids holds about 100 MB, this holds its page cache
    (``CACHE_KB``) whatever the count. Keys compare as the rows' own values do: a string
    is kept as ``s<text>``, any other value as ``j<its JSON>``, so 1 and "1" differ.
    """

    CACHE_KB = 8192
    _INSERT = ("INSERT INTO seen SELECT value FROM json_each(?) WHERE true "
               "ON CONFLICT DO NOTHING RETURNING id")

    def __init__(self) -> None:
        # "": a temporary database in a file of its own (SQLite's temporary directory).
        self._db = sqlite3.connect("", isolation_level=None)
        for pragma in ("journal_mode=OFF", "synchronous=OFF", f"cache_size=-{self.CACHE_KB}"):
            self._db.execute(f"PRAGMA {pragma}")
        self._db.execute("CREATE TABLE seen (id TEXT PRIMARY KEY) WITHOUT ROWID")
        self._count = 0

    def __enter__(self) -> SeenIds:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Drop the database (its file goes with it)."""
        self._db.close()

    def __len__(self) -> int:
        return self._count

    @staticmethod
    def _token(key: Any) -> str:
        return "s" + key if isinstance(key, str) else "j" + json.dumps(key)

    def _insert(self, tokens: Sequence[str]) -> set[str]:
        """Mark ``tokens`` seen; returns those that were not seen before."""
        added = {row[0] for row in self._db.execute(self._INSERT, (json.dumps(tokens),))}
        self._count += len(added)
        return added

    def fresh(self, rows: Sequence[dict[str, Any]], key: str) -> list[dict[str, Any]]:
        """The rows whose ``key`` was not seen yet (of rows sharing one, the first), in
        their order; they are seen from now on."""
        tokens = [self._token(r[key]) for r in rows]
        added = self._insert(tokens)
        out = []
        for row, token in zip(rows, tokens, strict=True):
            if token in added:
                added.discard(token)
                out.append(row)
        return out

    def add(self, keys: Iterable[Any]) -> None:
        """Mark ``keys`` seen."""
        self._insert([self._token(k) for k in keys])

    def among(self, keys: Iterable[Any], batch: int = 5000) -> set[Any]:
        """Those of ``keys`` that were seen."""
        found: set[Any] = set()
        pending = iter(keys)
        while group := list(islice(pending, batch)):
            tokens = {self._token(k): k for k in group}
            hits = self._db.execute("SELECT value FROM json_each(?) WHERE value IN "
                                    "(SELECT id FROM seen)", (json.dumps(list(tokens)),))
            found.update(tokens[row[0]] for row in hits)
        return found


@dataclass
class PassState:
    """Everything the stages of one pass share (persisted as meta.json in the pass dir)."""

    mapping: str
    direction: str
    mode: str
    dry_run: bool
    job_id: str
    run_id: str
    directory: str
    signpost: str | None = None
    latest_modified: str | None = None
    extracted: int = 0
    retried: int = 0
    planned: dict[str, int] = field(default_factory=dict)
    # Dry runs only: couplings match-based coupling would make, as [bc_id, dv_id] pairs.
    assumed_pairs: list[list[str]] = field(default_factory=list)
    # Dry runs only: the plan file of the same run's first pass, whose writes the second
    # pass would see in a real run (see plan.first_pass_writes).
    prior_plan: str | None = None
    # Records read but not staged because they are the engine's own writes read back
    # (extract's echo check): counted unchanged, as the plan would have found them.
    echoes: int = 0

    @property
    def path(self) -> StagingPath:
        """The pass directory (a local path or a UPath: see :func:`location`)."""
        return location(self.directory)

    @property
    def source_file(self) -> StagingPath:
        """Extracted source records."""
        return self.path / "source.jsonl"

    @property
    def plan_file(self) -> StagingPath:
        """Planned actions, one per source record."""
        return self.path / "plan.jsonl"

    @property
    def outcomes_file(self) -> StagingPath:
        """Applied actions' outcomes, appended as they happen."""
        return self.path / "outcomes.jsonl"

    def save(self) -> None:
        """Persist to meta.json (atomically: a local file is renamed into place, an object
        is written whole)."""
        path = self.path
        path.mkdir(parents=True, exist_ok=True)
        text = json.dumps(asdict(self), indent=2)
        if isinstance(path, Path):
            tmp = path / "meta.json.tmp"
            tmp.write_text(text)
            tmp.replace(path / "meta.json")
        elif is_local(path):  # a file:// URL: rename on the same file system
            part = path / "meta.json.tmp"
            part.write_text(text)
            part.rename(path / "meta.json")
        else:
            (path / "meta.json").write_text(text)

    @classmethod
    def load(cls, directory: str | os.PathLike[str] | StagingPath) -> PassState:
        """Read a pass's meta.json."""
        return cls(**json.loads((location(directory) / "meta.json").read_text()))


def remove_tree(path: StagingPath) -> None:
    """Delete a staged directory and everything in it (no error if it is gone)."""
    if isinstance(path, Path):
        import shutil

        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.fs.rm(path.path, recursive=True)


def prune(root: str | os.PathLike[str] | StagingPath, older_than_days: float) -> int:
    """Delete run directories (``<root>/<mapping>/<run>``) untouched for that many days.

    Staged files are kept for a while to explain a run (source, plan, outcomes); a committed
    pass never needs them again. Returns how many run directories were removed. On an object
    store, a run directory's age is its newest object's modification time.
    """
    import time

    root = location(root)
    cutoff = time.time() - older_than_days * 86400
    removed = 0
    if not root.is_dir():
        return 0
    for mapping_dir in (p for p in root.iterdir() if p.is_dir() and not p.name.startswith("_")):
        for run_dir in (p for p in mapping_dir.iterdir() if p.is_dir()):
            times = [_mtime(f) for f in run_dir.rglob("*") if f.is_file()] or [_mtime(run_dir)]
            newest = max((t for t in times if t is not None), default=None)
            if newest is not None and newest < cutoff:
                remove_tree(run_dir)
                removed += 1
    return removed


def _mtime(path: StagingPath) -> float | None:
    """A file's modification time (seconds since the epoch), None where the store has none.

    Object stores name it differently in fsspec's info: ``mtime`` (local), ``LastModified``
    (S3), ``last_modified`` (Azure Blob), ``updated`` (GCS), ``created`` (memory)."""
    if isinstance(path, Path):
        return path.stat().st_mtime
    try:
        info = path.fs.info(path.path)
    except (OSError, NotImplementedError):
        return None
    for key in ("mtime", "LastModified", "last_modified", "updated", "created"):
        value = info.get(key)
        if isinstance(value, datetime):
            return value.timestamp()
        if isinstance(value, (int, float)) and value:
            return float(value)
        if isinstance(value, str) and value:
            try:
                return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
            except ValueError:
                continue
    return None
