"""Entra ID emulator: OpenID discovery, JWKS and the client-credentials token endpoint.

Routes (``{tenant}`` = the tenant id or ``cronus.onmicrosoft.com``):

- ``GET  /{tenant}/v2.0/.well-known/openid-configuration`` (and the v1 ``/.well-known/...``)
- ``GET  /{tenant}/discovery/v2.0/keys`` (and ``/common/discovery/keys``)
- ``POST /{tenant}/oauth2/v2.0/token`` (``scope=<resource>/.default``) and the v1
  ``/{tenant}/oauth2/token`` (``resource=<resource>``); the client-credentials grant needs a
  tenant id or verified domain (``/common``, ``/organizations``, ``/consumers``: AADSTS50059)

Errors use Microsoft's JSON body (error, error_description with AADSTS code, error_codes,
timestamp, trace_id, correlation_id, error_uri). Tokens are Entra's v1 app-only tokens for the
two resources (see :mod:`bcdv_emulators.tokens`), ``exp`` = now + 3599 s on the identity clock.

Admin API, besides the common one of :mod:`bcdv_emulators.base`:

- ``PUT /_emulator/token-faults`` {"status": 429|500|502|503|504, "count": N,
  "retry_after": s} -> the next N token requests (and only those: discovery and keys still
  answer) fail with that status, ``Retry-After: s`` on 429/502/503, and Entra's
  ``temporarily_unavailable`` body; ``GET`` shows what is left, ``DELETE`` or a reset clears.
"""
from __future__ import annotations

import base64
import datetime as dt
import json
import re
import uuid
from typing import Any
from urllib.parse import parse_qsl, unquote

from bcdv_emulators.base import Req, Resp, Service, Throttling, json_resp
from bcdv_emulators.config import BC_RESOURCE, CLIENT_ID, TENANT_DOMAIN, TENANT_ID, Settings
from bcdv_emulators.tokens import TokenAuthority

TOKEN_LIFETIME = 3599
GENERAL_TENANTS = ("common", "organizations", "consumers")
"""Multi-tenant authorities: fine for discovery, not for the client-credentials grant."""
TOKEN_FAULT_STATUSES = (429, 500, 502, 503, 504)
_GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")


class IdentityService(Service):
    """The Entra ID emulator."""

    name = "identity"

    def __init__(self, settings: Settings, authority: TokenAuthority) -> None:
        super().__init__(settings, Throttling(enabled=False))
        self.authority = authority
        self.token_faults: dict[str, int] = {}

    def reset_data(self, seed: str) -> None:
        """Identity has no seeded data."""

    def error(self, status: int, code: str, message: str,
              headers: list[tuple[str, str]] | None = None) -> Resp:
        """Entra's OAuth error body; ``code`` is the OAuth error, message starts AADSTSnnnn."""
        return _aad_error(status, code, message, self.state.now())

    def fault_error(self, status: int) -> Resp:
        """Injected faults look like Entra's temporarily_unavailable answers."""
        if status == 429:
            return _aad_error(429, "temporarily_unavailable",
                              "AADSTS90055: There are too many incoming requests. Please try "
                              "again later.", self.state.now())
        if status == 503:
            return _aad_error(503, "temporarily_unavailable",
                              "AADSTS90033: The Microsoft Online Directory Service (MSODS) "
                              "isn't available. Please try again.", self.state.now())
        return _aad_error(status, "temporarily_unavailable",
                          "AADSTS90024: A transient error has occurred. Please try again.",
                          self.state.now())

    def handle(self, req: Req) -> Resp:
        """Route discovery, keys and token requests."""
        parts = [p for p in req.path.split("/") if p]
        if not parts:
            return json_resp(404, {"error": "not_found"})
        tenant = parts[0]
        rest = "/".join(parts[1:])
        if tenant == "common" and rest in ("discovery/keys", "discovery/v2.0/keys"):
            return json_resp(200, self.authority.jwks())
        known = tenant.lower() in (TENANT_ID, TENANT_DOMAIN, "organizations")
        if rest in ("v2.0/.well-known/openid-configuration", ".well-known/openid-configuration"):
            if not known:
                return self._unknown_tenant(tenant)
            return json_resp(200, self._discovery(tenant, v2=rest.startswith("v2.0")))
        if rest in ("discovery/v2.0/keys", "discovery/keys") and req.method == "GET":
            return json_resp(200, self.authority.jwks()) if known else self._unknown_tenant(tenant)
        if rest in ("oauth2/v2.0/token", "oauth2/token"):
            if req.method != "POST":
                return self.error(405, "invalid_request",
                                  "AADSTS900561: The endpoint only accepts POST requests. "
                                  f"Received a {req.method} request.")
            refused = self._take_token_fault() or self._token_tenant_error(tenant)
            return refused or self._token(req, v2=rest == "oauth2/v2.0/token")
        return json_resp(404, {"error": "not_found"})

    def _discovery(self, tenant: str, v2: bool) -> dict[str, Any]:
        base = f"{self.settings.identity_url}/{TENANT_ID}"
        suffix = "/v2.0" if v2 else ""
        return {
            "token_endpoint": f"{base}/oauth2{suffix}/token",
            "token_endpoint_auth_methods_supported": ["client_secret_post",
                                                       "private_key_jwt", "client_secret_basic"],
            "jwks_uri": f"{base}/discovery{suffix}/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{base}/v2.0" if v2 else f"https://sts.windows.net/{TENANT_ID}/",
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": "https://graph.microsoft.com/oidc/userinfo",
            "authorization_endpoint": f"{base}/oauth2{suffix}/authorize",
            "device_authorization_endpoint": f"{base}/oauth2{suffix}/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{base}/oauth2{suffix}/logout",
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "tid", "oid", "roles"],
            "tenant_region_scope": "EU",
            "cloud_instance_name": "microsoftonline.com",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": "graph.microsoft.com",
        }

    def _token_tenant_error(self, tenant: str) -> Resp | None:
        """Why the token endpoint refuses this tenant segment (None: it is ours)."""
        if tenant.lower() in (TENANT_ID, TENANT_DOMAIN):
            return None
        if tenant.lower() in GENERAL_TENANTS:
            # The client-credentials grant has no user to infer the tenant from.
            return self.error(400, "invalid_request",
                              "AADSTS50059: No tenant-identifying information found in either "
                              "the request or implied by any provided credentials.")
        if not _GUID.match(tenant) and "." not in tenant:
            return self.error(400, "invalid_request",
                              f"AADSTS900023: Specified tenant identifier '{tenant}' is neither "
                              "a valid DNS name, nor a valid external domain.")
        return self._unknown_tenant(tenant)

    def _unknown_tenant(self, tenant: str) -> Resp:
        return self.error(400, "invalid_tenant",
                          f"AADSTS90002: Tenant '{tenant}' not found. Check to make sure you "
                          "have the correct tenant ID and are signing into the correct cloud. "
                          "Check with your subscription administrator, this may happen if there "
                          "are no active subscriptions for the tenant.")

    def _token(self, req: Req, v2: bool) -> Resp:
        ctype = (req.header("content-type") or "").split(";")[0].strip().lower()
        if ctype != "application/x-www-form-urlencoded":
            return self.error(400, "invalid_request",
                              "AADSTS900144: The request body must contain the following "
                              "parameter: 'grant_type'.")
        form = dict(parse_qsl(req.body.decode("utf-8", "replace"), keep_blank_values=True))
        basic = req.header("authorization") or ""
        if basic.lower().startswith("basic "):
            # client_secret_basic: url-encoded id:secret in the Authorization header
            try:
                pair = base64.b64decode(basic[6:].strip()).decode("utf-8")
            except (ValueError, UnicodeDecodeError):
                pair = ""
            cid, _, csecret = pair.partition(":")
            form.setdefault("client_id", unquote(cid))
            form.setdefault("client_secret", unquote(csecret))
        for name in ("grant_type", "client_id"):
            if not form.get(name):
                return self._missing(name)
        if form["grant_type"] != "client_credentials":
            return self.error(400, "unsupported_grant_type",
                              f"AADSTS70003: The app requested an unsupported grant type "
                              f"'{form['grant_type']}'.")
        if form["client_id"].lower() != CLIENT_ID:
            return self.error(400, "unauthorized_client",
                              f"AADSTS700016: Application with identifier '{form['client_id']}' "
                              f"was not found in the directory '{TENANT_ID}'. This can happen "
                              "if the application has not been installed by the administrator "
                              "of the tenant or consented to by any user in the tenant. You may "
                              "have sent your authentication request to the wrong tenant.")
        secret = form.get("client_secret")
        if not secret and not form.get("client_assertion"):
            return self.error(401, "invalid_client",
                              "AADSTS7000218: The request body must contain the following "
                              "parameter: 'client_assertion' or 'client_secret'.")
        if secret != self.settings.client_secret:
            return self.error(401, "invalid_client",
                              "AADSTS7000215: Invalid client secret provided. Ensure the secret "
                              "being sent in the request is the client secret value, not the "
                              f"client secret ID, for a secret added to app '{CLIENT_ID}'.")
        if v2:
            if "resource" in form:
                return self.error(400, "invalid_request",
                                  "AADSTS901002: The 'resource' request parameter is not "
                                  "supported.")
            scope = form.get("scope")
            if not scope:
                return self._missing("scope")
            scopes = scope.split()
            if not all(s.endswith("/.default") for s in scopes):
                return self.error(400, "invalid_scope",
                                  f"AADSTS1002012: The provided value for scope {scope} is not "
                                  "valid. Client credential flows must have a scope value with "
                                  "/.default suffixed to the resource identifier "
                                  "(application ID URI).")
            resources = {s[: -len("/.default")].rstrip("/").lower() for s in scopes}
            if len(resources) > 1:
                return self.error(400, "invalid_scope",
                                  "AADSTS700022: The provided value for the input parameter "
                                  "scope is not valid because it contains more than one "
                                  f"resource. Scope {scope} is not valid.")
            resource = scopes[0][: -len("/.default")]
        else:
            resource = form.get("resource", "")
            if not resource:
                return self._missing("resource")
        audience = self._audience(resource)
        if audience is None:
            return self.error(400, "invalid_resource",
                              f"AADSTS500011: The resource principal named {resource} was not "
                              f"found in the tenant named {TENANT_ID}. This can happen if the "
                              "application has not been installed by the administrator of the "
                              "tenant or consented to by any user in the tenant. You might have "
                              "sent your authentication request to the wrong tenant.")
        now = self.state.now()
        token = self.authority.mint(audience, now=now, lifetime=TOKEN_LIFETIME)
        doc: dict[str, Any] = {"token_type": "Bearer", "expires_in": TOKEN_LIFETIME,
                               "ext_expires_in": TOKEN_LIFETIME, "access_token": token}
        if not v2:
            doc.update({"expires_on": str(int(now) + TOKEN_LIFETIME), "resource": resource,
                        "not_before": str(int(now))})
        return json_resp(200, doc, "application/json; charset=utf-8",
                         [("Cache-Control", "no-store, no-cache"), ("Pragma", "no-cache")],
                         entity="token")

    def _audience(self, resource: str) -> str | None:
        """Map a requested resource to the token audience (None = unknown resource)."""
        norm = resource.rstrip("/")
        if norm.lower() == BC_RESOURCE:
            return BC_RESOURCE
        for aud in self.settings.dv_audiences:
            if aud.rstrip("/").lower() == norm.lower():
                return norm
        return None

    # --- fault injection on the token endpoint ------------------------------------------
    def _take_token_fault(self) -> Resp | None:
        """Consume one injected token-endpoint fault, if any is left."""
        with self.state.lock:
            if not self.token_faults.get("remaining"):
                return None
            self.token_faults["remaining"] -= 1
            status, retry = self.token_faults["status"], self.token_faults["retry_after"]
        resp = self.fault_error(status)
        if status in (429, 502, 503):
            resp.headers.append(("Retry-After", str(retry)))
        return resp

    def _admin(self, req: Req) -> Resp:
        route = req.path.rstrip("/")
        if route == "/_emulator/reset" and req.method == "POST":
            with self.state.lock:
                self.token_faults = {}
        if route != "/_emulator/token-faults":
            return super()._admin(req)
        if req.method == "PUT":
            try:
                doc = json.loads(req.body or b"{}")
                status, count = int(doc["status"]), int(doc.get("count", 1))
                retry = int(doc.get("retry_after", 1))
                if status not in TOKEN_FAULT_STATUSES or count < 0 or retry < 0:
                    raise ValueError(doc)
            except (ValueError, TypeError, KeyError, AttributeError):
                return json_resp(400, {"error": "body must be {\"status\": one of "
                                                f"{list(TOKEN_FAULT_STATUSES)}, \"count\": N, "
                                                "\"retry_after\": seconds}"})
            with self.state.lock:
                self.token_faults = {"status": status, "remaining": count,
                                     "retry_after": retry}
        elif req.method == "DELETE":
            with self.state.lock:
                self.token_faults = {}
        elif req.method != "GET":
            return json_resp(405, {"error": "GET, PUT or DELETE"})
        with self.state.lock:
            return json_resp(200, {"status": None, "remaining": 0, "retry_after": None,
                                   **self.token_faults})

    def _missing(self, name: str) -> Resp:
        return self.error(400, "invalid_request",
                          "AADSTS900144: The request body must contain the following "
                          f"parameter: '{name}'.")


def _aad_error(status: int, error: str, description: str, now: float) -> Resp:
    trace, corr = str(uuid.uuid4()), str(uuid.uuid4())
    stamp = dt.datetime.fromtimestamp(now, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
    code = int(description.split(":")[0].replace("AADSTS", "") or 0)
    doc = {"error": error,
           "error_description": f"{description}\r\nTrace ID: {trace}\r\nCorrelation ID: {corr}"
                                f"\r\nTimestamp: {stamp}",
           "error_codes": [code], "timestamp": stamp, "trace_id": trace,
           "correlation_id": corr,
           "error_uri": f"https://login.microsoftonline.com/error?code={code}"}
    return json_resp(status, doc, "application/json; charset=utf-8",
                     [("Cache-Control", "no-store, no-cache")], entity="token")
