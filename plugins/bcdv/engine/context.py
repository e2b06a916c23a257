"""What a pass needs: both systems, the state store and a directory for staged files."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bcdv.clients.business_central import BusinessCentralClient
from bcdv.clients.dataverse import DataverseClient
from bcdv.engine.adapters import Adapter, BusinessCentralAdapter, DataverseAdapter
from bcdv.engine.memory import few_malloc_arenas
from bcdv.engine.staging import StagingPath, location
from bcdv.mapping.model import Direction, Side, TableMapping
from bcdv.settings import Endpoints
from bcdv.state.store import Stamp, StateStore


@dataclass
class SyncContext:
    """Both adapters, the state store and the staging root."""

    business_central: BusinessCentralAdapter
    dataverse: DataverseAdapter
    state: StateStore
    staging: StagingPath  # a local directory, or a UPath for a URL (bcdv.engine.staging)
    # Every mapping, so lookups can resolve through other mappings' couplings.
    mappings: dict[str, TableMapping] = field(default_factory=dict)
    # Reference tables read during one run of one mapping (runner.sync_mapping), shared by
    # its passes; None outside such a run (engine/lookups.py).
    reference_tables: dict[Any, list[dict[str, Any]]] | None = None

    @classmethod
    def create(cls, endpoints: Endpoints, state_url: str, staging: str | StagingPath,
               mappings: dict[str, TableMapping] | None = None) -> SyncContext:
        """Build clients from settings (and cap the process's malloc arenas: see
        ``bcdv.engine.memory``)."""
        few_malloc_arenas()
        return cls(
            BusinessCentralAdapter(BusinessCentralClient(endpoints.business_central)),
            DataverseAdapter(DataverseClient(endpoints.dataverse)),
            StateStore(state_url),
            location(staging),
            dict(mappings or {}),
        )

    def adapter(self, system: str) -> Adapter:
        """The adapter of ``business_central`` or ``dataverse``."""
        return self.business_central if system == "business_central" else self.dataverse

    def close(self) -> None:
        """Release HTTP connections."""
        self.business_central.client.close()
        self.dataverse.client.close()


def system_title(system: str) -> str:
    """How messages name a system: ``Dataverse`` or ``Business Central``."""
    return "Dataverse" if system == "dataverse" else "Business Central"


@dataclass(frozen=True)
class PassSides:
    """Source and target of a pass, resolved from the mapping."""

    source_system: str
    target_system: str
    source: Side
    target: Side

    @classmethod
    def of(cls, mapping: TableMapping, direction: Direction) -> PassSides:
        """Sides for a pass direction."""
        if direction is Direction.TO_DATAVERSE:
            return cls("business_central", "dataverse", mapping.business_central,
                       mapping.dataverse)
        return cls("dataverse", "business_central", mapping.dataverse, mapping.business_central)

    def stamp(self, source_id: str, target_id: str, *, source_modified: datetime | None,
              source_hash: str | None, target_modified: datetime | None,
              target_hash: str | None, synced: str | None) -> Stamp:
        """A coupling's stamp, given as this pass sees the pair (source, target)."""
        bc_first = self.source_system == "business_central"
        return Stamp(bc_id=source_id if bc_first else target_id,
                     dv_id=target_id if bc_first else source_id,
                     bc_modified=source_modified if bc_first else target_modified,
                     dv_modified=target_modified if bc_first else source_modified,
                     bc_hash=source_hash if bc_first else target_hash,
                     dv_hash=target_hash if bc_first else source_hash, synced=synced)

    @property
    def source_id_col(self) -> str:
        """Coupling column holding the source id."""
        return "bc_id" if self.source_system == "business_central" else "dv_id"

    @property
    def target_id_col(self) -> str:
        """Coupling column holding the target id."""
        return "dv_id" if self.target_system == "dataverse" else "bc_id"

    @property
    def source_mod_col(self) -> str:
        """Coupling column with the source's baseline."""
        return "bc_modified" if self.source_system == "business_central" else "dv_modified"

    @property
    def target_mod_col(self) -> str:
        """Coupling column with the target's baseline."""
        return "dv_modified" if self.target_system == "dataverse" else "bc_modified"

    @property
    def source_hash_col(self) -> str:
        """Coupling column with the hash of the source side's mapped values."""
        return "bc_hash" if self.source_system == "business_central" else "dv_hash"

    @property
    def target_hash_col(self) -> str:
        """Coupling column with the hash of the target side's mapped values."""
        return "dv_hash" if self.target_system == "dataverse" else "bc_hash"

    @property
    def result_col(self) -> str:
        """Coupling column with the last result of this pass direction."""
        return "to_dv_result" if self.target_system == "dataverse" else "to_bc_result"
