"""Entra ID client credentials and the two services' bearer checks (wire-protocols C, D.1-D.3).

The token-endpoint tests run against a real tenant too (they only send requests Entra refuses,
or decode the tokens it issues). Tokens Entra would never issue this app (another issuer,
tenant or app, no roles) can only be forged with the emulators' signing key: those tests are
``emulator_only``.
"""
from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import pytest
import requests

from .conftest import Target
from .wire import Api, error_of

OTHER_TENANT = "0b9f5a3c-1d2e-4f60-8a7b-9c0d1e2f3a4b"
OTHER_APP = "6e5d4c3b-2a19-4f08-9e7d-6c5b4a392817"


def _post_token(target: Target, tenant: str | None = None, v2: bool = True,
                **form: str | None) -> requests.Response:
    """POST the client-credentials grant; ``tenant`` replaces the authority's tenant segment,
    a form value of None leaves that field out."""
    ident = target.endpoints["identity"]
    authority = ident["authority"].rstrip("/")
    if tenant is not None:
        authority = f"{authority.rsplit('/', 1)[0]}/{tenant}"
    data: dict[str, str | None] = {
        "grant_type": "client_credentials", "client_id": ident["client_id"],
        "client_secret": ident["client_secret"],
        "scope": target.endpoints["business_central"]["scope"]}
    data.update(form)
    url = f"{authority}/oauth2/v2.0/token" if v2 else f"{authority}/oauth2/token"
    return requests.post(url, data={k: v for k, v in data.items() if v is not None},
                         verify=target.ca, timeout=30)


def _aadsts(r: requests.Response, status: int, error: str, code: int) -> None:
    assert r.status_code == status, (r.status_code, r.text[:300])
    doc = r.json()
    assert doc["error"] == error and doc["error_codes"] == [code], doc
    assert doc["error_description"].startswith(f"AADSTS{code}:"), doc


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def _dv_scope(target: Target) -> str:
    dv = target.endpoints["dataverse"]
    return str(dv.get("scope") or f"{dv['base_url'].rstrip('/')}/.default")


# --- what Entra issues ---------------------------------------------------------------------

def test_tokens_are_v1_app_only_tokens_for_each_resource(target: Target, bc: Api,
                                                         dv: Api) -> None:
    """BC and Dataverse tokens are v1 (iss sts.windows.net/{tid}/, appid, ver 1.0); BC's carry
    the app's roles (API.ReadWrite.All), Dataverse's none (no application permissions).
    https://learn.microsoft.com/entra/identity-platform/access-token-claims-reference"""
    ident = target.endpoints["identity"]
    for token, resource in ((bc.token, "https://api.businesscentral.dynamics.com"),
                            (dv.token, _dv_scope(target)[: -len("/.default")])):
        claims = _claims(str(token))
        tid = claims["tid"]
        assert str(uuid.UUID(tid)) == tid
        assert claims["iss"] == f"https://sts.windows.net/{tid}/"
        assert claims["ver"] == "1.0" and "azp" not in claims
        assert claims["appid"] == ident["client_id"].lower()
        assert claims["aud"].rstrip("/") == resource.rstrip("/")
    assert "API.ReadWrite.All" in _claims(str(bc.token))["roles"]
    assert "roles" not in _claims(str(dv.token))


# --- token endpoint: what Entra refuses ----------------------------------------------------

def test_scope_without_default_suffix_is_invalid_scope(target: Target) -> None:
    """Client credentials need ``<resource>/.default`` (AADSTS1002012).
    https://learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow"""
    r = _post_token(target, scope="https://api.businesscentral.dynamics.com/API.ReadWrite.All")
    _aadsts(r, 400, "invalid_scope", 1002012)


def test_scopes_of_two_resources_are_invalid_scope(target: Target) -> None:
    """"All scopes included must be for a single resource" (AADSTS700022).
    https://learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow"""
    scope = f"{target.endpoints['business_central']['scope']} {_dv_scope(target)}"
    _aadsts(_post_token(target, scope=scope), 400, "invalid_scope", 700022)


def test_resource_parameter_is_refused_by_v2_endpoint(target: Target) -> None:
    """The v2.0 endpoint takes ``scope``; a v1 ``resource`` field is AADSTS901002.
    https://learn.microsoft.com/entra/identity-platform/reference-error-codes"""
    r = _post_token(target, resource="https://api.businesscentral.dynamics.com")
    _aadsts(r, 400, "invalid_request", 901002)


@pytest.mark.parametrize("tenant", ["common", "organizations"])
def test_multitenant_authority_refuses_client_credentials(target: Target, tenant: str) -> None:
    """An app-only token needs a tenant: /common and /organizations give AADSTS50059.
    https://learn.microsoft.com/entra/identity-platform/reference-error-codes"""
    _aadsts(_post_token(target, tenant=tenant), 400, "invalid_request", 50059)


def test_tenant_neither_guid_nor_domain_is_invalid_request(target: Target) -> None:
    """A tenant segment that is no GUID and no DNS name is AADSTS900023.
    https://learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow"""
    _aadsts(_post_token(target, tenant="contoso"), 400, "invalid_request", 900023)


def test_client_id_that_is_not_an_app_of_the_tenant_is_unauthorized_client(
        target: Target) -> None:
    """A client_id the tenant does not know, GUID or not, is AADSTS700016.
    https://learn.microsoft.com/entra/identity-platform/reference-error-codes"""
    for client_id in ("bcdv-sync", OTHER_APP):
        _aadsts(_post_token(target, client_id=client_id), 400, "unauthorized_client", 700016)


@pytest.mark.emulator_only
def test_tenant_by_domain_name_issues_the_tenant_guid_token(target: Target) -> None:
    """The {tenant} segment may be the verified domain; the token names the tenant GUID.
    https://learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow"""
    from bcdv_emulators.config import TENANT_DOMAIN, TENANT_ID
    r = _post_token(target, tenant=TENANT_DOMAIN)
    assert r.status_code == 200, r.text
    claims = _claims(r.json()["access_token"])
    assert claims["tid"] == TENANT_ID
    assert claims["iss"] == f"https://sts.windows.net/{TENANT_ID}/"


@pytest.mark.emulator_only
def test_token_endpoint_transient_faults_carry_retry_after(target: Target) -> None:
    """A throttled (429) or unavailable (503) token endpoint answers temporarily_unavailable
    with Retry-After; discovery still answers, and the next request gets a token.
    https://learn.microsoft.com/entra/identity-platform/reference-error-codes"""
    r = target.admin("identity", "PUT", "token-faults",
                     {"status": 429, "count": 2, "retry_after": 7})
    assert r.status_code == 200 and r.json()["remaining"] == 2
    authority = target.endpoints["identity"]["authority"]
    discovery = requests.get(f"{authority}/v2.0/.well-known/openid-configuration",
                             verify=target.ca, timeout=30)
    assert discovery.status_code == 200
    for _ in range(2):
        r = _post_token(target)
        assert r.status_code == 429 and r.headers["Retry-After"] == "7"
        assert r.json()["error"] == "temporarily_unavailable"
    assert _post_token(target).status_code == 200
    target.admin("identity", "PUT", "token-faults", {"status": 503, "count": 1})
    r = _post_token(target)
    assert r.status_code == 503 and r.headers["Retry-After"] == "1"
    assert r.json()["error"] == "temporarily_unavailable"
    assert target.admin("identity", "GET", "token-faults").json()["remaining"] == 0
    assert _post_token(target).status_code == 200


# --- the services refuse tokens Entra would not issue this app -----------------------------

def _forged(target: Target, audience: str, claims: dict[str, Any]) -> str:
    from bcdv_emulators.testing import mint_token
    assert target.emulator_dir is not None
    return mint_token(target.emulator_dir, audience, claims=claims)


FORGED = {
    "v2_issuer": lambda tid: {"iss": f"https://login.microsoftonline.com/{tid}/v2.0",
                              "ver": "2.0"},
    "other_issuer": lambda tid: {"iss": "https://sts.example.com/"},
    "other_tenant": lambda tid: {"tid": OTHER_TENANT,
                                 "iss": f"https://sts.windows.net/{OTHER_TENANT}/"},
    "tenant_claim_only": lambda tid: {"tid": OTHER_TENANT},
    "no_appid": lambda tid: {"appid": None},
}


def _assert_bc_401(r: requests.Response) -> None:
    assert r.status_code == 401, (r.status_code, r.text[:300])
    err = error_of(r)
    assert err["code"] == "Authentication_InvalidCredentials"
    assert err["message"].startswith("The server has rejected the client credentials.")


def _assert_dv_401(r: requests.Response) -> None:
    assert r.status_code == 401, (r.status_code, r.text[:300])
    challenge = r.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer authorization_uri=https://login.microsoftonline.com/")
    assert "resource_id=" in challenge


@pytest.mark.emulator_only
@pytest.mark.parametrize("case", sorted(FORGED))
def test_bc_refuses_token_of_another_issuer_tenant_or_app(target: Target, bc: Api,
                                                          case: str) -> None:
    """BC accepts only v1 tokens its tenant's Entra issued to a registered app; anything
    else is 401 Authentication_InvalidCredentials.
    https://learn.microsoft.com/dynamics365/business-central/dev-itpro/administration/automation-apis-using-s2s-authentication"""
    from bcdv_emulators.config import BC_RESOURCE, TENANT_ID
    token = _forged(target, BC_RESOURCE, FORGED[case](TENANT_ID))
    _assert_bc_401(Api(bc.base, token, bc.ca).get("companies"))


@pytest.mark.emulator_only
@pytest.mark.parametrize("claims", [{"appid": OTHER_APP}, {"roles": None},
                                    {"roles": ["Automation.ReadWrite.All"]}],
                         ids=["unregistered_app", "no_roles", "automation_role_only"])
def test_bc_refuses_app_not_registered_or_without_api_role(target: Target, bc: Api,
                                                           claims: dict[str, Any]) -> None:
    """BC's APIs need the app in its Microsoft Entra Applications page and a token with the
    API.ReadWrite.All role; otherwise 401 Authentication_InvalidCredentials.
    https://learn.microsoft.com/dynamics365/business-central/dev-itpro/administration/automation-apis-using-s2s-authentication"""
    from bcdv_emulators.config import BC_RESOURCE
    token = _forged(target, BC_RESOURCE, claims)
    _assert_bc_401(Api(bc.base, token, bc.ca).get("companies"))


@pytest.mark.emulator_only
@pytest.mark.parametrize("case", sorted(FORGED))
def test_dv_refuses_token_of_another_issuer_or_tenant(target: Target, dv: Api,
                                                      case: str) -> None:
    """Dataverse answers 401 with a WWW-Authenticate challenge to a token not issued by its
    tenant's Entra (v1 issuer, tenant, app id).
    https://learn.microsoft.com/power-apps/developer/data-platform/authenticate-oauth"""
    from bcdv_emulators.config import TENANT_ID
    audience = _dv_scope(target)[: -len("/.default")]
    token = _forged(target, audience, FORGED[case](TENANT_ID))
    _assert_dv_401(Api(dv.base, token, dv.ca).get("WhoAmI"))


@pytest.mark.emulator_only
def test_dv_refuses_app_without_application_user(target: Target, dv: Api, name: str) -> None:
    """A valid token of an app that is no application user of the environment: 403
    0x80072560 "The user is not a member of the organization.", and nothing is written.
    https://learn.microsoft.com/power-apps/developer/data-platform/authenticate-oauth"""
    audience = _dv_scope(target)[: -len("/.default")]
    stranger = Api(dv.base, _forged(target, audience, {"appid": OTHER_APP}), dv.ca)
    for r in (stranger.get("WhoAmI"), stranger.post("accounts", json={"name": name})):
        assert r.status_code == 403, (r.status_code, r.text[:300])
        assert error_of(r)["code"] == "0x80072560"
    assert dv.get("accounts", params={"$filter": f"name eq '{name}'"}).json()["value"] == []
