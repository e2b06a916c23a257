"""The report of a pass: BC's counters and, per record, what happened and why."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from bcdv.engine.staging import PassState
from bcdv.state.jsonsafe import json_safe, safe_text

COUNTER_NAMES = ("inserted", "modified", "deleted", "unchanged", "skipped", "failed",
                 "conflicts", "coupled", "uncoupled")
# Records a report keeps of each result (failed, skipped, not coupled): a first pass over a
# large table whose records are not coupled would otherwise keep one per record. Every one of
# them is in the job's record list in the state store (commit lists them).
RECORDS_KEPT = 1000
# The counter each planned action lands in (BC's action -> counter table); None: not counted.
ACTION_RESULT = {"insert": "inserted", "update": "modified", "unchanged": "unchanged",
                 "skip": "skipped", "fail": "failed", "ignore": None, "uncouple": None}


@dataclass(frozen=True)
class RecordOutcome:
    """One record's fate in a pass."""

    source_id: str
    target_id: str | None
    name: str
    action: str
    result: str | None
    message: str
    conflict: bool = False
    # An update's field-level diff: {field: [old, new]} (empty for other actions).
    changes: dict[str, list[Any]] = field(default_factory=dict)
    error_id: int | None = None  # the error row of a failed record

    @classmethod
    def from_row(cls, row: dict[str, Any], *, dry_run: bool) -> RecordOutcome:
        """From a staged outcome (or, in a dry run, a planned action)."""
        result = ACTION_RESULT[row["action"]] if dry_run else row.get("result")
        # A staged row holds the record's own values (a nameless account's name is NaN):
        # they are made JSON-safe here, so no value can fail the report, XCom or the log.
        message = safe_text(row.get("message")) or safe_text(row.get("reason")) or ""
        changes = row.get("changes")
        changes = json_safe(changes) if changes else {}
        error_id = row.get("error_id")
        return cls(str(row["source_id"]), safe_text(row.get("target_id")),
                   safe_text(row.get("name")) or "", row["action"], result, message,
                   bool(json_safe(row.get("conflict"))),
                   changes if isinstance(changes, dict) else {},
                   int(error_id) if error_id is not None else None)

    @property
    def listed(self) -> bool:
        """Whether the job's record list keeps this record: every record the pass acts on
        or reports, not the unchanged or not-coupled ones it only counts."""
        return self.action not in ("unchanged", "ignore") or self.conflict or (
            self.result not in ("unchanged", None))

    def job_row(self) -> dict[str, Any]:
        """What the job's record list stores of it (state store ``append_job_records``);
        its values are JSON-safe already (from_row made them so)."""
        return {"source_id": self.source_id, "target_id": self.target_id, "name": self.name,
                "action": self.action, "result": self.result, "message": self.message,
                "changes": self.changes, "conflict": self.conflict}

    def to_row(self) -> dict[str, Any]:
        """JSON-ready form (json_safe copies the containers: no deep copy first)."""
        row = {name: getattr(self, name) for name in _OUTCOME_FIELDS}
        # the only container; every other field is a JSON scalar (from_row made it so)
        row["changes"] = json_safe(self.changes) if self.changes else {}
        return row


_OUTCOME_FIELDS = tuple(f.name for f in fields(RecordOutcome))


@dataclass
class PassReport:
    """Counters of one pass plus the records that were not a clean insert or update (up to
    ``RECORDS_KEPT`` of each result)."""

    mapping: str
    direction: str
    mode: str
    dry_run: bool
    job_id: str
    extracted: int
    inserted: int = 0
    modified: int = 0
    deleted: int = 0
    unchanged: int = 0
    skipped: int = 0
    failed: int = 0
    conflicts: int = 0
    coupled: int = 0
    uncoupled: int = 0
    ignored: int = 0
    records: list[RecordOutcome] = field(default_factory=list)
    note: str | None = None
    # Records counted but not kept in ``records`` (beyond RECORDS_KEPT of their result).
    records_dropped: int = 0

    @classmethod
    def build(cls, state: PassState, records: list[RecordOutcome]) -> PassReport:
        """Count outcomes."""
        report = cls.start(state)
        for rec in records:
            report.add(rec)
        return report

    @classmethod
    def start(cls, state: PassState) -> PassReport:
        """A report with nothing counted yet but the records extract did not stage."""
        report = cls(state.mapping, state.direction, state.mode, state.dry_run, state.job_id,
                     state.extracted)
        report.unchanged += state.echoes  # own writes read back, not planned (extract)
        return report

    def add(self, rec: RecordOutcome) -> None:
        """Count one outcome; keep it when it was not a clean insert, update or no-change."""
        if rec.result in COUNTER_NAMES:
            setattr(self, rec.result, getattr(self, rec.result) + 1)
        elif rec.result is None:
            self.ignored += 1
        if rec.conflict:
            self.conflicts += 1
        if rec.result not in ("inserted", "modified", "unchanged"):
            if self._count_of(rec.result) <= RECORDS_KEPT:
                self.records.append(rec)
            else:
                self.records_dropped += 1

    def _count_of(self, result: str | None) -> int:
        """How many outcomes with this result were counted so far."""
        if result is None:
            return self.ignored
        return int(getattr(self, result)) if result in COUNTER_NAMES else 0

    def counters(self) -> dict[str, int]:
        """BC's job-log counters."""
        return {name: getattr(self, name) for name in COUNTER_NAMES}

    @property
    def status(self) -> str:
        """``success``, or ``partial`` when any record failed."""
        return "partial" if self.failed else "success"

    @property
    def message(self) -> str | None:
        """A one-line note for the job log."""
        if self.note:
            return self.note
        if self.dry_run:
            return "dry run: nothing was written"
        return None

    def summary(self) -> str:
        """One line for humans."""
        c = self.counters()
        parts = " | ".join(f"{k} {c[k]}" for k in ("inserted", "modified", "unchanged",
                                                     "skipped", "failed"))
        extra = f" | not coupled (ignored) {self.ignored}" if self.ignored else ""
        dry = " [dry run]" if self.dry_run else ""
        return f"{self.mapping} {self.direction}{dry}: read {self.extracted} | {parts}{extra}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (small: meant for XCom and --json output)."""
        data = asdict(self)
        data["records"] = [asdict(r) for r in self.records[:100]]
        data["records_truncated"] = max(0, len(self.records) - 100) + self.records_dropped
        return json_safe(data)
