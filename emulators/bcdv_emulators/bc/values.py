"""Business Central value conversion: wire <-> stored forms, etags, error helpers."""
from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from typing import Any

from bcdv_emulators.base import Resp, ServiceError
from bcdv_emulators.bc.schema import BLANK
from bcdv_emulators.model import EntityDef, Prop
from bcdv_emulators.odata import GUID_RE, valid_date

SUCCESS_CT = "application/json; odata.metadata=minimal; odata.streaming=true"


class BCError(ServiceError):
    """An error answered in Business Central's shape."""


def error_resp(status: int, code: str, message: str,
               headers: list[tuple[str, str]] | None = None, entity: str = "-") -> Resp:
    """``{"error":{"code","message"}}`` with BC's ``  CorrelationId:  <guid>.`` suffix."""
    msg = message if "CorrelationId" in message else \
        f"{message}  CorrelationId:  {uuid.uuid4()}."
    body = json.dumps({"error": {"code": code, "message": msg}}, ensure_ascii=False).encode()
    # Recorded BC 404s are plain JSON without OData-Version; other errors are OData JSON.
    ctype = "application/json" if status == 404 else "application/json; odata.metadata=minimal"
    hdrs = [("Content-Type", ctype), ("request-id", str(uuid.uuid4()))]
    if status != 404:
        hdrs.append(("OData-Version", "4.0"))
    return Resp(status, body, hdrs + list(headers or []), entity)


def format_datetime(ms: int | None) -> str:
    """Epoch ms -> ``2025-03-05T19:19:22.37Z`` (trailing zeros trimmed; blank = 0001-01-01)."""
    if ms is None:
        return "0001-01-01T00:00:00Z"
    secs, frac = divmod(int(ms), 1000)
    stamp = dt.datetime.fromtimestamp(secs, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    if frac:
        stamp += "." + f"{frac:03d}".rstrip("0")
    return stamp + "Z"


def sql_datetime_ms(ms: float) -> int:
    """Round epoch ms like SQL Server ``datetime`` (1/300 s: .000/.003/.007)."""
    secs, frac = divmod(int(ms), 1000)
    shown = round(round(frac * 0.3) * 10 / 3)
    return secs * 1000 + shown


def etag(rv: int) -> str:
    """Weak etag ``W/"<base64 of '<n>;<digits>;00;'>"`` that changes with the row version."""
    digits = str(10 ** 19 + int(rv) * 7 + 1)
    raw = f"'{len(digits) - 1};{digits};00;'".encode()
    return 'W/"' + base64.b64encode(raw).decode() + '"'


def etag_wellformed(value: str) -> bool:
    """True if ``value`` looks like an etag this service could have issued."""
    v = value.strip()
    if v.startswith("W/"):
        v = v[2:]
    if len(v) < 2 or not (v.startswith('"') and v.endswith('"')):
        return False
    try:
        raw = base64.b64decode(v[1:-1], validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return False
    return raw.startswith("'") and raw.endswith(";'") and raw.count(";") == 3


def normalise_enum(value: str) -> str:
    """``' '``/``''`` -> ``_x0020_``; spaces in member names -> ``_x0020_``."""
    if value.strip() == "":
        return BLANK
    return value.replace(" ", "_x0020_")


def to_wire(p: Prop, value: Any, lcy: str = "") -> Any:
    """Stored value -> JSON value."""
    if p.kind == "datetime":
        return format_datetime(value)
    if p.kind == "bool":
        return bool(value)
    if p.kind in ("decimal", "money", "double"):
        v = float(value or 0)
        return int(v) if v.is_integer() else v
    if p.kind in ("int", "bigint"):
        return int(value or 0)
    if p.name == "currencyCode" and not value:
        return lcy
    return "" if value is None else value


def _bad_type(p: Prop) -> BCError:
    return BCError(400, "BadRequest", f"Cannot convert a primitive value to the expected type "
                                      f"'{p.edm}'. See the inner exception for more details.")


def from_wire(ent: EntityDef, p: Prop, value: Any) -> Any:
    """Validate a JSON value for ``p`` and return its stored form (raises BCError)."""
    if value is None:
        raise BCError(400, "BadRequest", f"A null value was found for the property named "
                                         f"'{p.name}', which has the expected type "
                                         f"'{p.edm}[Nullable=False]'. The expected type "
                                         f"'{p.edm}[Nullable=False]' does not allow null values.")
    if p.kind in ("string", "code"):
        if not isinstance(value, str):
            raise _bad_type(p)
        if p.kind == "code":  # AL Code: leading/trailing spaces removed, upper-cased
            value = value.strip()
        if p.max_len is not None and len(value) > p.max_len:
            raise BCError(400, "Application_StringExceededLength",
                          f"The length of the string is {len(value)}, but it must be less than "
                          f"or equal to {p.max_len} characters. Value: {value}")
        return value.upper() if p.kind == "code" else value
    if p.kind == "guid":
        if not isinstance(value, str) or not GUID_RE.match(value.strip("{}")):
            raise BCError(400, "Application_InvalidGUID",
                          "Invalid format of GUID string. The correct format of the GUID string "
                          "is: CDEF7890-ABCD-1234-ABCD-1234567890AB where 0-9, A-F symbolizes "
                          "hexadecimal digits.")
        return value.strip("{}").lower()
    if p.kind in ("decimal", "int", "bigint"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _bad_type(p)
        if (p.min_value is not None and value < p.min_value) or \
                (p.max_value is not None and value > p.max_value):
            raise BCError(400, "Application_FieldValidationException",
                          f"The value must be greater than or equal to {p.min_value:g} and less "
                          f"than or equal to {p.max_value:g}. Value: {value}")
        return value
    if p.kind == "bool":
        if not isinstance(value, bool):
            raise _bad_type(p)
        return 1 if value else 0
    if p.kind == "enum":
        if not isinstance(value, str):
            raise _bad_type(p)
        norm = normalise_enum(value)
        if norm not in p.members:
            # As use-odata-batch.md shows for items.type (API v2.0): code Unknown, the
            # members by caption.
            options = ",".join(m.replace(BLANK, " ") for m in p.members)
            raise BCError(400, "Unknown", f"'{value}' is not an option. The existing options "
                                          f"are: {options}")
        return norm
    if p.kind == "date":
        if not isinstance(value, str) or not valid_date(value):
            raise BCError(400, "BadRequest", f"Cannot convert the literal '{value}' to the "
                                             "expected type 'Edm.Date'.")
        return value
    raise _bad_type(p)
