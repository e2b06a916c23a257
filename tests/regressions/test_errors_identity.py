"""The same error twice makes a record Skipped (BC's rule), even though every API answer
carries its own correlation id, activity id or timestamp."""

from __future__ import annotations

import pytest

from bcdv.state.errors import error_identity
from engine.conftest import make_mapping

BC_LENGTH = ("The length of the string is 40, but it must be less than or equal to 30 "
             "characters. Value: {value}  CorrelationId:  {cid}.")


@pytest.mark.parametrize(("first", "second"), [
    (BC_LENGTH.format(value="x" * 40, cid="6f1c1e0a-2b7b-4d4e-9a4f-0e6c0b0d8f11"),
     BC_LENGTH.format(value="x" * 40, cid="a3b1c0de-1111-4222-8333-944455556666")),
    ("Entity 'account' With Id = 8f3d3c2e-1e4b-4a4e-9c1a-2b3c4d5e6f70 Does Not Exist",
     "Entity 'account' With Id = {8F3D3C2E-1E4B-4A4E-9C1A-2B3C4D5E6F70} Does Not Exist"),
    ("Generic SQL error. ActivityId: 1b2c3d4e-0000-4000-8000-000000000001, "
     "Timestamp: 2025-03-05T19:19:22.37Z",
     "Generic SQL error. ActivityId: 9b2c3d4e-0000-4000-8000-000000000009, "
     "Timestamp: 2025-03-05T19:19:48.1234567Z"),
    ("Request failed at 3/5/2025 7:19:22 PM (request id: 81234567)",
     "Request failed at 3/6/2025 10:01:02 AM (request id: 99999912)"),
    ("Server busy.  Session ID 51235, trace 4bf92f3577b34da6a3ce929d0e0e4736",
     "Server busy.  Session ID 77, trace 00f067aa0ba902b7a3ce929d0e0e4736"),
    ("Invalid argument.", "Invalid argument. "),
])
def test_errors_that_differ_only_in_ids_and_timestamps_are_the_same_error(
        first: str, second: str) -> None:
    assert error_identity(first) == error_identity(second)


@pytest.mark.parametrize(("first", "second"), [
    ("Invalid argument: first rule.", "Invalid argument: second rule."),
    (BC_LENGTH.format(value="x" * 40, cid="6f1c1e0a-2b7b-4d4e-9a4f-0e6c0b0d8f11"),
     BC_LENGTH.format(value="y" * 40, cid="6f1c1e0a-2b7b-4d4e-9a4f-0e6c0b0d8f11")),
    ("The length of the string is 40, but it must be less than or equal to 30 characters.",
     "The length of the string is 40, but it must be less than or equal to 50 characters."),
    ("Error 0x80040203: bad value.", "Error 0x80040220: bad value."),
])
def test_errors_that_differ_in_their_text_are_different_errors(first: str, second: str) -> None:
    assert error_identity(first) != error_identity(second)


def test_code_and_field_are_part_of_the_error_identity() -> None:
    assert error_identity("Bad.", code="A") != error_identity("Bad.", code="B")
    assert error_identity("Bad.", field="name") != error_identity("Bad.", field="city")
    assert error_identity("Bad.", code="A", field="name") == error_identity(
        "Bad.  CorrelationId:  6f1c1e0a-2b7b-4d4e-9a4f-0e6c0b0d8f11.", code="A", field="name")


def test_same_api_error_twice_with_new_correlation_ids_makes_the_record_skipped(
        env) -> None:
    mapping = make_mapping()
    bc_id, dv_id = env.coupled_pair(mapping)
    env.sync(mapping)
    too_long = "+1 425 555 0100 extension 1234567890123"  # BC's phoneNumber holds 30
    env.dv_edit(dv_id, telephone1=too_long)
    first = env.sync(mapping)["to_business_central"]
    assert first.failed == 1, first.records
    assert "CorrelationId" in first.records[0].message
    assert not bool(env.coupling(mapping, bc_id=bc_id)["skipped"])
    second = env.sync(mapping)["to_business_central"]
    assert (second.failed, second.skipped) == (0, 1), second.records
    assert first.records[0].message.split("CorrelationId")[1] != \
        second.records[0].message.split("CorrelationId")[1]
    assert bool(env.coupling(mapping, bc_id=bc_id)["skipped"])
    errors = [e for e in env.state.errors(mapping.name) if e["source_id"] == dv_id]
    assert len(errors) == 1 and errors[0]["attempts"] == 2
    assert "CorrelationId:" in errors[0]["message"]  # the row keeps the full text
