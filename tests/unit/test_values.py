"""Canonical values, hashes and diffs (tables of input -> output)."""

from __future__ import annotations

import pandas as pd
import pytest

from bcdv.engine.values import canon, hash_frame


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
