"""Checks of what a caller asks for, before anything is read or written."""

from __future__ import annotations

from datetime import datetime, timezone

from bcdv.clients.odata import InvalidValue, guid, parse_datetime
from bcdv.errors import ConfigError
from bcdv.mapping.model import Direction, TableMapping

SIDES = ("business_central", "dataverse")


def record_id(value: object, name: str = "record id") -> str:
    """A record id that will reach a URL or the store: a lower-case GUID, else
    InvalidValue naming ``name``."""
    return guid(value, name)


def side(value: object) -> str:
    """``business_central`` or ``dataverse``, else ConfigError listing them."""
    if value not in SIDES:
        raise ConfigError(f"unknown side {value!r}; allowed: {', '.join(SIDES)}")
    return str(value)


def mapping_of(mappings: dict[str, TableMapping], name: str) -> TableMapping:
    """The mapping called ``name`` (any case), else ConfigError listing the known ones."""
    found = mappings.get(str(name).upper())
    if found is None:
        raise ConfigError(f"unknown mapping {name!r}; known: {', '.join(sorted(mappings))}")
    return found


def direction(value: str | Direction | None) -> Direction | None:
    """A pass direction (or None), else ConfigError listing the allowed ones."""
    if value is None or isinstance(value, Direction):
        return value
    try:
        return Direction(value)
    except ValueError:
        raise ConfigError(f"unknown direction {value!r}; allowed: to_dataverse, "
                          "to_business_central") from None


def when(value: str | datetime | None, name: str) -> datetime:
    """An ISO 8601 date-time as aware UTC (naive ones are taken as UTC)."""
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).astimezone(
            timezone.utc)
    try:
        parsed = parse_datetime(value)
    except ValueError:
        parsed = None
    if parsed is None:
        raise InvalidValue(f"{name} {value!r} is not an ISO 8601 date-time "
                           "(e.g. 2026-01-31T00:00:00Z)")
    return parsed


def window(since: str | datetime | None, until: str | datetime | None
           ) -> tuple[datetime, datetime]:
    """A backfill window [since, until): both given, since before until."""
    start, end = when(since, "since"), when(until, "until")
    if start >= end:
        raise InvalidValue(f"empty window: since {start.isoformat()} is not before until "
                           f"{end.isoformat()}")
    return start, end
