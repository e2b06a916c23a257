"""Fixtures: the emulators over real HTTPS on loopback, and small request helpers.

Every request passes ``verify=<ca>`` explicitly: the machine's REQUESTS_CA_BUNDLE would
otherwise override a Session's ``verify`` (see reference/verified-here.md).
"""
from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from bcdv_emulators.testing import run_emulators


class Api:
    """A tiny client: base URL + bearer + CA, every call verified against the emulator CA."""

    def __init__(self, base: str, token: str | None, ca: str) -> None:
        self.base, self.token, self.ca = base.rstrip("/"), token, ca
        # Keep-alive connections; verify is still passed per request (env vars win otherwise).
        self.session = requests.Session()

    def request(self, method: str, path: str, headers: dict[str, str] | None = None,
                **kw: Any) -> requests.Response:
        """Send a request; ``path`` is relative to the base unless absolute."""
        url = path if path.startswith("https://") else f"{self.base}/{path.lstrip('/')}"
        hdrs = {"Accept": "application/json"}
        if self.token:
            hdrs["Authorization"] = f"Bearer {self.token}"
        hdrs.update(headers or {})
        return self.session.request(method, url, headers=hdrs, verify=self.ca, timeout=60, **kw)

    def get(self, path: str, **kw: Any) -> requests.Response:
        """GET."""
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> requests.Response:
        """POST."""
        return self.request("POST", path, **kw)

    def patch(self, path: str, **kw: Any) -> requests.Response:
        """PATCH."""
        return self.request("PATCH", path, **kw)

    def delete(self, path: str, **kw: Any) -> requests.Response:
        """DELETE."""
        return self.request("DELETE", path, **kw)


def get_token(ep: dict[str, Any], scope: str) -> str:
    """Client-credentials token straight from the token endpoint."""
    ident = ep["identity"]
    r = requests.post(f"{ident['authority']}/oauth2/v2.0/token", verify=ep["ca_bundle"],
                      data={"grant_type": "client_credentials", "client_id": ident["client_id"],
                            "client_secret": ident["client_secret"], "scope": scope},
                      timeout=30)
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


def jwt_claims(token: str) -> dict[str, Any]:
    """Decode a JWT payload without verification (tests only)."""
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


@pytest.fixture(scope="module")
def emu_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh data directory per test module."""
    return tmp_path_factory.mktemp("emulators")


@pytest.fixture(scope="module")
def ep(emu_dir: Path) -> Iterator[dict[str, Any]]:
    """Running emulators with the demo seed; yields endpoints.json content."""
    with run_emulators(emu_dir, seed="demo") as endpoints:
        yield endpoints


@pytest.fixture(scope="module")
def ca(ep: dict[str, Any]) -> str:
    """Path of the emulator CA bundle."""
    return str(ep["ca_bundle"])


@pytest.fixture(scope="module")
def bc(ep: dict[str, Any]) -> Api:
    """BC API root client (authenticated)."""
    return Api(ep["business_central"]["base_url"],
               get_token(ep, ep["business_central"]["scope"]), ep["ca_bundle"])


@pytest.fixture(scope="module")
def company(ep: dict[str, Any]) -> str:
    """The seeded company id."""
    return str(ep["business_central"]["company_id"])


@pytest.fixture(scope="module")
def cust(bc: Api, company: str) -> Api:
    """Client rooted at companies(<id>)."""
    return Api(f"{bc.base}/companies({company})", bc.token, bc.ca)


@pytest.fixture(scope="module")
def dv(ep: dict[str, Any]) -> Api:
    """Dataverse API client (authenticated)."""
    return Api(ep["dataverse"]["api_url"], get_token(ep, ep["dataverse"]["scope"]),
               ep["ca_bundle"])


def admin(ep: dict[str, Any], service: str, method: str, route: str,
          doc: dict[str, Any] | None = None) -> requests.Response:
    """Call the admin API of one service."""
    from bcdv_emulators.cli import service_urls
    url = f"{service_urls(ep)[service]}/_emulator/{route}"
    return requests.request(method, url, json=doc, verify=ep["ca_bundle"], timeout=30)
