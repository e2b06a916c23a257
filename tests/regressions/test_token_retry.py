"""A transient 429/5xx from the token endpoint is retried like any API call (Retry-After
honoured), and a lasting one fails with a clear error, not an msal traceback."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from bcdv.clients.auth import reset_token_cache
from bcdv.clients.business_central import BusinessCentralClient
from bcdv.clients.http import RetryPolicy
from bcdv.errors import BcdvError, RetriableApiError
from bcdv.settings import endpoints_from_dict

FAST = RetryPolicy(max_attempts=4, budget_seconds=30, base_delay=0.05, max_delay=2)


@pytest.fixture(scope="module")
def ep(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from bcdv_emulators.testing import run_emulators

    with run_emulators(Path(tmp_path_factory.mktemp("emulators")), seed="demo",
                       throttling=False) as endpoints:
        yield endpoints


def _token_faults(ep: dict[str, Any], doc: dict[str, Any] | None) -> dict[str, Any]:
    from bcdv_emulators.cli import service_urls

    url = f"{service_urls(ep)['identity']}/_emulator/token-faults"
    resp = requests.request("PUT" if doc else "GET", url, json=doc, verify=ep["ca_bundle"],
                            timeout=30)
    resp.raise_for_status()
    return resp.json()


@pytest.fixture
def client(ep: dict[str, Any]) -> Iterator[BusinessCentralClient]:
    reset_token_cache()  # no cached token: the next request asks the token endpoint
    c = BusinessCentralClient(endpoints_from_dict(ep).business_central, retry=FAST)
    yield c
    c.close()
    requests.delete(_url(ep), verify=ep["ca_bundle"], timeout=30)
    reset_token_cache()


def _url(ep: dict[str, Any]) -> str:
    from bcdv_emulators.cli import service_urls

    return f"{service_urls(ep)['identity']}/_emulator/token-faults"


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_a_transient_token_endpoint_failure_is_retried(
        ep: dict[str, Any], client: BusinessCentralClient, status: int) -> None:
    _token_faults(ep, {"status": status, "count": 2, "retry_after": 1})
    started = time.monotonic()
    assert client.http.get_json(client.company_url)["id"]
    assert _token_faults(ep, None)["remaining"] == 0
    if status in (429, 502, 503):  # these carry Retry-After: 1, honoured twice
        assert time.monotonic() - started >= 1.9


def test_a_lasting_token_endpoint_failure_is_a_clear_error(
        ep: dict[str, Any], client: BusinessCentralClient) -> None:
    _token_faults(ep, {"status": 503, "count": 50, "retry_after": 0})
    with pytest.raises(BcdvError) as err:
        client.http.get_json(client.company_url)
    assert isinstance(err.value, RetriableApiError)
    assert err.value.status == 503 and "token" in str(err.value)
    assert _token_faults(ep, None)["remaining"] == 50 - FAST.max_attempts
