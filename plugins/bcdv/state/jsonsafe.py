"""The one place where values from records become bookkeeping: whatever a record holds
(NaN, NaT, infinities, pandas NA, bytes, Decimal, numpy scalars, timestamps), what reaches
XCom, the pass report, the job log and the error rows is strict JSON.

A record's values come from pandas frames, where a missing text is NaN and a missing
time NaT; ``json.dumps`` writes NaN as a bare token that strict parsers (Airflow's XCom
serialiser among them) refuse, failing the task that only wanted to report the record.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any
from uuid import UUID


def json_safe(value: Any) -> Any:
    """``value`` with every part made strict-JSON-compliant.

    Missing values (None, NaN, NaT, pd.NA, +-inf) become None; Decimal and numpy numbers
    become int/float; bytes become base64 text; date-times ISO 8601 text; sets lists;
    mappings and sequences are converted element by element; anything else is kept when
    it is a JSON primitive and turned into ``str`` otherwise.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Decimal):
        return _decimal(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return [json_safe(v) for v in sorted(value, key=repr)]
    return _scalar(value)


def safe_text(value: Any) -> str | None:
    """A text field of the bookkeeping (a name, a message): None for a missing value,
    else the value as text."""
    if value is None or type(value) is str:  # the common cases, as json_safe keeps them
        return value
    clean = json_safe(value)
    if clean is None or isinstance(clean, str):
        return clean
    return str(clean)


def _decimal(value: Decimal) -> int | float | None:
    if not value.is_finite():
        return None
    return int(value) if value == value.to_integral_value() and abs(value) < 2**53 else \
        float(value)


def _scalar(value: Any) -> Any:
    if _missing(value):
        return None
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    item = getattr(value, "item", None)  # numpy and pandas scalars
    if callable(item):
        try:
            return json_safe(item())
        except (TypeError, ValueError):
            pass
    to_pydatetime = getattr(value, "to_pydatetime", None)  # pandas Timestamp
    if callable(to_pydatetime):
        return to_pydatetime().isoformat()
    return str(value)


def _missing(value: Any) -> bool:
    try:
        import pandas as pd

        result = pd.isna(value)
    except (TypeError, ValueError, ImportError):
        return False
    return result is True or (isinstance(result, bool) and result)
