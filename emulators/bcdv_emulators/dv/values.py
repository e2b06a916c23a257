"""Dataverse values: wire <-> stored conversion, formatted values, errors."""
from __future__ import annotations

import datetime as dt
import fnmatch
import json
import uuid
from typing import Any

from bcdv_emulators.base import Resp, ServiceError
from bcdv_emulators.model import EntityDef, Prop
from bcdv_emulators.odata import GUID_RE, parse_datetime, valid_date

SUCCESS_CT = "application/json; odata.metadata=minimal"
FORMATTED = "OData.Community.Display.V1.FormattedValue"
LOOKUP_NAME = "Microsoft.Dynamics.CRM.lookuplogicalname"
NAV_NAME = "Microsoft.Dynamics.CRM.associatednavigationproperty"


class DVError(ServiceError):
    """An error answered in Dataverse's shape."""


def error_resp(status: int, code: str, message: str,
               headers: list[tuple[str, str]] | None = None, entity: str = "-") -> Resp:
    """``{"error":{"code","message"}}``."""
    body = json.dumps({"error": {"code": code, "message": message}}, ensure_ascii=False).encode()
    return Resp(status, body, [("Content-Type", "application/json; odata.metadata=minimal"),
                               ("OData-Version", "4.0"), *(headers or [])], entity)


def invalid_property(ent: EntityDef, name: str) -> DVError:
    """0x0 for a body property the table does not have (case-sensitive names)."""
    return DVError(400, "0x0", "An error occurred while validating input parameters: "
                               f"Microsoft.Crm.CrmException: Invalid property '{name}' was found "
                               f"in entity 'Microsoft.Dynamics.CRM.{ent.logical_name}'. ---> "
                               "Microsoft.OData.ODataException: Does not support untyped value "
                               "in non-open type.")


HELP_LINK = "https://go.microsoft.com/fwlink/?linkid=2195293"


def segment_not_found(segment: str) -> DVError:
    """404 0x8006088a for an unknown entity set, function or action name (case-sensitive).

    https://learn.microsoft.com/troubleshoot/power-platform/power-apps/web-api-client-errors
    """
    return DVError(404, "0x8006088a", f"Resource not found for the segment '{segment}'.")


def payload_error(set_name: str, inner: str) -> DVError:
    """400 0x80048d19: the OData reader rejected an entity payload (``inner`` is the
    InnerException text, e.g. an undeclared @odata.bind navigation property).

    https://learn.microsoft.com/troubleshoot/power-platform/power-apps/web-api-client-errors
    """
    return DVError(400, "0x80048d19", f"Error identified in Payload provided by the user for "
                                      f"Entity :'{set_name}', For more information on this "
                                      f"error please follow this help link {HELP_LINK}  ---->  "
                                      f"InnerException : {inner}")


def invalid_json(set_name: str) -> DVError:
    """A body that is not JSON (truncated, bad escapes, lone surrogates, too deep).

    The envelope is the payload error's; the inner text is the emulator's (unverified)."""
    return payload_error(set_name, "Microsoft.OData.ODataException: Invalid JSON. The request "
                                   "body could not be parsed as JSON.")


def parse_json_body(body: bytes, set_name: str) -> Any:
    """Request bytes -> JSON value (None when empty); anything unparsable -> 400, never 500.

    Catches whatever the shared strict parser raises (ValueError family), nesting too deep
    for the parser (RecursionError), and strings the service could not store: lone UTF-16
    surrogates (``"\\ud800"``) survive Python's json but not UTF-8 encoding.
    """
    from bcdv_emulators.base import strict_json
    if not body.strip():
        return None
    try:
        value = strict_json(body.decode("utf-8"))
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except (ValueError, UnicodeError, RecursionError, TypeError):
        raise invalid_json(set_name) from None
    return value


def not_found(logical: str, key: str) -> DVError:
    """404 0x80040217."""
    return DVError(404, "0x80040217", f"{logical} With Id = {key} Does Not Exist")


def format_datetime(ms: int | None) -> str | None:
    """Epoch ms -> ``2016-09-28T22:57:53Z`` (no fractional seconds)."""
    if ms is None:
        return None
    return dt.datetime.fromtimestamp(int(ms) // 1000, dt.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


def _literal_error(value: Any, edm: str) -> DVError:
    return DVError(400, "0x0", "An error occurred while validating input parameters: "
                               "Microsoft.OData.ODataException: Cannot convert the literal "
                               f"'{value}' to the expected type '{edm}'.")


def validation_error(message: str) -> DVError:
    """0x80044331 "A validation error occurred." family."""
    return DVError(400, "0x80044331", f"A validation error occurred.  {message}")


def from_wire(ent: EntityDef, p: Prop, value: Any) -> Any:
    """Validate a JSON value for column ``p`` -> stored form (raises DVError)."""
    if value is None:
        if p.required_level == "SystemRequired":
            raise DVError(400, "0x80040203", f"Attribute '{p.name}' cannot be set to NULL")
        return None
    k = p.kind
    if k in ("string", "memo"):
        if not isinstance(value, str):
            raise _literal_error(value, p.edm)
        if p.max_len is not None and len(value) > p.max_len:
            raise validation_error(f"The length of the '{p.name}' attribute of the "
                                   f"'{ent.logical_name}' entity exceeded the maximum allowed "
                                   f"length of '{p.max_len}'.")
        return value
    if k == "guid":
        if not isinstance(value, str) or not GUID_RE.match(value):
            raise _literal_error(value, "Edm.Guid")
        return value.lower()
    if k in ("int", "bigint", "option"):
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise _literal_error(value, p.edm)
        if k == "option" and value not in p.options:
            accepted = ",".join(str(v) for v in p.options)
            raise validation_error(f"The value {value} of '{p.name}' on record of type "
                                   f"'{ent.logical_name}' is outside the valid range. Accepted "
                                   f"Values: {accepted}")
        _check_range(ent, p, value)
        return value
    if k in ("decimal", "money", "double"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _literal_error(value, p.edm)
        _check_range(ent, p, value)
        return round(float(value), 4) if k == "money" else float(value)
    if k == "bool":
        if not isinstance(value, bool):
            raise _literal_error(value, "Edm.Boolean")
        return 1 if value else 0
    if k == "datetime":
        ms = parse_datetime(value) if isinstance(value, str) else None
        if ms is None:
            raise _literal_error(value, "Edm.DateTimeOffset")
        return ms // 1000 * 1000
    if k == "date":
        if not isinstance(value, str) or not valid_date(value):
            raise _literal_error(value, "Edm.Date")
        return value
    raise _literal_error(value, p.edm)


def _check_range(ent: EntityDef, p: Prop, value: float) -> None:
    if (p.min_value is not None and value < p.min_value) or \
            (p.max_value is not None and value > p.max_value):
        raise validation_error(f"The value {value} of '{p.name}' on record of type "
                               f"'{ent.logical_name}' is outside the valid range. Accepted "
                               f"Values: {p.min_value:g} to {p.max_value:g}")


def to_wire(p: Prop, value: Any) -> Any:
    """Stored -> JSON value."""
    if value is None:
        return None
    if p.kind == "datetime":
        return format_datetime(value)
    if p.kind == "bool":
        return bool(value)
    if p.kind in ("int", "bigint", "option"):
        return int(value)
    if p.kind in ("decimal", "money", "double"):
        return float(value)
    if p.kind == "bigint":
        return int(value)
    return value


def formatted(p: Prop, value: Any, symbol: str = "$") -> str | None:
    """The FormattedValue annotation text (en-US)."""
    if value is None:
        return None
    if p.kind == "option":
        return p.options.get(int(value), str(value))
    if p.kind == "bool":
        return "Yes" if value else "No"
    if p.kind == "money":
        return f"{symbol}{float(value):,.2f}"
    if p.kind in ("int", "bigint"):
        return f"{int(value):,}"
    if p.kind in ("decimal", "double"):
        return f"{float(value):,.2f}"
    if p.kind == "datetime":
        d = dt.datetime.fromtimestamp(int(value) // 1000, dt.timezone.utc)
        return f"{d.month}/{d.day}/{d.year} {d.strftime('%I:%M %p').lstrip('0')}"
    return None


def annotation_filter(prefer_value: str | None) -> list[str]:
    """Patterns from ``odata.include-annotations`` ("*" or a comma list)."""
    if prefer_value is None:
        return []
    return [x.strip() for x in prefer_value.split(",") if x.strip()]


def wants(patterns: list[str], name: str) -> bool:
    """True if the annotation ``name`` is requested."""
    return any(fnmatch.fnmatchcase(name, pat) for pat in patterns)


def new_id() -> str:
    """A fresh GUID."""
    return str(uuid.uuid4())
