"""The typed model of a table mapping (BC's Integration Table Mapping + Field Mappings).

A mapping file in include/mappings/ is validated into these pydantic models at load time;
unknown keys and bad values are rejected with file, line and field path (see loader.py).
The format is described key by key in FORMAT.md beside this module.

Validators that find a problem below the model they run on start their message with
``@<relative path>: `` so the loader can point at the exact key and line.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from bcdv.clients.odata import IDENTIFIER_RE, InvalidValue, parse_filter
from bcdv.mapping.rules import FieldLookup, Rule, RuleDirection

Scalar = str | int | float | bool


class Direction(str, Enum):
    """Synchronisation direction of a table or field mapping (BC: Direction)."""

    BIDIRECTIONAL = "bidirectional"
    TO_DATAVERSE = "to_dataverse"  # BC: ToIntegrationTable
    TO_BUSINESS_CENTRAL = "to_business_central"  # BC: FromIntegrationTable

    def includes(self, pass_direction: Direction) -> bool:
        """True if a mapping with this direction takes part in a pass in ``pass_direction``."""
        return self is Direction.BIDIRECTIONAL or self is pass_direction


class UpdateConflict(str, Enum):
    """BC: "Resolve Update Conflicts" (enum 5338), plus ``merge``."""

    NONE = "none"  # the record fails with a conflict error
    BUSINESS_CENTRAL_WINS = "business_central_wins"  # BC: Send data update to integration table
    DATAVERSE_WINS = "dataverse_wins"  # BC: Get data update from integration table
    MERGE = "merge"  # bcdv: field level; fails only if the same field changed on both sides


class DeletionConflict(str, Enum):
    """BC: "Resolve Deletion Conflicts" (enum 5337)."""

    NONE = "none"  # the record fails ("coupled to a deleted record")
    REMOVE_COUPLING = "remove_coupling"
    RESTORE_RECORDS = "restore_records"


class OnFailure(str, Enum):
    """What a lookup does when the referenced record is not coupled."""

    ERROR = "error"  # BC default: "<field> <value> must be coupled to a record in Dataverse"
    CLEAR = "clear"  # BC: Clear Value on Failed Sync
    KEEP = "keep"  # BC: Not Null (a null GUID leaves the destination unchanged)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)


class Side(_Strict):
    """One side of a table mapping: the entity set, its key and modified-on columns, filter."""

    entity_set: str
    key: str
    modified_on: str
    filter: str | None = Field(default=None, description="OData $filter applied on this side")
    name_field: str | None = Field(default=None, description="column shown as the record name")

    @field_validator("entity_set", "key", "modified_on", "name_field")
    @classmethod
    def _odata_name(cls, value: str | None) -> str | None:
        return odata_name(value)

    @field_validator("filter")
    @classmethod
    def _parsable_filter(cls, value: str | None) -> str | None:
        # Parsed by the OData $filter grammar now, so a run never sends one the service
        # refuses, and composed from its syntax tree later (clients.odata.and_filters).
        if value is not None and value.strip():
            try:
                parse_filter(value)
            except InvalidValue as exc:
                raise ValueError(str(exc)) from None
        return value


def odata_name(value: str | None) -> str | None:
    """A property or entity-set name as it will appear in a URL (letters, digits, '_')."""
    if value is not None and not IDENTIFIER_RE.match(value):
        raise ValueError(f"{value!r} is not an OData name (letters, digits and '_', "
                         "starting with a letter or '_')")
    return value


# Airflow's cron presets (airflow.sdk.definitions.timetables._cron.CRON_PRESETS) and the two
# schedules that are not cron expressions.
SCHEDULE_PRESETS = ("@once", "@continuous", "@hourly", "@daily", "@weekly", "@monthly",
                    "@quarterly", "@yearly")


def check_schedule(value: str | None) -> str | None:
    """A schedule the DAG import accepts: None, a preset, or a cron expression croniter
    (what Airflow's cron timetables use) parses."""
    if value is None or value in SCHEDULE_PRESETS:
        return value
    from croniter import croniter

    fields = value.split()
    if value.startswith("@") or len(fields) not in (5, 6) or not croniter.is_valid(value):
        raise ValueError(f"{value!r} is not a cron expression Airflow accepts (five fields, "
                         f"e.g. '*/30 * * * *') nor one of {', '.join(SCHEDULE_PRESETS)}, "
                         "or null for no schedule")
    return value


class Lookup(_Strict):
    """A field whose value refers to a record of another mapping (resolved via its couplings).

    To Dataverse: the Business Central value is matched against ``match_on`` of the referenced
    mapping's Business Central records; the coupled Dataverse id is bound. To Business Central:
    the Dataverse GUID's coupled Business Central record gives its ``match_on`` value.
    """

    mapping: str = Field(pattern=r"^[A-Z][A-Z0-9 _-]{0,19}$")
    also: list[Annotated[str, Field(pattern=r"^[A-Z][A-Z0-9 _-]{0,19}$")]] = Field(
        default_factory=list, description="further mappings of the same Dataverse table, "
        "tried in order after ``mapping`` (BC: a contact's parent company is its company's "
        "customer or vendor)")
    match_on: str | None = Field(default=None, description="BC field of the referenced record; "
                                 "default: the referenced mapping's Business Central key")
    on_failure: OnFailure = OnFailure.ERROR

    @property
    def mappings(self) -> list[str]:
        """The referenced mappings, in the order they are tried."""
        return list(dict.fromkeys([self.mapping, *self.also]))

    @field_validator("match_on")
    @classmethod
    def _odata_name(cls, value: str | None) -> str | None:
        return odata_name(value)


class FieldMapping(_Strict):
    """One field pair (BC: Integration Field Mapping).

    A field with only one side set and a ``constant`` writes that constant to that side.
    """

    business_central: str | None = None
    dataverse: str | None = None
    direction: Direction = Direction.BIDIRECTIONAL
    constant: Scalar | None = None
    enabled: bool = True
    transform: list[Rule] = Field(default_factory=list)
    value_map: str | None = None
    lookup: Lookup | None = None
    navigation: str | None = Field(default=None, description="Dataverse single-valued navigation "
                                   "property for @odata.bind, e.g. parentcustomerid_account")

    @field_validator("business_central", "dataverse", "navigation")
    @classmethod
    def _odata_name(cls, value: str | None) -> str | None:
        return odata_name(value)

    @model_validator(mode="after")
    def _sides(self) -> FieldMapping:
        if not self.business_central and not self.dataverse:
            raise ValueError("a field mapping needs 'business_central', 'dataverse' or both")
        if self.constant is not None and self.business_central and self.dataverse:
            raise ValueError("@constant: 'constant' is only allowed when one side is left out")
        if self.constant is None and not (self.business_central and self.dataverse):
            raise ValueError("a one-sided field mapping needs a 'constant'")
        if self.constant is not None:
            implied = (Direction.TO_DATAVERSE if self.dataverse
                       else Direction.TO_BUSINESS_CENTRAL)
            if self.direction not in (implied, Direction.BIDIRECTIONAL):
                raise ValueError(f"@direction: a constant for the "
                                 f"{'Dataverse' if self.dataverse else 'Business Central'} "
                                 f"side needs direction '{implied.value}'")
            for key in ("transform", "value_map", "lookup", "navigation"):
                if getattr(self, key):
                    raise ValueError(f"@{key}: a constant cannot also have '{key}'")
        return self

    @model_validator(mode="after")
    def _flags(self) -> FieldMapping:
        if self.lookup is not None and self.value_map is not None:
            raise ValueError("@value_map: a field is either a lookup or uses a value map, "
                             "not both")
        if self.navigation is not None and self.lookup is None:
            raise ValueError("@navigation: 'navigation' is only used by a lookup field")
        direction = self.effective_direction
        for i, rule in enumerate(self.transform):
            if rule.direction is None or rule.direction is RuleDirection.BOTH:
                continue
            if not direction.includes(Direction(rule.direction.value)):
                raise ValueError(f"@transform[{i}].direction: the rule runs "
                                 f"{rule.direction.value} but the field only goes "
                                 f"{direction.value}, so it would never run")
        return self

    @property
    def effective_direction(self) -> Direction:
        """Direction, with constants pinned to the side they write."""
        if self.constant is not None:
            return Direction.TO_DATAVERSE if self.dataverse else Direction.TO_BUSINESS_CENTRAL
        return self.direction

    @property
    def label(self) -> str:
        """``bc -> dv`` for messages and listings (``(constant)`` for a missing side)."""
        return f"{self.business_central or '(constant)'} -> {self.dataverse or '(constant)'}"

    def source(self, pass_direction: Direction) -> str | None:
        """The field read in a pass (None for a constant)."""
        if self.constant is not None:
            return None
        return self.business_central if pass_direction is Direction.TO_DATAVERSE else self.dataverse

    def target(self, pass_direction: Direction) -> str:
        """The field written in a pass."""
        name = self.dataverse if pass_direction is Direction.TO_DATAVERSE else self.business_central
        if name is None:
            # Only a one-sided constant lacks a side, and it never runs in the other pass.
            raise ValueError(f"field {self.label} has no target in the "
                             f"{pass_direction.value} pass")
        return name

    def rules_for(self, pass_direction: Direction) -> list[Any]:
        """The transformation rules that run in a pass, in chain order."""
        out = []
        for rule in self.transform:
            d = rule.direction
            if d is None or d is RuleDirection.BOTH or d.value == pass_direction.value:
                out.append(rule)
        return out

    def field_lookups(self) -> list[FieldLookup]:
        """The field_lookup rules of the chain (the engine preloads their tables)."""
        return [r for r in self.transform if isinstance(r, FieldLookup)]

    @property
    def dataverse_read_column(self) -> str | None:
        """The Web API column to $select/read: ``_x_value`` for a lookup, else the field."""
        if self.dataverse and self.lookup is not None:
            return f"_{self.dataverse}_value"
        return self.dataverse

    @property
    def dataverse_bind_property(self) -> str | None:
        """``<navigation>@odata.bind``, the key a lookup is written with (None if no lookup)."""
        if self.lookup is None or not self.dataverse:
            return None
        return f"{self.navigation or self.dataverse}@odata.bind"


class ValueMapEntry(_Strict):
    """One pair of a value map (BC: a "CRM Option Mapping" row)."""

    business_central: str = Field(min_length=1)
    dataverse: int
    label: str | None = Field(default=None, description="the Dataverse option's caption")


class ValueMap(_Strict):
    """A named option mapping: Business Central codes <-> Dataverse choice values.

    Codes match case-insensitively (BC Code fields are upper case). A blank code <-> null.
    """

    values: list[ValueMapEntry] = Field(min_length=1)
    unmapped: OnFailure = Field(default=OnFailure.KEEP, description="a non-blank value "
                                "without an entry: error, clear the destination, or keep it")

    @model_validator(mode="after")
    def _unique(self) -> ValueMap:
        codes: dict[str, int] = {}
        options: dict[int, int] = {}
        for i, e in enumerate(self.values):
            key = e.business_central.upper()
            if key in codes:
                raise ValueError(f"@values[{i}].business_central: {e.business_central!r} is "
                                 f"already mapped by values[{codes[key]}]")
            if e.dataverse in options:
                raise ValueError(f"@values[{i}].dataverse: {e.dataverse} is already mapped by "
                                 f"values[{options[e.dataverse]}]")
            codes[key], options[e.dataverse] = i, i
        return self

    def to_dataverse(self, code: str | None) -> int | None:
        """The option value of a code; None for blank. Raises LookupError if unmapped."""
        if code is None or str(code).strip() == "":
            return None
        table = self.as_dict(Direction.TO_DATAVERSE)
        if str(code).upper() not in table:
            raise LookupError(f"no value map entry for {code!r}")
        return table[str(code).upper()]

    def to_business_central(self, option: int | None) -> str:
        """The code of an option value; "" for null. Raises LookupError if unmapped."""
        if option is None:
            return ""
        table = self.as_dict(Direction.TO_BUSINESS_CENTRAL)
        if int(option) not in table:
            raise LookupError(f"no value map entry for option {option!r}")
        return table[int(option)]

    def as_dict(self, pass_direction: Direction) -> dict[Any, Any]:
        """The map for a pass, for ``Series.map`` (codes upper-cased on the way to Dataverse)."""
        if pass_direction is Direction.TO_DATAVERSE:
            return {e.business_central.upper(): e.dataverse for e in self.values}
        return {e.dataverse: e.business_central for e in self.values}


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
    """How update and deletion conflicts are resolved (BC's two "Resolve ... Conflicts")."""

    update: UpdateConflict = UpdateConflict.NONE
    deletion: DeletionConflict = DeletionConflict.NONE


class CreateValues(_Strict):
    """Values set on records the sync creates (BC: Table / Int. Tbl. Config Template)."""

    business_central: dict[str, Scalar | None] = Field(default_factory=dict)
    dataverse: dict[str, Scalar | None] = Field(default_factory=dict)


class Alerts(_Strict):
    """Alerting thresholds (used by the Airflow notifiers)."""

    failed_records_threshold: int | None = Field(default=None, ge=1)


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
    create_values: CreateValues = Field(default_factory=CreateValues)
    value_maps: dict[str, ValueMap] = Field(default_factory=dict)
    alerts: Alerts = Field(default_factory=Alerts)
    fields: list[FieldMapping] = Field(min_length=1)

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        return check_schedule(value)

    @field_validator("depends_on")
    @classmethod
    def _no_self_dependency(cls, value: list[str], info: ValidationInfo) -> list[str]:
        for i, name in enumerate(value):
            if name == info.data.get("name"):
                raise ValueError(f"@[{i}]: a mapping cannot depend on itself")
            if name in value[:i]:
                raise ValueError(f"@[{i}]: {name!r} is listed twice")
        return value

    @field_validator("value_maps")
    @classmethod
    def _value_map_names(cls, value: dict[str, ValueMap]) -> dict[str, ValueMap]:
        for name in value:
            if not name or not name.replace("_", "").isalnum() or not name[0].isalpha():
                raise ValueError(f"@{name}: value map names are letters, digits and '_'")
        return value

    @model_validator(mode="after")
    def _field_directions(self) -> TableMapping:
        if self.direction is not Direction.BIDIRECTIONAL:
            for i, f in enumerate(self.fields):
                d = f.effective_direction
                if f.enabled and d is not Direction.BIDIRECTIONAL and d is not self.direction:
                    raise ValueError(f"@fields[{i}].direction: '{d.value}' never runs in a "
                                     f"'{self.direction.value}' mapping; use "
                                     f"'{self.direction.value}' or disable the field")
        for d in self.passes():
            if not self.fields_for(d):
                raise ValueError(f"@direction: no enabled field mapping for the {d.value} "
                                 "direction")
        return self

    @model_validator(mode="after")
    def _unique_targets(self) -> TableMapping:
        for d in self.passes():
            seen: dict[str, int] = {}
            for i, f in enumerate(self.fields):
                if not (f.enabled and f.effective_direction.includes(d)):
                    continue
                target = f.target(d)
                if target in seen:
                    side = "dataverse" if d is Direction.TO_DATAVERSE else "business_central"
                    raise ValueError(f"@fields[{i}].{side}: {target!r} is already written by "
                                     f"fields[{seen[target]}] in the {d.value} pass")
                seen[target] = i
        return self

    @model_validator(mode="after")
    def _references(self) -> TableMapping:
        for i, f in enumerate(self.fields):
            if f.value_map is not None and f.value_map not in self.value_maps:
                known = ", ".join(sorted(self.value_maps)) or "none"
                raise ValueError(f"@fields[{i}].value_map: unknown value map {f.value_map!r}; "
                                 f"defined in value_maps: {known}")
        eligible = self._match_candidates()
        for i, group in enumerate(self.coupling.match):
            for k, name in enumerate(group.fields):
                hits = eligible.get(name, [])
                if len(hits) != 1:
                    why = ("is not the Business Central side of an enabled field mapping "
                           "without constant, lookup or value map" if not hits else
                           f"is mapped to {len(hits)} Dataverse fields, so the match is ambiguous")
                    raise ValueError(f"@coupling.match[{i}].fields[{k}]: {name!r} {why}")
        return self

    def _match_candidates(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for f in self.fields:
            if (f.enabled and f.constant is None and f.business_central and f.dataverse
                    and f.lookup is None and f.value_map is None):
                out.setdefault(f.business_central, []).append(f.dataverse)
        return out

    def match_groups(self) -> list[tuple[MatchGroup, list[tuple[str, str]]]]:
        """Match criteria by ascending priority, each as (group, [(bc field, dv field)])."""
        pairs = {bc: dvs[0] for bc, dvs in self._match_candidates().items()}
        return [(g, [(name, pairs[name]) for name in g.fields])
                for g in sorted(self.coupling.match, key=lambda g: g.priority)]

    def fields_for(self, pass_direction: Direction) -> list[FieldMapping]:
        """Enabled field mappings that take part in a pass (BC: the temp field mapping)."""
        return [f for f in self.fields
                if f.enabled and f.effective_direction.includes(pass_direction)]

    def lookups(self, pass_direction: Direction | None = None) -> list[FieldMapping]:
        """Enabled lookup fields (of one pass, if given)."""
        fields = self.fields_for(pass_direction) if pass_direction else \
            [f for f in self.fields if f.enabled]
        return [f for f in fields if f.lookup is not None]

    def value_map_of(self, field: FieldMapping) -> ValueMap | None:
        """The value map a field uses, or None."""
        return self.value_maps[field.value_map] if field.value_map else None

    def create_values_for(self, system: str) -> dict[str, Scalar | None]:
        """Values for records created on ``business_central`` or ``dataverse``."""
        return dict(getattr(self.create_values, system))

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
