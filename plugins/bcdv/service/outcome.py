"""A run's verdict: did its records fail beyond the mappings' thresholds?

Pure: the Airflow check task (and anyone else) passes in the run's pass reports and the
thresholds; nothing is read or written here.

Threshold semantics: a mapping's run fails when its *failed* records (new failures; a record
failing again with the same error counts as *skipped*, as in BC) reach the threshold. The
default threshold 0 means any new failure (as does 1). A dry run never fails.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

ERRORS_PAGE = "/bcdv/errors"


@dataclass(frozen=True)
class MappingVerdict:
    """One mapping's failed records in a run against its threshold."""

    mapping: str
    failed: int
    threshold: int

    @property
    def over(self) -> bool:
        """Whether the failed records reach the threshold (0 = any failure)."""
        return self.failed >= max(self.threshold, 1)

    def describe(self) -> str:
        """``CUSTOMER: 3 failed records (threshold: any failure)``."""
        limit = "any failure" if self.threshold <= 1 else str(self.threshold)
        noun = "record" if self.failed == 1 else "records"
        return f"{self.mapping}: {self.failed} failed {noun} (threshold: {limit})"


@dataclass(frozen=True)
class Verdict:
    """The run's outcome: ``ok`` unless a mapping's failed records reached its threshold."""

    ok: bool
    dry_run: bool
    mappings: tuple[MappingVerdict, ...] = ()

    @property
    def over(self) -> list[MappingVerdict]:
        """The mappings that failed the run."""
        return [] if self.dry_run else [m for m in self.mappings if m.over]

    @property
    def message(self) -> str:
        """Why the run failed (naming mappings, counts and where to see the errors), or a
        one-line summary when it did not."""
        if self.dry_run:
            return "dry run: the run's outcome is not checked"
        if self.ok:
            counts = ", ".join(m.describe() for m in self.mappings) or "no passes"
            return f"run outcome ok: {counts}"
        over = self.over
        names = " ".join(f"'bcdv errors list -m {m.mapping}'" for m in over)
        return ("records failed in this run: " + "; ".join(m.describe() for m in over)
                + f". The passes are committed (watermarks moved; the failed records are "
                f"retried by the next run). See the errors with {names} or on the bcdv "
                f"Errors page ({ERRORS_PAGE}?mapping={over[0].mapping}).")


def _field(report: Any, name: str, default: Any = None) -> Any:
    if isinstance(report, Mapping):
        return report.get(name, default)
    return getattr(report, name, default)


def failed_by_mapping(reports: Iterable[Any]) -> dict[str, int]:
    """Failed records per mapping over the real (not dry-run) passes, in report order.

    ``reports``: :class:`bcdv.engine.report.PassReport` objects or their dict form (XCom).
    """
    out: dict[str, int] = {}
    for report in reports:
        if report is None or _field(report, "dry_run", False):
            continue
        name = str(_field(report, "mapping"))
        out[name] = out.get(name, 0) + int(_field(report, "failed", 0) or 0)
    return out


def threshold_of(threshold: int | Mapping[str, int | None] | None, mapping: str,
                 default: int = 0) -> int:
    """The threshold that applies to ``mapping``: its own entry, else ``default``."""
    if isinstance(threshold, Mapping):
        value = threshold.get(mapping)
        return default if value is None else int(value)
    return default if threshold is None else int(threshold)


def run_verdict(reports: Iterable[Any], threshold: int | Mapping[str, int | None] | None = 0,
                dry_run: bool = False, *, default: int = 0) -> Verdict:
    """Judge a run from its pass reports.

    ``threshold``: one number for every mapping, or per mapping name (a missing or None
    entry takes ``default``, itself 0 = any failure). ``dry_run``: the run wrote nothing and
    never fails.
    """
    if dry_run:
        return Verdict(ok=True, dry_run=True)
    verdicts = tuple(MappingVerdict(name, failed, threshold_of(threshold, name, default))
                     for name, failed in failed_by_mapping(reports).items())
    return Verdict(ok=not any(v.over for v in verdicts), dry_run=False, mappings=verdicts)
