"""The contract suite: conformance tests written once against an endpoints description.

``make test`` runs them against the local emulators (demo seed). With
``BCDV_CONTRACT_ENDPOINTS=path/to/endpoints.json`` (``make contract``) the same tests run
against a real tenant: the file has the shape the emulators write (``identity``,
``business_central``, ``dataverse``; ``ca_bundle`` optional). Against a tenant the suite
touches only records it creates (names start with ``bcdv-contract-``) and deletes them at the
end; tests that need the emulators' admin API (fault injection, seeding) are marked
``emulator_only`` and skipped there.

Each test cites the Microsoft Learn page whose behaviour it checks.
"""
from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .wire import Api, token

ENV = "BCDV_CONTRACT_ENDPOINTS"


class Target:
    """What the suite runs against: the endpoints, and whether they are the emulators."""

    def __init__(self, endpoints: dict[str, Any], emulator_dir: Path | None) -> None:
        self.endpoints = endpoints
        self.emulator_dir = emulator_dir

    @property
    def is_emulator(self) -> bool:
        """True when the local emulators answer (admin API and seed data available)."""
        return self.emulator_dir is not None

    @property
    def ca(self) -> str | bool:
        """The CA bundle to verify with (the system's when none is given)."""
        return str(self.endpoints.get("ca_bundle") or "") or True

    def admin(self, service: str, method: str, route: str,
              doc: dict[str, Any] | None = None) -> Any:
        """Call an emulator's admin API (``service``: identity, business_central, dataverse)."""
        import requests

        from bcdv_emulators.cli import service_urls

        assert self.is_emulator, "the admin API exists only on the emulators"
        url = f"{service_urls(self.endpoints)[service]}/_emulator/{route}"
        return requests.request(method, url, json=doc, verify=self.ca, timeout=30)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``emulator_only`` tests when a real tenant is the target."""
    if not os.environ.get(ENV):
        return
    skip = pytest.mark.skip(reason=f"needs the emulators' admin API ({ENV} points at a tenant)")
    for item in items:
        if "emulator_only" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """The endpoints under test: ``$BCDV_CONTRACT_ENDPOINTS`` or fresh emulators."""
    path = os.environ.get(ENV)
    if path:
        yield Target(json.loads(Path(path).read_text()), None)
        return
    from bcdv_emulators.testing import run_emulators

    data_dir = tmp_path_factory.mktemp("contract-emulators")
    with run_emulators(data_dir, seed="demo") as endpoints:
        yield Target(endpoints, data_dir)


@pytest.fixture(scope="module")
def bc(target: Target) -> Api:
    """Business Central API v2.0 root (``.../api/v2.0``), authenticated."""
    ep = target.endpoints
    return Api(ep["business_central"]["base_url"], token(ep, ep["business_central"]["scope"]),
               target.ca)


@pytest.fixture(scope="module")
def company(bc: Api, target: Target) -> Api:
    """Business Central rooted at ``companies(<id>)``."""
    cid = target.endpoints["business_central"]["company_id"]
    return Api(f"{bc.base}/companies({cid})", bc.token, bc.ca)


@pytest.fixture(scope="module")
def dv(target: Target) -> Api:
    """Dataverse Web API v9.2 root, authenticated."""
    ep = target.endpoints
    dv_ep = ep["dataverse"]
    api_url = dv_ep.get("api_url") or f"{dv_ep['base_url'].rstrip('/')}/api/data/v9.2"
    scope = dv_ep.get("scope") or f"{dv_ep['base_url'].rstrip('/')}/.default"
    return Api(api_url, token(ep, scope), target.ca)


class Created:
    """Records a test created; deleted (best effort, newest first) when the test ends."""

    def __init__(self) -> None:
        self.urls: list[tuple[Api, str]] = []

    def add(self, api: Api, path: str) -> str:
        """Remember ``path`` (e.g. ``accounts(<id>)``) for deletion; returns it."""
        self.urls.append((api, path))
        return path

    def cleanup(self) -> None:
        """Delete everything remembered; a record already gone is fine."""
        for api, path in reversed(self.urls):
            api.delete(path, headers={"If-Match": "*"})
        self.urls.clear()


@pytest.fixture
def created() -> Iterator[Created]:
    """Register what a test creates; it is removed afterwards (also on a real tenant)."""
    c = Created()
    yield c
    c.cleanup()


@pytest.fixture
def name() -> str:
    """A unique record name for this test (``bcdv-contract-<hex>``)."""
    return f"bcdv-contract-{uuid.uuid4().hex[:10]}"
