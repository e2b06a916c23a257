"""What the multi-mapping DAGs need at parse time, read leniently from the mapping files.

Names, files, dependencies and alert thresholds only, from the raw YAML (no validation, no
network, no database): a broken mapping stays an import error of its own DAG file; the
full-sync, record and all-modified DAGs still load, and fail only that mapping's tasks when
they run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import yaml

from bcdv.engine.records import dependency_waves


@dataclass(frozen=True)
class MappingEntry:
    """One mapping file as the DAG factory sees it."""

    name: str
    path: Path
    depends_on: list[str] = field(default_factory=list)
    threshold: int | None = None
    direction: str = "bidirectional"

    @property
    def passes(self) -> list[str]:
        """Pass directions in BC's order (to Dataverse first)."""
        return [d for d in ("to_dataverse", "to_business_central")
                if self.direction in ("bidirectional", d)]

    @property
    def slug(self) -> str:
        """The name as a task-group id (``SHIP-TO`` -> ``ship_to``)."""
        return "".join(c if c.isalnum() else "_" for c in self.name.lower())


def scan(directory: str | Path) -> dict[str, MappingEntry]:
    """Every readable mapping file of a directory, by mapping name (sorted)."""
    out: dict[str, MappingEntry] = {}
    d = Path(directory)
    for p in sorted([*d.glob("*.yaml"), *d.glob("*.yml")]):
        try:
            data: Any = yaml.safe_load(p.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            continue
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            continue
        deps = data.get("depends_on") or []
        alerts = data.get("alerts") or {}
        threshold = alerts.get("failed_records_threshold") if isinstance(alerts, dict) else None
        out.setdefault(data["name"], MappingEntry(
            data["name"], p, [x for x in deps if isinstance(x, str)] if isinstance(deps, list)
            else [], threshold if isinstance(threshold, int) else None,
            str(data.get("direction") or "bidirectional")))
    return dict(sorted(out.items()))


def waves(entries: dict[str, MappingEntry]) -> list[list[str]]:
    """Mapping names in dependency waves (the engine's ordering)."""
    return dependency_waves({n: SimpleNamespace(depends_on=e.depends_on)  # type: ignore[misc]
                             for n, e in entries.items()})
