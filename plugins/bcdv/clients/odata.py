"""Small OData helpers shared by both clients: literals and id filters."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timezone


def quote(value: str) -> str:
    """A single-quoted OData string literal (embedded quotes doubled)."""
    return "'" + value.replace("'", "''") + "'"


def datetime_literal(value: datetime, *, milliseconds: bool) -> str:
    """An unquoted OData datetime literal in UTC (``2025-01-31T10:00:00.123Z``)."""
    value = value.astimezone(timezone.utc)
    if milliseconds:
        return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def and_filters(*parts: str | None) -> str | None:
    """Join filter expressions with ``and``, parenthesised; None when all are empty."""
    kept = [p.strip() for p in parts if p and p.strip()]
    if not kept:
        return None
    if len(kept) == 1:
        return kept[0]
    return " and ".join(f"({p})" for p in kept)


def chunks(items: Sequence[str] | Iterable[str], size: int) -> Iterator[list[str]]:
    """Split an iterable into lists of at most ``size`` items."""
    batch: list[str] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def id_filter(key: str, ids: Sequence[str]) -> str:
    """``key eq <guid> or key eq <guid> ...`` (GUIDs are unquoted in both APIs)."""
    return " or ".join(f"{key} eq {i}" for i in ids)


def parse_datetime(value: str | None) -> datetime | None:
    """Parse an API timestamp (``...Z``, with or without fractions) into aware UTC."""
    if not value:
        return None
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc)
