"""Entity definitions shared by the Business Central and Dataverse emulators.

A :class:`Prop` describes one property as served on the wire and how it is stored in SQLite:

=========== ============================ ======================================
kind        wire                         stored
=========== ============================ ======================================
guid        lowercase GUID string        TEXT
string      string (``max_len``)         TEXT
code        upper-cased string (BC Code) TEXT
memo        string                       TEXT
int/bigint  integer                      INTEGER
decimal     number (money, double too)   REAL
bool        true/false                   INTEGER 0/1
datetime    ISO UTC ``Z``                INTEGER epoch milliseconds
date        ``YYYY-MM-DD``               TEXT
enum        BC enum member (``_x0020_``) TEXT
option      Dataverse choice integer     INTEGER
lookup      Dataverse ``_x_value`` GUID  TEXT (column ``_x_value``)
=========== ============================ ======================================
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

EDM = {"guid": "Edm.Guid", "string": "Edm.String", "code": "Edm.String", "memo": "Edm.String",
       "int": "Edm.Int32", "bigint": "Edm.Int64", "decimal": "Edm.Decimal", "money": "Edm.Decimal",
       "double": "Edm.Double", "bool": "Edm.Boolean", "datetime": "Edm.DateTimeOffset",
       "date": "Edm.Date", "enum": "Edm.String", "option": "Edm.Int32", "lookup": "Edm.Guid"}
SQLTYPE = {"guid": "TEXT", "string": "TEXT", "code": "TEXT", "memo": "TEXT", "int": "INTEGER",
           "bigint": "INTEGER", "decimal": "REAL", "money": "REAL", "double": "REAL",
           "bool": "INTEGER", "datetime": "INTEGER", "date": "TEXT", "enum": "TEXT",
           "option": "INTEGER", "lookup": "TEXT"}


@dataclass
class Prop:
    """One property of an entity."""

    name: str
    kind: str
    max_len: int | None = None
    read_only: bool = False
    required: bool = False
    default: Any = None
    members: tuple[str, ...] = ()
    """BC enum members in wire form (``_x0020_`` for blank)."""
    options: dict[int, str] = field(default_factory=dict)
    """Dataverse choice values -> labels."""
    targets: dict[str, str] = field(default_factory=dict)
    """Dataverse lookups: navigation property -> target entity set."""
    caption: str = ""
    min_value: float | None = None
    max_value: float | None = None
    create_only: bool = False
    hidden: bool = False
    """Stored but never served (e.g. the target type of a polymorphic lookup)."""
    required_level: str = "None"
    """Dataverse RequiredLevel (None, ApplicationRequired, SystemRequired)."""
    display: str = ""

    @cached_property
    def column(self) -> str:
        """SQLite column name (Dataverse lookups are stored as their ``_x_value``); computed
        once (a property is never changed after it is built), as every served cell asks it."""
        return f"_{self.name}_value" if self.kind == "lookup" else self.name

    @property
    def edm(self) -> str:
        """The EDM type name."""
        return EDM[self.kind]


@dataclass
class EntityDef:
    """An entity set."""

    set_name: str
    type_name: str
    key: str
    props: list[Prop]
    company_scoped: bool = True
    number_prefix: str = ""
    methods: tuple[str, ...] = ("GET", "POST", "PATCH", "DELETE")
    primary_name: str = ""
    logical_name: str = ""
    alternate_keys: list[list[str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.by_name = {p.name: p for p in self.props}
        self.by_column = {p.column: p for p in self.props}

    def prop(self, name: str) -> Prop | None:
        """A property by wire name (``_x_value`` names resolve to lookups)."""
        return self.by_name.get(name) or self.by_column.get(name)
