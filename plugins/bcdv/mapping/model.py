"""The typed model of a table mapping (BC's Integration Table Mapping + Field Mappings).

A mapping file in include/mappings/ is validated into these pydantic models at load time;
unknown keys and bad values are rejected with file, line and field path (see loader.py).
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class Direction(str, Enum):
    """Synchronisation direction of a table or field mapping (BC: Direction)."""

    BIDIRECTIONAL = "bidirectional"
    TO_DATAVERSE = "to_dataverse"  # BC: ToIntegrationTable
    TO_BUSINESS_CENTRAL = "to_business_central"  # BC: FromIntegrationTable

    def includes(self, pass_direction: Direction) -> bool:
        """True if a mapping with this direction takes part in a pass in ``pass_direction``."""
        return self is Direction.BIDIRECTIONAL or self is pass_direction


class UpdateConflict(str, Enum):
    """What to do when both sides changed a bidirectional field (BC: Resolve Update Conflicts)."""

    NONE = "none"  # BC: blank -> the record fails
    BUSINESS_CENTRAL_WINS = "business_central_wins"  # BC: Send data update to integration table
    DATAVERSE_WINS = "dataverse_wins"  # BC: Get data update from integration table
    MERGE = "merge"  # bcdv: different fields changed on each side are merged


class DeletionConflict(str, Enum):
    """What to do when a coupled record was deleted (BC: Resolve Deletion Conflicts)."""

    NONE = "none"  # BC: blank -> the record fails, then is skipped
    REMOVE_COUPLING = "remove_coupling"
    RESTORE_RECORDS = "restore_records"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)


class Side(_Strict):
    """One side of a table mapping: the entity set, its key and modified-on columns, filter."""

    entity_set: str
    key: str
    modified_on: str
    filter: str | None = Field(default=None, description="OData $filter applied on this side")
    name_field: str | None = Field(default=None, description="column shown as the record name")


class FieldMapping(_Strict):
    """One field pair (BC: Integration Field Mapping).

    A field with only one side set and a ``constant`` writes that constant to that side.
    """

    business_central: str | None = None
    dataverse: str | None = None
    direction: Direction = Direction.BIDIRECTIONAL
    constant: str | int | float | bool | None = None
    enabled: bool = True

    @model_validator(mode="after")
    def _sides(self) -> FieldMapping:
        if not self.business_central and not self.dataverse:
            raise ValueError("a field mapping needs 'business_central', 'dataverse' or both")
        if self.constant is not None and self.business_central and self.dataverse:
            raise ValueError("'constant' is only allowed when one side is left out")
        if self.constant is None and not (self.business_central and self.dataverse):
            raise ValueError("a one-sided field mapping needs a 'constant'")
        if self.constant is not None:
            implied = (Direction.TO_DATAVERSE if self.dataverse
                       else Direction.TO_BUSINESS_CENTRAL)
            if self.direction not in (implied, Direction.BIDIRECTIONAL):
                raise ValueError(f"a constant for the {'Dataverse' if self.dataverse else 'Business Central'} "
                                 f"side needs direction '{implied.value}'")
        return self

    @property
    def effective_direction(self) -> Direction:
        """Direction, with constants pinned to the side they write."""
        if self.constant is not None:
            return Direction.TO_DATAVERSE if self.dataverse else Direction.TO_BUSINESS_CENTRAL
        return self.direction

    def source(self, pass_direction: Direction) -> str | None:
        """The field read in a pass (None for a constant)."""
        if self.constant is not None:
            return None
        return self.business_central if pass_direction is Direction.TO_DATAVERSE else self.dataverse

    def target(self, pass_direction: Direction) -> str:
        """The field written in a pass."""
        name = self.dataverse if pass_direction is Direction.TO_DATAVERSE else self.business_central
        assert name is not None
        return name


class MatchGroup(_Strict):
    """One priority group of match-based coupling criteria (fields are ANDed)."""

    priority: int = Field(default=1, ge=0)
    fields: list[str] = Field(min_length=1, description="Business Central fields of field mappings")
    case_sensitive: bool = False


class Coupling(_Strict):
    """Match-based coupling (BC: Match-Based Coupling on the Integration Table Mappings page)."""

    match: list[MatchGroup] = Field(default_factory=list)
    create_new_if_no_match: bool = False
    sync_after_coupling: bool = True


class Conflicts(_Strict):
    """Conflict resolution of a table mapping."""

    update: UpdateConflict = UpdateConflict.NONE
    deletion: DeletionConflict = DeletionConflict.NONE


class TableMapping(_Strict):
    """One integration table mapping, e.g. CUSTOMER (Customer <-> Account)."""

    name: str = Field(pattern=r"^[A-Z][A-Z0-9 _-]{0,19}$")
    description: str = ""
    business_central: Side
    dataverse: Side
    direction: Direction
    sync_only_coupled: bool = True
    schedule: str | None = "*/30 * * * *"
    depends_on: list[str] = Field(default_factory=list)
    conflicts: Conflicts = Field(default_factory=Conflicts)
    coupling: Coupling = Field(default_factory=Coupling)
    fields: list[FieldMapping] = Field(min_length=1)

    @field_validator("depends_on")
    @classmethod
    def _no_self_dependency(cls, value: list[str], info: Any) -> list[str]:
        if info.data.get("name") in value:
            raise ValueError("a mapping cannot depend on itself")
        return value

    @model_validator(mode="after")
    def _direction_has_fields(self) -> TableMapping:
        passes = ([Direction.TO_DATAVERSE, Direction.TO_BUSINESS_CENTRAL]
                  if self.direction is Direction.BIDIRECTIONAL else [self.direction])
        for d in passes:
            if not self.fields_for(d):
                raise ValueError(f"no enabled field mapping for the {d.value} direction")
        return self

    @model_validator(mode="after")
    def _match_fields_are_mapped(self) -> TableMapping:
        mapped = {f.business_central for f in self.fields
                  if f.enabled and f.constant is None and f.business_central and f.dataverse}
        for i, group in enumerate(self.coupling.match):
            for name in group.fields:
                if name not in mapped:
                    raise ValueError(f"coupling.match[{i}].fields: {name!r} is not the Business "
                                     "Central side of an enabled field mapping")
        return self

    def match_groups(self) -> list[tuple[MatchGroup, list[tuple[str, str]]]]:
        """Match criteria by ascending priority, each as (group, [(bc field, dv field)])."""
        pairs = {f.business_central: f.dataverse for f in self.fields
                 if f.enabled and f.constant is None and f.business_central and f.dataverse}
        return [(g, [(name, str(pairs[name])) for name in g.fields])
                for g in sorted(self.coupling.match, key=lambda g: g.priority)]

    def fields_for(self, pass_direction: Direction) -> list[FieldMapping]:
        """Enabled field mappings that take part in a pass (BC: the temp field mapping)."""
        return [f for f in self.fields
                if f.enabled and f.effective_direction.includes(pass_direction)]

    def passes(self) -> list[Direction]:
        """The passes of a run, in BC's order: to Dataverse first, then back."""
        order = [Direction.TO_DATAVERSE, Direction.TO_BUSINESS_CENTRAL]
        return [d for d in order if self.direction.includes(d)]

    def side(self, system: str) -> Side:
        """``business_central`` or ``dataverse``."""
        return self.business_central if system == "business_central" else self.dataverse

    @property
    def dag_id(self) -> str:
        """The Airflow DAG id of this mapping's sync DAG."""
        slug = "".join(c if c.isalnum() else "_" for c in self.name.lower())
        return f"bcdv_sync_{slug}"
