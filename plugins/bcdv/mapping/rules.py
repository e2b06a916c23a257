"""Transformation rules of a field mapping (BC: table 1237 "Transformation Rule").

Each rule is a small pydantic model with validated parameters and an ``apply`` method that
defines its meaning on one value (the engine vectorises; these are the reference semantics,
tested as tables of input -> output). A field's ``transform`` is a chain applied in order.
"""

from __future__ import annotations

import math
import re
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from enum import Enum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

ODATA_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"

# Decimal and thousands separators of the cultures BC's Decimal Formatting rule is used with.
CULTURES: dict[str, tuple[str, str]] = {
    "invariant": (".", ""), "en-US": (".", ","), "en-GB": (".", ","), "da-DK": (",", "."),
    "de-DE": (",", "."), "nl-NL": (",", "."), "fr-FR": (",", "\u00a0"), "sv-SE": (",", "\u00a0"),
}


class RuleDirection(str, Enum):
    """Which pass a rule runs in (BC: Transformation Direction, plus ``both``)."""

    BOTH = "both"
    TO_DATAVERSE = "to_dataverse"  # BC: ToIntegrationTable
    TO_BUSINESS_CENTRAL = "to_business_central"  # BC: FromIntegrationTable


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    direction: RuleDirection | None = Field(
        default=None, description="pass(es) the rule runs in; default: the field's direction")

    def apply(self, value: Any, tables: dict[str, dict[Any, Any]] | None = None) -> Any:
        """The rule applied to one value (None and "" pass through unchanged)."""
        if value is None or value == "":
            return value
        return self._apply(value, tables or {})

    def _apply(self, value: Any, tables: dict[str, dict[Any, Any]]) -> Any:
        raise NotImplementedError

    def describe(self) -> str:
        """Short text for listings, e.g. ``substring(4, 3)``."""
        params = self.model_dump(exclude={"type", "direction"}, exclude_defaults=True)
        inner = ", ".join(f"{k}='{v}'" if isinstance(v, str) else f"{k}={v}"
                          for k, v in params.items())
        return f"{self.type}({inner})" if inner else str(self.type)  # type: ignore[attr-defined]


class Uppercase(_Rule):
    """BC: Uppercase."""

    type: Literal["uppercase"]

    def _apply(self, value: Any, tables: dict[str, dict[Any, Any]]) -> Any:
        return str(value).upper()


class Lowercase(_Rule):
    """BC: Lowercase."""

    type: Literal["lowercase"]

    def _apply(self, value: Any, tables: dict[str, dict[Any, Any]]) -> Any:
        return str(value).lower()


class Titlecase(_Rule):
    """BC: Title Case (first letter of each word upper, the rest lower)."""

    type: Literal["titlecase"]

    def _apply(self, value: Any, tables: dict[str, dict[Any, Any]]) -> Any:
        return re.sub(r"[^\W_]+", lambda m: m.group(0)[0].upper() + m.group(0)[1:].lower(),
                      str(value))


class Trim(_Rule):
    """BC: Trim (leading and trailing white space)."""

    type: Literal["trim"]

    def _apply(self, value: Any, tables: dict[str, dict[Any, Any]]) -> Any:
        return str(value).strip()


class Substring(_Rule):
    """BC: Substring; ``start`` is 1-based as in AL, ``length`` omitted = to the end."""

    type: Literal["substring"]
    start: int = Field(ge=1)
    length: int | None = Field(default=None, ge=0)

    def _apply(self, value: Any, tables: dict[str, dict[Any, Any]]) -> Any:
        text = str(value)[self.start - 1:]
        return text if self.length is None else text[: self.length]


class MaxLength(_Rule):
    """At most ``length`` characters: a longer value fails the record with a message naming
    the value and the limit (``on_longer: error``, the default), or is cut (``truncate``).

    BC has no such rule: a value longer than the destination field fails there with the
    service's "The length of the string is ..." error. The rule states that limit in the
    mapping, fails before the request with a clearer message, and tells ``validate --live``
    that the length difference is handled.
    """

    type: Literal["max_length"]
    length: int = Field(ge=1)
    on_longer: Literal["error", "truncate"] = "error"

    def _apply(self, value: Any, tables: dict[str, dict[Any, Any]]) -> Any:
        text = str(value)
        if len(text) <= self.length:
            return value
        if self.on_longer == "truncate":
            return text[: self.length]
        raise ValueError(f"{text!r} has {len(text)} characters; the destination holds at most "
                         f"{self.length}")


class Replace(_Rule):
    """BC: Replace Text."""

    type: Literal["replace"]
    find: str = Field(min_length=1)
    replace: str = ""

    def _apply(self, value: Any, tables: dict[str, dict[Any, Any]]) -> Any:
        return str(value).replace(self.find, self.replace)


class RegexReplace(_Rule):
    """BC: Regular Expression - Replace (Python ``re`` syntax; ``\\1`` for groups)."""

    type: Literal["regex_replace"]
    pattern: str = Field(min_length=1)
    replace: str = ""

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
        return value

    def _apply(self, value: Any, tables: dict[str, dict[Any, Any]]) -> Any:
        return re.sub(self.pattern, self.replace, str(value))


class AlphanumericOnly(_Rule):
    """BC: Remove Non-Alphanumeric Characters."""

    type: Literal["alphanumeric_only"]

    def _apply(self, value: Any, tables: dict[str, dict[Any, Any]]) -> Any:
        return "".join(c for c in str(value) if c.isalnum())


def _check_strftime(value: str) -> str:
    if "%" not in value:
        raise ValueError("use Python strftime codes, e.g. '%Y%m%d' for BC's 'yyyyMMdd'")
    try:
        datetime(2000, 1, 2, 3, 4, 5).strftime(value)
    except ValueError as exc:
        raise ValueError(f"not a valid strftime format: {exc}") from None
    return value


class DateFormat(_Rule):
    """BC: Date Formatting: read a date (ISO, or ``input_format``) and write it as ``format``."""

    type: Literal["date_format"]
    format: str
    input_format: str | None = None

    @field_validator("format", "input_format")
    @classmethod
    def _formats(cls, value: str | None) -> str | None:
        return value if value is None else _check_strftime(value)

    def _apply(self, value: Any, tables: dict[str, dict[Any, Any]]) -> Any:
        return _parse_when(value, self.input_format, date_only=True).strftime(self.format)


class DateTimeFormat(_Rule):
    """BC: Date and Time Formatting (as ``date_format``, keeping the time)."""

    type: Literal["datetime_format"]
    format: str
    input_format: str | None = None

    @field_validator("format", "input_format")
    @classmethod
    def _formats(cls, value: str | None) -> str | None:
        return value if value is None else _check_strftime(value)

    def _apply(self, value: Any, tables: dict[str, dict[Any, Any]]) -> Any:
        return _parse_when(value, self.input_format, date_only=False).strftime(self.format)


def _parse_when(value: Any, fmt: str | None, *, date_only: bool) -> date | datetime:
    if isinstance(value, datetime | date):
        return value
    text = str(value)
    when = (datetime.strptime(text, fmt) if fmt
            else datetime.fromisoformat(text.replace("Z", "+00:00")))
    return when.date() if date_only else when


class DecimalFormat(_Rule):
    """BC: Decimal Formatting: a number as text with ``decimals`` places in ``culture``."""

    type: Literal["decimal_format"]
    decimals: int | None = Field(default=None, ge=0, le=15)
    culture: str = "invariant"

    @field_validator("culture")
    @classmethod
    def _known_culture(cls, value: str) -> str:
        if value not in CULTURES:
            raise ValueError(f"unknown culture {value!r}; allowed: {', '.join(CULTURES)}")
        return value

    def _apply(self, value: Any, tables: dict[str, dict[Any, Any]]) -> Any:
        number = _decimal(value)
        if self.decimals is not None:
            number = number.quantize(Decimal(1).scaleb(-self.decimals), ROUND_HALF_UP)
        point, group = CULTURES[self.culture]
        text = f"{number:,f}" if group else f"{number:f}"
        return text.replace(",", "\0").replace(".", point).replace("\0", group)


class Round(_Rule):
    """BC: Round: to the nearest multiple of ``precision`` (e.g. 0.01, 1, 1000)."""

    type: Literal["round"]
    precision: float = Field(gt=0)

    def _apply(self, value: Any, tables: dict[str, dict[Any, Any]]) -> Any:
        step = Decimal(str(self.precision))
        rounded = (_decimal(value) / step).quantize(Decimal(1), ROUND_HALF_UP) * step
        return float(rounded) if not isinstance(value, int) else int(rounded)


def _decimal(value: Any) -> Decimal:
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"{value!r} is not a number") from None
    if not number.is_finite() or (isinstance(value, float) and math.isnan(value)):
        raise ValueError(f"{value!r} is not a number")
    return number


class FieldLookup(_Rule):
    """BC: Field Lookup: replace the value by ``field`` of the ``entity_set`` record whose
    ``key`` equals it (e.g. paymentTermsId -> paymentTerms.code, or back with key/field swapped).

    The entity set is on the Business Central side. ``apply`` needs ``tables[entity_set]`` as a
    dict key value -> field value; the engine builds it by reading the entity set once per pass.
    """

    type: Literal["field_lookup"]
    # OData names: the engine reads ``entity_set`` with ``$select=key,field``.
    entity_set: str = Field(min_length=1, pattern=ODATA_NAME)
    key: str = Field(default="id", min_length=1, pattern=ODATA_NAME)
    field: str = Field(min_length=1, pattern=ODATA_NAME)
    if_not_found: Literal["error", "blank", "original"] = Field(
        default="error", description="BC's Field Lookup Rule: Target / Original If Target Is Blank")

    def describe(self) -> str:
        """``field_lookup(paymentTerms.id->code)``."""
        return f"field_lookup({self.entity_set}.{self.key}->{self.field})"

    @property
    def table_name(self) -> str:
        """The ``tables`` key this rule reads: ``entity_set.key->field``."""
        return f"{self.entity_set}.{self.key}->{self.field}"

    def _apply(self, value: Any, tables: dict[str, dict[Any, Any]]) -> Any:
        table = tables.get(self.table_name)
        if table is None:
            raise LookupError(f"field_lookup needs the table {self.table_name}")
        if value in table:
            return table[value]
        if self.if_not_found == "original":
            return value
        if self.if_not_found == "blank":
            return ""
        raise LookupError(f"no {self.entity_set} record with {self.key} = {value!r}")


Rule = Annotated[
    Uppercase | Lowercase | Titlecase | Trim | Substring | MaxLength | Replace | RegexReplace
    | AlphanumericOnly | DateFormat | DateTimeFormat | DecimalFormat | Round | FieldLookup,
    Field(discriminator="type"),
]
RULE_TYPES = ["uppercase", "lowercase", "titlecase", "trim", "substring", "max_length",
              "replace", "regex_replace", "alphanumeric_only", "date_format", "datetime_format",
              "decimal_format", "round", "field_lookup"]
TEXT_RULES = {"uppercase", "lowercase", "titlecase", "trim", "substring", "replace",
              "regex_replace", "alphanumeric_only", "date_format", "datetime_format",
              "decimal_format"}
# Rules that never make a text longer (an upper-cased text can be: 'ß' -> 'SS').
NOT_LONGER_RULES = {"trim", "lowercase", "alphanumeric_only", "substring", "max_length"}


def length_bound(rules: list[Any]) -> int | None:
    """The most characters a chain can produce, when a ``substring`` or ``max_length`` in it
    bounds the result and no later rule can lengthen it; None when unbounded."""
    bound: int | None = None
    for rule in rules:
        limit = rule.length if isinstance(rule, MaxLength | Substring) else None
        if limit is not None:
            bound = limit if bound is None else min(bound, limit)
        elif rule.type not in NOT_LONGER_RULES:
            bound = None
    return bound


def apply_chain(rules: list[Any], value: Any, tables: dict[str, dict[Any, Any]] | None = None
                ) -> Any:
    """Apply rules in order (the chain of BC's Next Transformation Rule)."""
    for rule in rules:
        value = rule.apply(value, tables)
    return value
