"""Every id and value that reaches a URL is validated and formatted by one function."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import pytest

from bcdv.clients import odata
from bcdv.errors import ConfigError

GUID = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
INJECTED = "00000000-0000-0000-0000-000000000000 or id ne 00000000-0000-0000-0000-000000000000"


def test_id_filter_refuses_a_value_that_is_not_a_guid() -> None:
    assert odata.id_filter("id", [GUID]) == f"id eq {GUID}"
    for bad in (INJECTED, "x'", "", GUID + ")"):
        with pytest.raises(ConfigError, match="not a GUID"):
            odata.id_filter("id", [bad])


def test_key_segment_refuses_a_value_that_is_not_a_guid() -> None:
    assert odata.key_segment("accounts", GUID.upper()) == f"accounts({GUID})"
    with pytest.raises(ConfigError, match="record_id"):
        odata.key_segment("accounts", "x) or (y", name="record_id")
    with pytest.raises(ConfigError, match="entity set"):
        odata.key_segment("accounts?$top=1", GUID)


def test_literal_formats_each_type_and_doubles_quotes() -> None:
    assert odata.literal("O'Neil") == "'O''Neil'"
    assert odata.literal("x' or 1 eq 1 or name eq '") == "'x'' or 1 eq 1 or name eq '''"
    assert odata.literal(odata.Guid(GUID.upper())) == GUID
    assert odata.literal(True) == "true" and odata.literal(None) == "null"
    assert odata.literal(3) == "3" and odata.literal(Decimal("1.50")) == "1.50"
    assert odata.literal(datetime(2025, 1, 31, 10, 0, 0, 123000, tzinfo=timezone.utc)) == (
        "2025-01-31T10:00:00.123Z")
    assert odata.compare("name", "eq", "A'B") == "name eq 'A''B'"
    with pytest.raises(ConfigError, match="property"):
        odata.compare("name eq 'x' or name", "eq", "y")
    with pytest.raises(ConfigError, match="number"):
        odata.literal(float("nan"))


def test_couplings_couple_refuses_an_id_that_is_not_a_guid(fresh: Any, bcdv: Any) -> None:
    """`bcdv couplings couple` with an OData expression as the id: a usage error naming the
    argument, no request, no coupling stored."""
    from bcdv.state.store import StateStore

    code, _, err = bcdv(fresh, "couplings", "couple", "customer", INJECTED, GUID)
    assert code == 2 and "bc_id" in err and "not a GUID" in err
    code, _, err = bcdv(fresh, "couplings", "couple", "customer", GUID, "x'")
    assert code == 2 and "dv_id" in err
    code, out, _ = bcdv(fresh, "couplings", "list", "customer", "--json")
    assert code == 0 and json.loads(out) == []
    assert StateStore(fresh.state_url).couplings("CUSTOMER").empty
