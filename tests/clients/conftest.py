"""Fixtures: both clients on the emulators over real HTTPS, with real msal tokens."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from bcdv.clients import BusinessCentralClient, DataverseClient
from bcdv.clients.http import RetryPolicy
from bcdv.settings import endpoints_from_dict
from bcdv_emulators.testing import run_emulators


@pytest.fixture(scope="module")
def ep(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The emulators with the demo data, shared by one test module (tests use unique names)."""
    with run_emulators(Path(tmp_path_factory.mktemp("emulators")), seed="demo",
                       throttling=False) as endpoints:
        yield endpoints


FAST_RETRY = RetryPolicy(max_attempts=4, budget_seconds=30, base_delay=0.05, max_delay=2)


@pytest.fixture
def dv(ep: dict[str, Any]) -> Iterator[DataverseClient]:
    """A Dataverse client on the emulator."""
    client = DataverseClient(endpoints_from_dict(ep).dataverse, retry=FAST_RETRY)
    yield client
    client.close()


@pytest.fixture
def bc(ep: dict[str, Any]) -> Iterator[BusinessCentralClient]:
    """A Business Central client on the emulator."""
    client = BusinessCentralClient(endpoints_from_dict(ep).business_central, retry=FAST_RETRY)
    yield client
    client.close()


def faults(ep: dict[str, Any], service: str, doc: dict[str, Any] | None) -> None:
    """Set (or with None clear) a service's injected faults through its admin API."""
    from bcdv_emulators.cli import service_urls

    url = f"{service_urls(ep)[service]}/_emulator/faults"
    resp = requests.request("PUT" if doc else "DELETE", url, json=doc,
                            verify=ep["ca_bundle"], timeout=30)
    resp.raise_for_status()
