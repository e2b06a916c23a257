"""Client-credentials tokens from Entra ID through msal, with msal's own token cache.

One msal application per (authority, client id) is shared by every client in the process, so
Business Central and Dataverse tokens come from one cache and each is fetched once an hour,
not once per request.
"""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import urlparse

import msal
import requests

from bcdv.clients import redact
from bcdv.errors import AuthenticationError
from bcdv.settings import IdentitySettings

MICROSOFT_AUTHORITY_HOSTS = frozenset({
    "login.microsoftonline.com", "login.microsoft.com", "login.windows.net",
    "login.chinacloudapi.cn", "login.microsoftonline.us", "login.partner.microsoftonline.cn",
})


class _VerifyingSession(requests.Session):
    """A requests session that passes ``verify`` on every request.

    msal sets ``Session.verify``, which REQUESTS_CA_BUNDLE silently overrides; an explicit
    per-request value is the only one requests never overrides.
    """

    def __init__(self, verify: str | bool) -> None:
        super().__init__()
        self._verify = verify

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        kwargs["verify"] = self._verify
        kwargs.setdefault("timeout", 30)
        return super().request(method, url, *args, **kwargs)


_APPS: dict[tuple[str, str], msal.ConfidentialClientApplication] = {}
_APPS_LOCK = threading.Lock()


def _msal_app(identity: IdentitySettings) -> msal.ConfidentialClientApplication:
    key = (identity.authority.rstrip("/"), identity.client_id)
    redact.install()
    redact.register_secret(identity.client_secret)
    with _APPS_LOCK:
        app = _APPS.get(key)
        if app is None:
            host = urlparse(identity.authority).hostname or ""
            microsoft = host in MICROSOFT_AUTHORITY_HOSTS
            try:
                app = msal.ConfidentialClientApplication(
                    identity.client_id,
                    client_credential=identity.client_secret,
                    authority=identity.authority,
                    # A non-Microsoft authority (the local emulator) is known to the user;
                    # msal must not ask login.microsoftonline.com about it.
                    instance_discovery=microsoft,
                    validate_authority=microsoft,
                    azure_region=False,
                    http_client=_VerifyingSession(identity.ca_bundle or True),
                )
            except (ValueError, requests.RequestException) as exc:
                raise AuthenticationError(
                    f"cannot reach the identity authority {identity.authority}: {exc}"
                ) from None
            _APPS[key] = app
        return app


class TokenProvider:
    """Callable returning a bearer token for one scope (``https://.../.default``)."""

    def __init__(self, identity: IdentitySettings, scope: str) -> None:
        self.identity = identity
        self.scope = scope

    def __call__(self) -> str:
        result = _msal_app(self.identity).acquire_token_for_client([self.scope])
        token = result.get("access_token") if isinstance(result, dict) else None
        if not token:
            error = (result or {}).get("error", "unknown_error")
            desc = (result or {}).get("error_description", "")
            first_line = desc.splitlines()[0] if desc else ""
            raise AuthenticationError(
                f"token request for scope {self.scope} at {self.identity.authority} "
                f"(client id {self.identity.client_id}) failed: {error}: {first_line}"
            )
        redact.register_secret(str(token))
        return str(token)


def reset_token_cache() -> None:
    """Forget every msal application (tests that restart the identity endpoint use it)."""
    with _APPS_LOCK:
        _APPS.clear()
