"""Which field and value an API error is about, read from the service's own message.

Neither service returns the failing property as data: Business Central's message names the
value only ("The length of the string is 13, but it must be less than or equal to 10
characters. Value: United States"), so the field is the one in the payload we sent that holds
that value; Dataverse's messages usually name the attribute ("The length of the
'address1_country' attribute of the 'account' entity exceeded ..."), so the value is the
payload's. A message that names neither gives neither: the row keeps the full text.

The message formats are the ones documented on Learn (Business Central's "Error codes" of
the API reference; Dataverse's "Troubleshoot Web API client errors" and its Web API error
handling page) and reproduced by the emulators (bcdv_emulators.bc.values, .dv.values).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Business Central ends every message with "  CorrelationId:  <guid>."
_BC_TAIL = re.compile(r"\s+CorrelationId:\s*\S*\s*$", re.IGNORECASE)
# A value quoted at the end of a message: "... Value: United States".
_BC_VALUE = re.compile(r"\bValue:\s?(?P<value>.*?)\s*$", re.DOTALL)
_BC_PATTERNS = (
    # A property the message names (OData reader errors).
    re.compile(r"property named '(?P<field>[^']+)'"),
    re.compile(r"The property '(?P<field>[^']+)' does not exist"),
    # 'The "currencyCode" does not match to a Currency.'
    re.compile(r'^The "(?P<field>[A-Za-z0-9_]+)" does not match'),
    # "The field Salesperson Code of table Customer contains a value (X) that cannot be found"
    re.compile(r"contains a value \((?P<value>[^)]*)\) that cannot be found"),
    # "'Z' is not an option. The existing options are: ..."
    re.compile(r"^'(?P<value>[^']*)' is not an option"),
    re.compile(r"Cannot convert the literal '(?P<value>[^']*)'"),
)
_DV_PATTERNS = (
    # "A validation error occurred.  The length of the 'subject' attribute of the 'task'
    # entity exceeded the maximum allowed length of '200'."
    re.compile(r"The length of the '(?P<field>[^']+)' attribute"),
    # "The value 7 of 'customertypecode' on record of type 'account' is outside the valid range"
    re.compile(r"The value (?P<value>\S+) of '(?P<field>[^']+)' on record of type"),
    # "Attribute 'name' cannot be set to NULL"
    re.compile(r"\b[Aa]ttribute '(?P<field>[^']+)'"),
    # "Invalid property 'Name' was found in entity 'Microsoft.Dynamics.CRM.account'"
    re.compile(r"Invalid property '(?P<field>[^']+)' was found"),
    re.compile(r"undeclared property '(?P<field>[^']+)'"),
    re.compile(r"Could not find a property named '(?P<field>[^']+)'"),
    re.compile(r"Cannot convert the literal '(?P<value>[^']*)'"),
)


@dataclass(frozen=True)
class ApiErrorDetail:
    """What an error row says beyond the message: the API's code, the field and the value
    the service rejected (None when the message does not tell)."""

    code: str | None = None
    field: str | None = None
    value: str | None = None


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _field_holding(payload: Mapping[str, Any], value: str) -> str | None:
    """The payload's field whose value is ``value`` (Business Central trims and upper-cases
    Code fields before it checks them, so those compare trimmed and case-blind)."""
    exact = [k for k, v in payload.items() if isinstance(v, str) and v == value]
    if len(exact) == 1:
        return exact[0]
    loose = [k for k, v in payload.items()
             if v is not None and str(v).strip().casefold() == value.strip().casefold()]
    return loose[0] if len(loose) == 1 else None


def _as_sent(value: str, payload: Mapping[str, Any]) -> str:
    """A value quoted at a message's end may carry the sentence's full stop."""
    sent = {str(v) for v in payload.values() if v is not None}
    if value not in sent and value.rstrip(".") in sent:
        return value.rstrip(".")
    return value


def _bind_field(field: str) -> str:
    """A lookup is sent as ``<nav>@odata.bind``: the error names the navigation property."""
    return field.removesuffix("@odata.bind")


def parse_business_central(message: str, payload: Mapping[str, Any] | None = None,
                           code: str | None = None) -> ApiErrorDetail:
    """Field and value of a Business Central API error (``payload``: what was sent)."""
    body = _BC_TAIL.sub("", message or "").strip()
    sent = payload or {}
    field: str | None = None
    value: str | None = None
    if "Value:" in body:
        found = _BC_VALUE.search(body)
        if found:
            value = _as_sent(found.group("value"), sent)
    if value is None:
        for pattern in _BC_PATTERNS:
            found = pattern.search(body)
            if found is None:
                continue
            groups = found.groupdict()
            field, value = groups.get("field"), groups.get("value")
            break
    if field is None and value is not None:
        field = _field_holding(sent, value)
    if field is not None and value is None and field in sent:
        value = _text(sent[field])
    return ApiErrorDetail(code or None, field, value)


def parse_dataverse(message: str, payload: Mapping[str, Any] | None = None,
                    code: str | None = None) -> ApiErrorDetail:
    """Field and value of a Dataverse Web API error (``payload``: what was sent)."""
    sent = {_bind_field(k): v for k, v in (payload or {}).items()}
    field: str | None = None
    value: str | None = None
    for pattern in _DV_PATTERNS:
        found = pattern.search(message or "")
        if found is None:
            continue
        groups = found.groupdict()
        field, value = groups.get("field"), groups.get("value")
        break
    if field is None and value is not None:
        field = _field_holding(sent, value)
    if field is not None and value is None and field in sent:
        value = _text(sent[field])
    return ApiErrorDetail(code or None, field, value)


def parse_api_error(system: str, message: str, payload: Mapping[str, Any] | None = None,
                    code: str | None = None) -> ApiErrorDetail:
    """``parse_business_central`` or ``parse_dataverse`` by the system that answered."""
    if system == "business_central":
        return parse_business_central(message, payload, code)
    return parse_dataverse(message, payload, code)
