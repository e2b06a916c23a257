"""Client-credentials tokens from Entra ID through msal, with msal's own token cache.

One msal application per (authority, client id) is shared by every client in the process, so
Business Central and Dataverse tokens come from one cache and each is fetched once an hour,
not once per request.

Token requests follow the APIs' retry policy (clients.http): a 429 or 5xx from the identity
endpoint, or a connection that fails, is retried with the same backoff, honouring
Retry-After, inside the HTTP session msal uses; a failure that outlasts the policy is a
RetriableApiError naming the token endpoint, never an msal traceback.
"""

from __future__ import annotations

import contextvars
import hashlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

import msal
import requests
from msal.exceptions import MsalServiceError

from bcdv.clients import redact
from bcdv.clients.http import RETRY_STATUSES, RetryPolicy, parse_retry_after, retry_delay
from bcdv.errors import AuthenticationError, RetriableApiError
from bcdv.settings import IdentitySettings

log = logging.getLogger(__name__)

# The retry policy of the client asking for a token (msal's session is shared by all).
_POLICY: contextvars.ContextVar[RetryPolicy | None] = contextvars.ContextVar(
    "bcdv_token_retry_policy", default=None)

MICROSOFT_AUTHORITY_HOSTS = frozenset({
    "login.microsoftonline.com", "login.microsoft.com", "login.windows.net",
    "login.chinacloudapi.cn", "login.microsoftonline.us", "login.partner.microsoftonline.cn",
})


class _VerifyingSession(requests.Session):
    """The requests session msal uses: ``verify`` on every request, and retries.

    msal sets ``Session.verify``, which REQUESTS_CA_BUNDLE silently overrides; an explicit
    per-request value is the only one requests never overrides. A token request has no side
    effect, so every 429/5xx and connection failure is retried under the caller's policy.
    """

    def __init__(self, verify: str | bool,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        super().__init__()
        self._verify = verify
        self._sleep = sleep

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        kwargs["verify"] = self._verify
        kwargs.setdefault("timeout", 30)
        policy = _POLICY.get() or RetryPolicy()
        deadline = time.monotonic() + policy.budget_seconds
        attempt = 0
        while True:
            attempt += 1
            try:
                resp = super().request(method, url, *args, **kwargs)
            except (requests.ConnectionError, requests.Timeout) as exc:
                if not self._wait(policy, attempt, None, deadline):
                    raise RetriableApiError(0, type(exc).__name__,
                                            f"token endpoint unreachable: {exc}",
                                            method=method, url=url) from None
                log.warning("%s %s: %s; retrying (attempt %d)", method, url,
                            type(exc).__name__, attempt + 1)
                continue
            if resp.status_code not in RETRY_STATUSES:
                return resp
            hint = parse_retry_after(resp.headers.get("Retry-After"))
            if not self._wait(policy, attempt, hint, deadline):
                raise _token_unavailable(resp, method, url, attempt, hint)
            log.warning("%s %s: %d; retrying (attempt %d)", method, url, resp.status_code,
                        attempt + 1)

    def _wait(self, policy: RetryPolicy, attempt: int, hint: float | None,
              deadline: float) -> bool:
        if attempt >= policy.max_attempts:
            return False
        delay = retry_delay(policy, attempt, hint)
        if time.monotonic() + delay > deadline:
            return False
        self._sleep(delay)
        return True


def _token_unavailable(resp: requests.Response, method: str, url: str, attempts: int,
                       retry_after: float | None) -> RetriableApiError:
    try:
        body = resp.json()
    except ValueError:
        body = {}
    code = str(body.get("error") or resp.status_code) if isinstance(body, dict) else ""
    desc = str(body.get("error_description") or resp.reason or "") if isinstance(
        body, dict) else ""
    first = desc.splitlines()[0] if desc else ""
    return RetriableApiError(resp.status_code, code,
                             f"the token endpoint answered {resp.status_code} {attempts} "
                             f"time(s): {first}", method=method, url=url,
                             request_id=resp.headers.get("x-ms-request-id"),
                             retry_after=retry_after)


# authority, client id, secret digest, CA bundle
_AppKey = tuple[str, str, str, str]
_APPS: dict[_AppKey, msal.ConfidentialClientApplication] = {}
_APPS_LOCK = threading.Lock()


def _app_key(identity: IdentitySettings) -> _AppKey:
    """What makes two identity setups share a token cache: the same authority, app, secret
    (by digest) and CA. A changed secret or CA bundle gets its own application and tokens."""
    secret = hashlib.sha256(identity.client_secret.encode()).hexdigest()
    return (identity.authority.rstrip("/"), identity.client_id, secret,
            str(identity.ca_bundle or ""))


def _msal_app(identity: IdentitySettings) -> msal.ConfidentialClientApplication:
    key = _app_key(identity)
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

    def __init__(self, identity: IdentitySettings, scope: str,
                 retry: RetryPolicy | None = None) -> None:
        self.identity = identity
        self.scope = scope
        self.retry = retry

    def __call__(self) -> str:
        reset = _POLICY.set(self.retry)
        try:
            result = _msal_app(self.identity).acquire_token_for_client([self.scope])
        except MsalServiceError as exc:  # a status our session returned after retrying
            raise RetriableApiError(0, "MsalServiceError",
                                    f"token request for scope {self.scope} at "
                                    f"{self.identity.authority} failed: {exc}") from None
        finally:
            _POLICY.reset(reset)
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

    def invalidate(self) -> None:
        """Drop the cached tokens of this app, so the next call asks Entra for a new one
        (a service refused the cached token: revoked, or signed by a key it no longer
        trusts)."""
        with _APPS_LOCK:
            app = _APPS.get(_app_key(self.identity))
        if app is not None:
            app.remove_tokens_for_client()


def reset_token_cache() -> None:
    """Forget every msal application (tests that restart the identity endpoint use it)."""
    with _APPS_LOCK:
        _APPS.clear()
