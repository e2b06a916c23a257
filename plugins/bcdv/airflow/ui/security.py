"""Who is asking, and may they: Airflow's own sign-in, permissions and a CSRF token.

- Identity: the JWT Airflow's API server issued at sign-in (the ``_token`` cookie the UI
  uses, or an ``Authorization: Bearer`` header), validated by Airflow's own
  ``get_user`` dependency, i.e. by the configured auth manager. No login of our own.
- Reading the pages needs read access to the bcdv DAGs' runs (``is_authorized_dag`` GET on
  runs); every action needs permission to trigger ``bcdv_sync_record`` (``is_authorized_dag``
  POST on its runs), which the simple auth manager grants to the ``user`` role and above.
- Forms are protected by a signed double-submit token: a random nonce in the ``bcdv_csrf``
  cookie (HttpOnly, SameSite=Strict, path of the app) and, in every form, an HMAC of that
  nonce and the user id under the API server's secret key. A POST without a matching token
  (or from another Origin) is refused with 403 before anything is done.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from fastapi import HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials

RECORD_DAG_ID = "bcdv_sync_record"
CSRF_COOKIE = "bcdv_csrf"
CSRF_FIELD = "csrf_token"


@dataclass
class Viewer:
    """The signed-in Airflow user and what they may do here."""

    user: Any
    name: str
    token: str
    can_trigger: bool
    nonce: str
    new_nonce: bool

    @property
    def csrf_token(self) -> str:
        """The value every form of this session carries."""
        return _sign(self.nonce, self.user_id)

    @property
    def user_id(self) -> str:
        """The user's id in the auth manager."""
        return str(self.user.get_id())


@lru_cache(maxsize=1)
def _secret() -> bytes:
    from airflow.api_fastapi.auth.tokens import get_signing_key

    return hashlib.sha256(b"bcdv-csrf:" + get_signing_key("api", "secret_key").encode()).digest()


def _sign(nonce: str, user_id: str) -> str:
    return hmac.new(_secret(), f"{nonce}:{user_id}".encode(), hashlib.sha256).hexdigest()


def _token(request: Request) -> tuple[str | None, bool]:
    """The presented JWT and whether it came in a header (not an ambient cookie)."""
    from airflow.api_fastapi.auth.managers.base_auth_manager import COOKIE_NAME_JWT_TOKEN

    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip(), True
    return request.cookies.get(COOKIE_NAME_JWT_TOKEN), False


async def authenticate(request: Request) -> Viewer | None:
    """The signed-in user (validated by Airflow), or None when not signed in."""
    from airflow.api_fastapi.core_api.security import get_user

    token, in_header = _token(request)
    if not token:
        return None
    creds = HTTPAuthorizationCredentials(scheme="Bearer", credentials=token) if in_header else None
    try:
        user = await get_user(request, None, creds)
    except HTTPException:
        return None
    nonce = request.cookies.get(CSRF_COOKIE) or ""
    fresh = not nonce
    return Viewer(user=user, name=user.get_name(), token=token,
                  can_trigger=is_authorized(user, "POST"),
                  nonce=nonce or secrets.token_urlsafe(24), new_nonce=fresh)


def is_authorized(user: Any, method: str, dag_id: str = RECORD_DAG_ID) -> bool:
    """Whether the auth manager lets ``user`` do ``method`` on runs of ``dag_id``."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import (
        DagAccessEntity,
        DagDetails,
    )

    return bool(get_auth_manager().is_authorized_dag(
        method=method, access_entity=DagAccessEntity.RUN, details=DagDetails(id=dag_id),
        user=user))


def login_url(request: Request) -> str:
    """Airflow's sign-in page, coming back here afterwards."""
    from airflow.api_fastapi.app import get_auth_manager

    return get_auth_manager().get_url_login(next_url=str(request.url))


def check_csrf(request: Request, viewer: Viewer, form: dict[str, Any]) -> None:
    """Refuse a state-changing request that does not prove it came from our own page."""
    _, in_header = _token(request)
    origin = request.headers.get("origin")
    if origin and origin not in ("null",) and origin.rstrip("/") != (
            f"{request.url.scheme}://{request.url.netloc}"):
        raise HTTPException(status_code=403, detail="cross-origin request refused")
    if in_header:
        return  # a bearer token is never sent by a browser on its own: no CSRF possible
    sent = str(form.get(CSRF_FIELD) or "")
    nonce = request.cookies.get(CSRF_COOKIE) or ""
    if not nonce or not sent or not hmac.compare_digest(sent, _sign(nonce, viewer.user_id)):
        raise HTTPException(status_code=403, detail="missing or invalid CSRF token; reload "
                                                    "the page and try again")
