"""Canonical values, hashes and diffs of mapped fields, vectorised with pandas.

Both APIs spell "nothing" differently (Business Central: ``""``, a blank enum ``_x0020_``, the
null GUID; Dataverse: ``null``), and return numbers as 5000 or 5000.0000. Values are compared
and hashed in one canonical text form, so only a real change counts as a change.
"""

from __future__ import annotations

import hashlib
import math
import re
from typing import Any

import pandas as pd

NULL_GUID = "00000000-0000-0000-0000-000000000000"
_BLANKS = frozenset({"", "_x0020_", NULL_GUID, "0001-01-01"})
_GUID = re.compile(r"^\{?([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                   r"[0-9a-fA-F]{12})\}?$")


# BC's Type Helper treats timestamps less than 10 ms apart as equal.
TOLERANCE = pd.Timedelta(milliseconds=10)


def utc_times(values: pd.Series) -> pd.Series:
    """ISO 8601 times (texts or timestamps) as aware UTC times, NaT for anything else."""
    return pd.to_datetime(values, utc=True, errors="coerce", format="ISO8601")


def canon(value: Any) -> str:
    """The canonical text of one value ("" for every spelling of nothing)."""
    if value is None:
        return ""
    if isinstance(value, str):  # the common case first; only 36/38 characters can be a GUID
        text = str.strip(value)
        if len(text) in (36, 38):
            guid = _GUID.match(text)
            if guid:
                text = guid.group(1).lower()
        return "" if text in _BLANKS else text
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        if isinstance(value, float) and math.isnan(value):
            return ""
        number = float(value)
        return repr(round(number, 6)) if number != int(number) else str(int(number))
    text = str(value).strip()
    guid = _GUID.match(text)
    if guid:  # GUIDs are case-insensitive and may come in braces
        text = guid.group(1).lower()
    return "" if text in _BLANKS else text


def is_blank(value: Any) -> bool:
    """``canon(value) == ""`` (every spelling of nothing), text first without a GUID match:
    the only blank GUID is the null one, whose digits have no case."""
    if type(value) is str:
        text = str.strip(value)
        return text in _BLANKS or (len(text) == 38 and text[0] == "{" and text[-1] == "}"
                                   and text[1:-1] in _BLANKS)
    return value is None or canon(value) == ""


def same(a: Any, b: Any) -> bool:
    """Whether two values of one field, read from either system, are the same value.

    BC's field transfer compares per type, and Dataverse answers null where Business Central
    has the type's initial value: a null decimal or integer is 0, a null boolean is false, a
    null text, GUID, date or option is blank. The type is the non-null side's (the mapping
    does not declare types), so ``same(None, 0)`` and ``same(False, None)`` hold while
    ``same(None, "0")`` (a text) does not. The one place where values are compared.
    """
    ca, cb = canon(a), canon(b)
    if ca == cb:
        return True
    if ca and cb:
        return False
    other = b if ca == "" else a
    if isinstance(other, bool):
        return other is False
    if isinstance(other, (int, float)):
        return other == 0
    return False


def canon_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Every cell of a frame in canonical text form."""
    if frame.empty:
        return frame.astype(object)
    # Column lists, not Series.map: iterating a pandas column value by value costs more
    # than canon itself.
    return pd.DataFrame({c: [canon(v) for v in frame[c].tolist()] for c in frame.columns},
                        index=frame.index, columns=frame.columns, dtype=object)


def row_hash(values: dict[str, Any], columns: list[str]) -> str:
    """A stable 16-hex-digit hash of one record's values over the given columns."""
    text = "\x1f".join(f"{c}={canon(values.get(c))}" for c in sorted(columns))
    return hashlib.blake2b(text.encode("utf-8"), digest_size=8).hexdigest()


def canon_hash(canonical: dict[str, str], columns: list[str]) -> str:
    """``row_hash`` of values already in canonical form (canon of a canonical text is the
    text itself), without canonicalising them again."""
    text = "\x1f".join(f"{c}={canonical.get(c, '')}" for c in sorted(columns))
    return hashlib.blake2b(text.encode("utf-8"), digest_size=8).hexdigest()


def hash_frame(frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    """``row_hash`` of every row (order of columns does not matter)."""
    return _hash_rows(frame, columns, canon)


def canon_hash_frame(canonical: pd.DataFrame, columns: list[str]) -> pd.Series:
    """``hash_frame`` of a frame already in canonical form (``canon_frame``'s), without
    canonicalising its cells again."""
    return _hash_rows(canonical, columns, lambda v: "" if v is None else v)


def _hash_rows(frame: pd.DataFrame, columns: list[str], text: Any) -> pd.Series:
    if frame.empty:
        return pd.Series([], dtype=object, index=frame.index)
    cols = sorted(columns)
    if not cols:
        return pd.Series([row_hash({}, [])] * len(frame), index=frame.index, dtype=object)
    # Column by column (canon per column, one string join per row), then one digest per
    # row: the same text row_hash builds, without a dict and a generator per row.
    parts = [[f"{c}={text(v)}" for v in (frame[c].tolist() if c in frame else
                                          [None] * len(frame))] for c in cols]
    hashes = [hashlib.blake2b("\x1f".join(texts).encode("utf-8"), digest_size=8).hexdigest()
              for texts in zip(*parts, strict=True)]
    return pd.Series(hashes, index=frame.index, dtype=object)
