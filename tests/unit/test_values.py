"""Canonical values, hashes and diffs (tables of input -> output)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pandas as pd
import pytest

from bcdv.engine.values import NULL_GUID, canon, hash_frame, is_blank


@pytest.mark.parametrize(("value", "expected"), [
    (None, ""), ("", ""), ("  ", ""), ("_x0020_", ""),
    ("00000000-0000-0000-0000-000000000000", ""), ("0001-01-01", ""),
    (float("nan"), ""), ("Adatum ", "Adatum"), (5000, "5000"), (5000.0, "5000"),
    (5000.0000, "5000"), (12.5, "12.5"), (True, "true"), (False, "false"),
])
def test_canon(value: object, expected: str) -> None:
    assert canon(value) == expected


def test_hash_is_stable_and_order_independent() -> None:
    a = pd.DataFrame([{"name": "X", "city": "Y", "limit": 5000}])
    b = pd.DataFrame([{"limit": 5000.0, "city": "Y ", "name": "X"}])
    assert hash_frame(a, ["name", "city", "limit"]).iat[0] == \
        hash_frame(b, ["limit", "name", "city"]).iat[0]
    c = pd.DataFrame([{"name": "X", "city": "Z", "limit": 5000}])
    assert hash_frame(a, ["name", "city", "limit"]).iat[0] != \
        hash_frame(c, ["name", "city", "limit"]).iat[0]


@pytest.mark.parametrize("value", [
    None, "", " ", "_x0020_", " _x0020_ ", NULL_GUID, "{" + NULL_GUID + "}",
    " {" + NULL_GUID + "} ", "{" + NULL_GUID, NULL_GUID + "}",
    "{00000000-0000-0000-0000-00000000000A}",
    "0001-01-01", "abc", "{abc}", 0, 0.0, float("nan"), False, True, 1.5, Decimal("0"),
    date(1, 1, 1), "A1B2C3D4-0000-0000-0000-000000000000", "{" + "x" * 36 + "}"])
def test_is_blank_is_canon_of_nothing(value: object) -> None:
    # The transform's blank check takes the short way for text; it must agree with canon.
    assert is_blank(value) == (canon(value) == "")
