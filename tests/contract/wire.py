"""A tiny HTTPS client for the contract suite: base URL + bearer + CA, nothing else.

Every request passes ``verify=`` explicitly: the machine's REQUESTS_CA_BUNDLE would otherwise
override a Session's ``verify`` (see reference/verified-here.md). Against a real tenant the
CA is the system's (``ca_bundle`` absent from the endpoints file).
"""
from __future__ import annotations

from typing import Any

import requests


class Api:
    """Requests relative to one base URL, authenticated with one bearer token."""

    def __init__(self, base: str, token: str | None, ca: str | bool) -> None:
        self.base, self.token, self.ca = base.rstrip("/"), token, ca
        self.session = requests.Session()

    def url(self, path: str) -> str:
        """Absolute URL of ``path`` (returned unchanged when already absolute)."""
        return path if path.startswith("https://") else f"{self.base}/{path.lstrip('/')}"

    def request(self, method: str, path: str, headers: dict[str, str] | None = None,
                **kw: Any) -> requests.Response:
        """Send one request; ``path`` is relative to the base unless absolute."""
        hdrs = {"Accept": "application/json"}
        if self.token:
            hdrs["Authorization"] = f"Bearer {self.token}"
        hdrs.update(headers or {})
        kw.setdefault("timeout", 60)
        return self.session.request(method, self.url(path), headers=hdrs, verify=self.ca, **kw)

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


def error_of(r: requests.Response) -> dict[str, Any]:
    """The ``error`` object of an OData error body (BC and Dataverse share the shape)."""
    doc = r.json()
    assert isinstance(doc, dict) and isinstance(doc.get("error"), dict), r.text
    return dict(doc["error"])


def token(endpoints: dict[str, Any], scope: str) -> str:
    """A client-credentials token straight from the token endpoint (Entra ID or emulator)."""
    ident = endpoints["identity"]
    r = requests.post(f"{ident['authority'].rstrip('/')}/oauth2/v2.0/token",
                      verify=endpoints.get("ca_bundle") or True, timeout=30,
                      data={"grant_type": "client_credentials", "client_id": ident["client_id"],
                            "client_secret": ident["client_secret"], "scope": scope})
    assert r.status_code == 200, f"token endpoint answered {r.status_code}"
    return str(r.json()["access_token"])
