"""Client-side pacing under the service protection limits (bcdv.clients.http.RequestPacer).

Learn: Dataverse "Service protection API limits"
(https://learn.microsoft.com/power-apps/developer/data-platform/api-limits: 6,000 requests per
user in a 5-minute sliding window, 429 Too Many Requests with Retry-After, and a client should
send nothing more until that time), Business Central "Working with API limits"
(https://learn.microsoft.com/dynamics365/business-central/dev-itpro/api-reference/v2.0/dynamics-rate-limits:
6,000 OData requests per 5-minute sliding window). The emulators enforce the same sliding
window, scaled down here (PUT /_emulator/throttling); the checks are counts of the service's
429 answers, never times.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from bcdv.clients import DataverseClient
from bcdv.clients.http import RequestPacer, RetryPolicy, reset_pacers
from bcdv.settings import endpoints_from_dict
from bcdv_emulators.testing import run_emulators


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_the_pacer_starts_at_most_limit_requests_per_window() -> None:
    clock = FakeClock()
    pacer = RequestPacer(3, 10.0, clock=clock, sleep=clock.sleep)
    for _ in range(3):
        pacer.acquire()
    assert clock.slept == []  # the first three start at once
    pacer.acquire()  # the fourth waits for the first to leave the (padded) window
    assert clock.now == pytest.approx(100.0 + pacer.window)
    starts = []
    for _ in range(6):
        pacer.acquire()
        starts.append(clock.now)
    # Never more than 3 starts in any window.
    assert all(b - a >= pacer.window - 1e-9 for a, b in zip(starts, starts[3:], strict=False))


def test_after_a_429_nobody_starts_before_retry_after() -> None:
    clock = FakeClock()
    pacer = RequestPacer(0, 300.0, clock=clock, sleep=clock.sleep)  # 0: no count, pauses only
    pacer.acquire()
    pacer.pause(7.0)
    pacer.acquire()
    assert clock.now == pytest.approx(107.0)
    pacer.acquire()
    assert clock.now == pytest.approx(107.0)


@pytest.fixture
def throttled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """Emulators whose Dataverse allows 5 requests per 2-second sliding window."""
    with run_emulators(tmp_path / "emulators", seed="demo") as endpoints:
        admin = endpoints["dataverse"]["base_url"]
        resp = requests.put(f"{admin}/_emulator/throttling",
                            json={"scale": 1, "requests": 5, "window_seconds": 2},
                            verify=endpoints["ca_bundle"], timeout=30)
        resp.raise_for_status()
        reset_pacers()
        yield endpoints
        reset_pacers()


def _run(endpoints: dict[str, Any]) -> dict[str, Any]:
    """15 reads through the real client, then the service's own counts."""
    client = DataverseClient(endpoints_from_dict(endpoints).dataverse,
                             retry=RetryPolicy(max_attempts=20, budget_seconds=120,
                                               base_delay=0.05, max_delay=3))
    try:
        requests.delete(f"{endpoints['dataverse']['base_url']}/_emulator/stats",
                        verify=endpoints["ca_bundle"], timeout=30).raise_for_status()
        rows = [client.list("accounts", select=["name"], filter="name eq 'Trey Research'")
                for _ in range(15)]
        assert all(len(r) == 1 for r in rows)
        stats = requests.get(f"{endpoints['dataverse']['base_url']}/_emulator/stats",
                             verify=endpoints["ca_bundle"], timeout=30).json()
        return {"429": stats["throttled_429"], "requests": stats["requests"],
                "client_429": client.http.throttled}
    finally:
        client.close()


def test_paced_at_the_service_limit_the_service_never_throttles(
        throttled: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BCDV_REQUEST_LIMIT", "5")
    monkeypatch.setenv("BCDV_REQUEST_WINDOW_SECONDS", "2")
    counts = _run(throttled)
    assert counts["429"] == 0 and counts["client_429"] == 0, counts


def test_without_pacing_the_same_reads_are_throttled(
        throttled: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """The control: the same 15 reads with pacing off meet 429s (and still succeed, by
    Retry-After), so the test above can fail."""
    monkeypatch.setenv("BCDV_REQUEST_LIMIT", "0")
    counts = _run(throttled)
    assert counts["429"] > 0 and counts["client_429"] == counts["429"], counts
