"""Dataverse tells its caller the service protection budget left and the parallelism it
recommends, on every answer.

Learn, "Service protection API limits" (power-apps/developer/data-platform/api-limits, "HTTP
response headers"): ``x-ms-ratelimit-burst-remaining-xrm-requests`` is the remaining number
of requests, ``x-ms-ratelimit-time-remaining-xrm-requests`` the remaining combined duration
for all connections of the user. "Send parallel requests" (send-parallel-requests): the
integer in ``x-ms-dop-hint`` is the recommended degree of parallelism. The WhoAmI answer
Learn shows in full (webapi/use-ps-and-vscode-web-api, "Debug with Fiddler") carries
``x-ms-dop-hint: 48``, ``x-ms-ratelimit-time-remaining-xrm-requests: 1,200.00`` (a grouping
separator and two decimals) and ``x-ms-ratelimit-burst-remaining-xrm-requests: 5999`` (its
first request of the window counted).
"""
from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from .conftest import Api, admin

DEFAULTS = {"requests": 6000, "window_seconds": 300, "execution_ms": 1_200_000,
            "concurrent": 52, "dop_hint": 48}


@pytest.fixture
def fresh_window(ep: dict[str, Any]) -> Iterator[None]:
    """Microsoft's default limits with an empty window (a PUT clears the windows)."""
    admin(ep, "dataverse", "PUT", "throttling", DEFAULTS)
    yield
    admin(ep, "dataverse", "DELETE", "latency")
    admin(ep, "dataverse", "PUT", "throttling", DEFAULTS)


def _budget(r: Any) -> tuple[int, float, str, int]:
    h = r.headers
    seconds = h["x-ms-ratelimit-time-remaining-xrm-requests"]
    return (int(h["x-ms-ratelimit-burst-remaining-xrm-requests"]),
            float(seconds.replace(",", "")), seconds, int(h["x-ms-dop-hint"]))


def test_a_first_answer_states_the_whole_budget_as_learn_shows(dv: Api,
                                                              fresh_window: None) -> None:
    left, seconds, raw, dop = _budget(dv.get("WhoAmI"))
    assert (left, dop) == (5999, 48)
    assert re.fullmatch(r"1,\d{3}\.\d{2}", raw) and 1199.0 < seconds <= 1200.0


def test_each_request_spends_one_request_and_its_execution_time(dv: Api, ep: dict[str, Any],
                                                                fresh_window: None) -> None:
    first = _budget(dv.get("WhoAmI"))
    admin(ep, "dataverse", "PUT", "latency", {"rtt_ms": 400})
    dv.get("WhoAmI")  # 0.4 s of execution, counted once the request is answered
    admin(ep, "dataverse", "DELETE", "latency")
    third = _budget(dv.get("WhoAmI"))
    assert third[0] == first[0] - 2
    assert first[1] - third[1] >= 0.4


def test_the_hint_follows_the_environment_and_stays_under_the_concurrency_limit(
        dv: Api, ep: dict[str, Any], fresh_window: None) -> None:
    admin(ep, "dataverse", "PUT", "throttling", {"dop_hint": 4})  # e.g. a trial environment
    assert _budget(dv.get("WhoAmI"))[3] == 4
    admin(ep, "dataverse", "PUT", "throttling", {"dop_hint": 48, "concurrent": 6})
    assert _budget(dv.get("WhoAmI"))[3] == 6


def test_a_spent_window_says_when_its_budget_is_back(dv: Api, ep: dict[str, Any],
                                                    fresh_window: None) -> None:
    """Learn (api-limits, "The Retry-After duration"): the more demanding the requests of
    the window, the longer the server takes to recover. The window here is spent by one
    slow request that came after a quick one: the budget is back when the slow one leaves
    the window, not when the quick one does."""
    admin(ep, "dataverse", "PUT", "throttling", {"execution_ms": 1000, "window_seconds": 30})
    dv.get("WhoAmI")  # quick: almost nothing of the budget
    time.sleep(3)
    admin(ep, "dataverse", "PUT", "latency", {"rtt_ms": 1200})
    assert _budget(dv.get("WhoAmI"))[1] == 0.0  # 1.2 s of 1 s: spent, and still served
    admin(ep, "dataverse", "DELETE", "latency")
    r = dv.get("WhoAmI")
    assert r.status_code == 429 and r.json()["error"]["code"] == "0x80072321"
    assert int(r.headers["Retry-After"]) >= 28  # the slow request's arrival + 30 s
    peak = admin(ep, "dataverse", "GET", "throttling").json()["peak_window_execution_s"]
    assert peak >= 1.2


def test_waiting_behind_another_request_is_not_execution_time(dv: Api,
                                                              fresh_window: None) -> None:
    """One emulator process serves a user's requests one at a time, where Dataverse serves
    parallel requests at once (Learn: send-parallel-requests). A quick request that
    arrives while a slow one is being served waits for it here; the window counts only
    what each request took to serve, or a load that keeps several requests in flight would
    see its budget spent many times over and be held back by a limit the service would
    not have reached."""
    first = _budget(dv.get("WhoAmI"))
    targets = [{"@odata.type": "Microsoft.Dynamics.CRM.account", "name": f"Queue {i}"}
               for i in range(8000)]
    slow: dict[str, float] = {}

    def create() -> None:
        began = time.monotonic()
        r = dv.post("accounts/Microsoft.Dynamics.CRM.CreateMultiple", json={"Targets": targets})
        slow["seconds"] = time.monotonic() - began
        assert r.status_code == 200, r.text

    thread = threading.Thread(target=create)
    thread.start()
    time.sleep(0.15)  # the CreateMultiple is being served
    began = time.monotonic()
    dv.get("WhoAmI")
    waited = time.monotonic() - began
    thread.join()
    last = _budget(dv.get("WhoAmI"))
    assert waited > 0.3, "the WhoAmI did not wait behind the CreateMultiple"
    spent = first[1] - last[1]
    # The CreateMultiple's own time, and the WhoAmI's milliseconds; not the WhoAmI's wait.
    assert spent <= slow["seconds"] + 0.2, (spent, slow, waited)
