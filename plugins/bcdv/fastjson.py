"""JSON on the hot paths (staging lines, state documents, request and response bodies),
through msgspec (it comes with Airflow): about ten times faster to write and three times
faster to read than the standard library, which a pass does for every record several times.

Values the standard library's callers used to hand to ``default=`` are handled the same way
here: numpy scalars become Python numbers, pandas timestamps ISO text, NaT and NaN null.
``dumps(..., strict=True)`` refuses any other type (staging: a value that cannot be staged
is a bug); otherwise it is written as its ``str`` (state documents: ``default=str``).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import msgspec
import numpy as np
import pandas as pd

_UNKNOWN = object()


def _portable(value: Any) -> Any:
    """``value`` in a type msgspec writes, or ``_UNKNOWN``."""
    if isinstance(value, np.generic):
        return value.item()
    if value is pd.NaT:
        return None
    if isinstance(value, datetime):  # a pandas Timestamp (msgspec takes datetime itself)
        return value.isoformat()
    return _UNKNOWN


def _strict_hook(value: Any) -> Any:
    out = _portable(value)
    if out is _UNKNOWN:
        raise TypeError(f"cannot write a {type(value).__name__} as JSON")
    return out


def _lenient_hook(value: Any) -> Any:
    out = _portable(value)
    return str(value) if out is _UNKNOWN else out


_STRICT = msgspec.json.Encoder(enc_hook=_strict_hook)
_LENIENT = msgspec.json.Encoder(enc_hook=_lenient_hook)
_DECODER = msgspec.json.Decoder()


def dumpb(value: Any, *, strict: bool = False) -> bytes:
    """``value`` as compact UTF-8 JSON (NaN and infinities as null)."""
    return (_STRICT if strict else _LENIENT).encode(value)


def dumps(value: Any, *, strict: bool = False) -> str:
    """``dumpb`` as text."""
    return dumpb(value, strict=strict).decode("utf-8")


def lines(rows: list[Any], *, strict: bool = False) -> bytes:
    """Rows as JSON lines, each ending with a newline."""
    return (_STRICT if strict else _LENIENT).encode_lines(rows)


def loads(text: str | bytes) -> Any:
    """Decode one JSON document. What msgspec refuses goes to the standard library, which
    also reads NaN and Infinity (staged by earlier versions) and raises
    ``json.JSONDecodeError`` (a ValueError), with the position, when it is not JSON."""
    try:
        return _DECODER.decode(text)
    except msgspec.DecodeError:
        return json.loads(text)
