"""OData helpers shared by both clients: the one place where values become URL text.

Every id and value that reaches a URL goes through :func:`literal` (a typed value to an OData
literal: GUIDs validated and unquoted, strings quoted with ``''`` doubling, datetimes in UTC,
numbers, booleans, null), :func:`key_segment` (``entity_set(<guid>)``) or :func:`compare`
(``property op literal``). Filters written by people (a mapping's ``filter``) are parsed by a
real OData ``$filter`` grammar (odata-query's) and re-serialised from the syntax tree, so a
composed filter ``(a) and (b)`` cannot be escaped by a part that closes its own parentheses.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Decimal
from functools import lru_cache
from typing import Any

from bcdv.errors import ConfigError

GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                     r"[0-9a-fA-F]{12}$")
# A property path (``name``, ``_parentcustomerid_value``, ``address/city``) or an entity set.
IDENTIFIER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(?:/[A-Za-z_][A-Za-z0-9_]*)*$")
OPERATORS = frozenset({"eq", "ne", "gt", "ge", "lt", "le"})


class InvalidValue(ConfigError):
    """A value given for a URL (an id, a property name, a filter) is not what it must be."""


@dataclass(frozen=True)
class Guid:
    """A value to be written as an (unquoted) OData GUID literal."""

    value: str


def guid(value: object, name: str = "id") -> str:
    """``value`` as a lower-case GUID, or InvalidValue naming the argument ``name``."""
    text = str(value).strip() if value is not None else ""
    if not GUID_RE.match(text):
        shown = text if len(text) <= 80 else text[:77] + "..."
        raise InvalidValue(f"{name} {shown!r} is not a GUID "
                           "(expected 8-4-4-4-12 hexadecimal digits)")
    return text.lower()


def identifier(value: str, what: str = "property") -> str:
    """A property path or entity-set name as it may appear in a URL, else InvalidValue."""
    if not isinstance(value, str) or not IDENTIFIER_RE.match(value):
        raise InvalidValue(f"{what} {value!r} is not a valid OData name")
    return value


def quote(value: str) -> str:
    """A single-quoted OData string literal (embedded quotes doubled)."""
    return "'" + str(value).replace("'", "''") + "'"


def datetime_literal(value: datetime, *, milliseconds: bool = True) -> str:
    """An unquoted OData datetime literal in UTC (``2025-01-31T10:00:00.123Z``)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    value = value.astimezone(timezone.utc)
    if milliseconds:
        return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def literal(value: Any, *, milliseconds: bool = True) -> str:
    """The OData literal of a typed value: the one formatting function for URL values.

    ``Guid`` -> validated, unquoted; ``str`` -> quoted (``''`` doubling); ``datetime`` -> UTC
    (with milliseconds unless told otherwise); ``date`` -> ``YYYY-MM-DD``; ``bool`` ->
    ``true``/``false``; ``int``/``Decimal``/finite ``float`` -> the number; None -> ``null``.
    """
    if value is None:
        return "null"
    if isinstance(value, Guid):
        return guid(value.value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (float, Decimal)):
        if (isinstance(value, float) and not math.isfinite(value)) or (
                isinstance(value, Decimal) and not value.is_finite()):
            raise InvalidValue(f"{value!r} is not a finite number")
        return str(value) if isinstance(value, Decimal) else repr(value)
    if isinstance(value, datetime):
        return datetime_literal(value, milliseconds=milliseconds)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str):
        return quote(value)
    raise InvalidValue(f"no OData literal for a {type(value).__name__}")


def compare(prop: str, op: str, value: Any, *, milliseconds: bool = True) -> str:
    """``prop op literal`` with the property name and operator checked."""
    if op not in OPERATORS:
        raise InvalidValue(f"unknown comparison operator {op!r}; allowed: "
                           f"{', '.join(sorted(OPERATORS))}")
    return f"{identifier(prop)} {op} {literal(value, milliseconds=milliseconds)}"


def key_segment(entity_set: str, record_id: object, *, name: str = "id") -> str:
    """``entity_set(<guid>)``: the URL segment of one record (both APIs key by GUID)."""
    return f"{identifier(entity_set, 'entity set')}({guid(record_id, name)})"


def id_filter(key: str, ids: Sequence[str]) -> str:
    """``key eq <guid> or key eq <guid> ...`` (GUIDs are unquoted in both APIs; each id is
    validated, so nothing but a GUID reaches the filter)."""
    return " or ".join(compare(key, "eq", Guid(i)) for i in ids)


# --- $filter expressions ------------------------------------------------------------------


@lru_cache(maxsize=1)
def _grammar() -> tuple[Any, Any, Any]:
    from odata_query import ast
    from odata_query.grammar import ODataLexer, ODataParser
    from odata_query.roundtrip import AstToODataVisitor

    class _Serialiser(AstToODataVisitor):
        """odata-query's round trip writes strings without doubling embedded quotes."""

        def visit_String(self, node: ast.String) -> str:
            return quote(node.val)

        def visit_NamedParam(self, node: ast.NamedParam) -> str:
            # Dataverse query functions: Microsoft.Dynamics.CRM.LastXDays(PropertyName='x',..)
            return f"{self.visit(node.name)}={self.visit(node.param)}"

    return ODataLexer, ODataParser, _Serialiser


def parse_filter(text: str) -> Any:
    """The syntax tree of a ``$filter`` expression, or InvalidValue saying where it fails."""
    from odata_query.exceptions import ODataException

    lexer_cls, parser_cls, _ = _grammar()
    try:
        return parser_cls().parse(lexer_cls().tokenize(text))
    except ODataException as exc:
        raise InvalidValue(f"not a valid OData $filter: {_where(exc, text)}") from None
    except (RecursionError, ValueError, TypeError) as exc:
        raise InvalidValue(f"not a valid OData $filter: {exc}") from None


def _where(exc: Exception, text: str) -> str:
    token = getattr(exc, "token", None)
    index = getattr(token, "index", None)
    if index is None:
        eof = getattr(exc, "eof", False) or "EOF" in str(exc)
        return "it ends too early" if eof else str(exc)
    return f"unexpected text at character {index + 1}: {text[index:index + 40]!r}"


def normalize_filter(text: str) -> str:
    """A filter parsed and written back from its syntax tree (balanced by construction)."""
    _, _, serialiser = _grammar()
    return str(serialiser().visit(parse_filter(text)))


def and_filters(*parts: str | None) -> str | None:
    """Join filter expressions with ``and``; None when all are empty.

    Each part is parsed by the OData grammar and written back from its tree, then wrapped
    in parentheses: a part can neither be malformed nor escape its parentheses.
    """
    kept = [normalize_filter(p) for p in parts if p and p.strip()]
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
