"""What the service's operations return (the sync operations return the engine's
PassReport, gathered in a :class:`RunResult`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bcdv.engine.report import PassReport


@dataclass(frozen=True)
class RunResult:
    """The passes of one run (a sync, a backfill, a record sync, a retry)."""

    run_id: str
    reports: list[PassReport] = field(default_factory=list)

    @property
    def failed(self) -> int:
        """Records that failed over every pass."""
        return sum(r.failed for r in self.reports)


@dataclass(frozen=True)
class CoupleResult:
    """A record coupled to a chosen record on the other side (and maybe synchronised)."""

    mapping: str
    bc_id: str
    dv_id: str
    report: PassReport | None = None


@dataclass(frozen=True)
class CouplingResult:
    """An uncouple or a restore: the coupling it found (None: the record is not coupled)
    and how many couplings it changed."""

    mapping: str
    record_id: str
    coupling: dict[str, Any] | None
    changed: int

    @property
    def bc_id(self) -> str | None:
        """The found coupling's Business Central id."""
        return self.coupling["bc_id"] if self.coupling else None

    @property
    def dv_id(self) -> str | None:
        """The found coupling's Dataverse id."""
        return self.coupling["dv_id"] if self.coupling else None

    @property
    def name(self) -> str:
        """The record's name as last synchronised ('' when unknown)."""
        return str(self.coupling.get("name") or "") if self.coupling else ""
