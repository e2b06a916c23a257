"""The plan's typed actions and the plan file they are stored in.

One action per candidate record, each carrying exactly what executing it needs:

- ``Insert``: create the record on the target side (``resume``: an unconfirmed create is sent
  again; ``look_up_first``: a create whose answer was lost is first looked for, and the
  record it made is coupled rather than written again; ``restore``: the coupled counterpart
  was deleted and is made again).
- ``Update``: write only ``payload`` (the fields in ``diff``, old and new in ``changes``),
  with the ``etag`` read.
- ``Unchanged``: nothing to write; with ``restamp`` the coupling's baselines move.
- ``Skip``: a Skipped coupling, or the losing side of a resolved update conflict.
- ``Ignore``: uncoupled while the mapping synchronises only coupled records.
- ``Fail``: a conflict the mapping does not resolve, or values that cannot be transferred.
- ``Uncouple``: a deletion conflict resolved by removing the coupling.

The plan file is JSON lines: a header ``{"schema": 2, ...}`` and one action per line
(``{"action": "<kind>", ...fields}``). Reading a file of another schema fails with a message
that says to plan the pass again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from bcdv.engine.staging import StagingPath, read_jsonl, write_jsonl

SCHEMA_VERSION = 2


class PlanFormatError(ValueError):
    """A plan file this version of bcdv cannot read."""


@dataclass(frozen=True, kw_only=True)
class Action:
    """What a pass does with one source record, and why."""

    kind: ClassVar[str] = ""
    source_id: str
    name: str = ""
    reason: str = ""

    def to_row(self) -> dict[str, Any]:
        """The plan file's line for this action."""
        row: dict[str, Any] = {"action": self.kind}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            row[f.name] = list(value) if isinstance(value, tuple) else value
        return row


@dataclass(frozen=True, kw_only=True)
class _Stamped(Action):
    """An action after which the pair's coupling is stamped with the source's state."""

    source_modified: str | None = None
    source_hash: str | None = None
    source_values: dict[str, Any] = field(default_factory=dict)
    # The target's mapped values as they will be after the action (None: unknown).
    target_values: dict[str, Any] | None = None


@dataclass(frozen=True, kw_only=True)
class Insert(_Stamped):
    """Create the record on the target side."""

    kind: ClassVar[str] = "insert"
    target_id: str | None = None  # chosen by us (Dataverse), else by the service
    payload: dict[str, Any] = field(default_factory=dict)
    resume: bool = False
    look_up_first: bool = False
    restore: bool = False
    deleted_target_id: str | None = None


@dataclass(frozen=True, kw_only=True)
class Update(_Stamped):
    """Write the fields that differ to the coupled record."""

    kind: ClassVar[str] = "update"
    target_id: str
    payload: dict[str, Any] = field(default_factory=dict)
    diff: tuple[str, ...] = ()
    etag: str | None = None
    target_modified: str | None = None
    target_hash: str | None = None
    # Both sides had changes that this write overwrites: the target's baseline is set this
    # far behind, so the pass back still carries its own fields (BC lowers it by 999 ms for
    # Dataverse, 10 ms for Business Central). 0: the pair is simply in sync after the write.
    baseline_slack_ms: int = 0
    conflict: bool = False
    # The failure history BC's "same error twice" rule needs if the write fails.
    failed_before: bool = False
    prior_error: str | None = None
    # The field-level diff shown in previews and the job log: {field: [old, new]} for the
    # fields in ``diff`` (old: the target's value as read; new: the value sent, before its
    # wire form, so a lookup shows the referenced id rather than an OData bind).
    changes: dict[str, list[Any]] = field(default_factory=dict)

    @property
    def both_modified(self) -> bool:
        """Whether this write overwrites changes made on both sides."""
        return self.baseline_slack_ms > 0


@dataclass(frozen=True, kw_only=True)
class Unchanged(_Stamped):
    """Nothing to write; with ``restamp``, the coupling's baselines move. ``goes_back``: the
    destination changed and this record did not, so the destination keeps its baseline and
    the pass back carries its change."""

    kind: ClassVar[str] = "unchanged"
    target_id: str | None = None
    restamp: bool = False
    target_modified: str | None = None
    target_hash: str | None = None
    conflict: bool = False
    goes_back: bool = False


@dataclass(frozen=True, kw_only=True)
class Skip(Action):
    """Not sent: a Skipped coupling, or the loser of a resolved update conflict."""

    kind: ClassVar[str] = "skip"
    target_id: str | None = None
    conflict: bool = False


@dataclass(frozen=True, kw_only=True)
class Ignore(Action):
    """Not coupled, and the mapping synchronises only coupled records."""

    kind: ClassVar[str] = "ignore"


@dataclass(frozen=True, kw_only=True)
class Fail(Action):
    """A record error decided by the plan (the reason is the error's message)."""

    kind: ClassVar[str] = "fail"
    target_id: str | None = None
    conflict: bool = False
    # BC's rule, decided when planning: the same error as the previous failure marks the
    # coupling Skipped (see engine/outcome.py).
    skips: bool = False


@dataclass(frozen=True, kw_only=True)
class Uncouple(Action):
    """The counterpart was deleted; the coupling is removed (deletion conflict rule)."""

    kind: ClassVar[str] = "uncouple"
    target_id: str


def target_of(action: Action) -> str | None:
    """The counterpart's id, when the action knows it."""
    return getattr(action, "target_id", None)


def is_conflict(action: Action) -> bool:
    """Whether the record met an update conflict (counted in the report)."""
    return bool(getattr(action, "conflict", False))


KINDS: dict[str, type[Action]] = {c.kind: c for c in (Insert, Update, Unchanged, Skip,
                                                       Ignore, Fail, Uncouple)}
_FIELDS: dict[str, frozenset[str]] = {k: frozenset(f.name for f in dataclasses.fields(c))
                                     for k, c in KINDS.items()}


def action_from_row(row: dict[str, Any]) -> Action:
    """An action from its plan-file line (unknown kinds and fields are refused)."""
    cls = KINDS.get(str(row.get("action")))
    if cls is None:
        raise PlanFormatError(f"unknown plan action {row.get('action')!r}; "
                              f"allowed: {', '.join(KINDS)}")
    unknown = sorted(set(row) - _FIELDS[cls.kind] - {"action"})
    if unknown:
        raise PlanFormatError(f"plan action {cls.kind!r} has unknown fields: "
                              f"{', '.join(unknown)}")
    values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) and k == "diff" else v
              for k, v in row.items() if k != "action"}
    return cls(**values)


def plan_header(mapping: str, direction: str) -> dict[str, Any]:
    """The first line of a plan file."""
    return {"schema": SCHEMA_VERSION, "mapping": mapping, "direction": direction}


def write_plan(path: StagingPath, header: dict[str, Any], actions: Iterable[Action] = ()) -> int:
    """Start a plan file (header and actions); returns how many actions were written."""
    write_jsonl(path, [header])
    return append_actions(path, actions)


def append_actions(path: StagingPath, actions: Iterable[Action]) -> int:
    """Append actions to a plan file started by ``write_plan``."""
    return write_jsonl(path, (a.to_row() for a in actions), append=True)


def read_header(path: StagingPath) -> dict[str, Any]:
    """A plan file's header; fails clearly on a file of another schema."""
    first = next(read_jsonl(path), None)
    if first is None:
        raise PlanFormatError(f"plan file {path} is empty or missing: plan the pass again")
    schema = first.get("schema", 1)
    if schema != SCHEMA_VERSION or "action" in first:
        raise PlanFormatError(
            f"plan file {path} has plan schema {schema}; this bcdv reads schema "
            f"{SCHEMA_VERSION}. Plan the pass again (a plan is not carried across versions).")
    return first


def read_plan(path: StagingPath) -> Iterator[Action]:
    """The actions of a plan file (none when it does not exist)."""
    if not path.exists():
        return
    read_header(path)
    rows = read_jsonl(path)
    next(rows, None)
    for row in rows:
        yield action_from_row(row)
