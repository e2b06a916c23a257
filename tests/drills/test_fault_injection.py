"""The emulators' fault injection the drills rely on: lost responses, targeted and counted
faults, held requests."""

from __future__ import annotations

import threading
import time

import pytest

from bcdv.clients.batch import BatchOp
from bcdv.errors import RetriableApiError

from .harness import DrillEnv


def test_lost_response_applies_a_bc_create_then_drops_the_connection(drill: DrillEnv) -> None:
    drill.admin("bc", "PUT", "faults", {"lost_response_count": 1, "lost_kinds": ["create"]})
    with pytest.raises(RetriableApiError) as err:
        drill.bc_new("Lost Create")
    assert "RemoteDisconnected" in str(err.value) or "Connection" in str(err.value)
    assert list(drill.by_name("bc")) == ["Lost Create"]
    assert drill.injected()["bc"]["lost_response:create"] == 1
    drill.bc_new("Answered Create")  # the count is used up
    assert sorted(drill.by_name("bc")) == ["Answered Create", "Lost Create"]


def test_lost_response_applies_a_bc_batch(drill: DrillEnv) -> None:
    drill.admin("bc", "PUT", "faults", {"lost_response_count": 1, "lost_kinds": ["batch"]})
    with pytest.raises(RetriableApiError):
        drill.bc.batch([BatchOp("POST", drill.bc.batch_url("customers"), {"displayName": n})
                        for n in ("Batch A", "Batch B")])
    assert sorted(drill.by_name("bc")) == ["Batch A", "Batch B"]


def test_lost_response_applies_a_dataverse_batch_and_bulk_message(drill: DrillEnv) -> None:
    drill.admin("dv", "PUT", "faults", {"lost_response_count": 2,
                                        "lost_kinds": ["batch", "bulk"]})
    with pytest.raises(RetriableApiError):
        drill.dv.batch([BatchOp("POST", "accounts", {"name": "DV Batch"})])
    with pytest.raises(RetriableApiError):
        drill.dv.create_multiple("accounts", "account", [{"name": "DV Bulk"}])
    assert sorted(drill.by_name("dv")) == ["DV Batch", "DV Bulk"]
    counts = drill.injected()["dv"]
    assert counts["lost_response:batch"] == counts["lost_response:bulk"] == 1


def test_a_refused_write_loses_no_response(drill: DrillEnv) -> None:
    """Only an applied write's answer is lost: a 4xx still arrives."""
    drill.admin("bc", "PUT", "faults", {"lost_response_count": 1, "lost_kinds": ["create"]})
    resp = drill.bc.http.session.post(drill.bc.url("customers"), json={"nosuchfield": 1},
                                      headers={"Authorization": "Bearer x"},
                                      verify=drill.endpoints["ca_bundle"], timeout=10)
    assert resp.status_code == 401
    assert drill.injected()["bc"]["lost_response"] == 0


def test_faults_can_target_request_kinds_and_are_counted(drill: DrillEnv) -> None:
    drill.admin("dv", "PUT", "faults", {"error_rates": {"503": 1.0}, "kinds": ["create"],
                                        "retry_after": 0})
    assert drill.dv.get("accounts", "00000000-0000-0000-0000-000000000001") is None
    with pytest.raises(RetriableApiError):
        drill.dv_new("Refused")
    counts = drill.injected()["dv"]
    assert counts["503"] >= 1 and set(counts) == {"503"}
    drill.admin("dv", "DELETE", "faults/injected")
    assert drill.injected()["dv"] == {}


def test_unknown_request_kinds_are_refused(drill: DrillEnv) -> None:
    import requests

    base = drill.endpoints["dataverse"]["base_url"]
    resp = requests.put(f"{base}/_emulator/faults", json={"kinds": ["writes"]},
                        verify=drill.endpoints["ca_bundle"], timeout=10)
    assert resp.status_code == 400 and "unknown request kinds" in resp.text


@pytest.mark.parametrize("when, applied", [("before", False), ("after", True)])
def test_a_held_request_stalls_until_released_then_is_dropped(drill: DrillEnv, when: str,
                                                             applied: bool) -> None:
    drill.admin("bc", "PUT", "faults", {"hold": {"kinds": ["create"], "nth": 2,
                                                 "when": when}})
    drill.bc_new("First")
    errors: list[Exception] = []

    def second() -> None:
        try:
            drill.bc_new("Second")
        except Exception as exc:
            errors.append(exc)

    thread = threading.Thread(target=second)
    thread.start()
    deadline = time.monotonic() + 10
    while drill.admin("bc", "GET", "faults/injected")["held"] < 1:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert ("Second" in drill.by_name("bc")) is applied
    assert drill.admin("bc", "POST", "faults/release")["released"] == 1
    thread.join(10)
    assert errors and isinstance(errors[0], RetriableApiError)
    assert ("Second" in drill.by_name("bc")) is applied
