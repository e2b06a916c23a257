"""D.1-D.3: identity discovery, tokens (raw and through msal) and API authentication."""
from __future__ import annotations

import time
from typing import Any

import msal
import pytest
import requests

from bcdv_emulators.config import BC_RESOURCE, CLIENT_ID, TENANT_DOMAIN, TENANT_ID
from bcdv_emulators.testing import mint_token

from .conftest import Api, jwt_claims


class VerifyingSession(requests.Session):
    """A Session that passes ``verify`` on every request (env CA vars would win otherwise)."""

    def __init__(self, ca: str) -> None:
        super().__init__()
        self.ca = ca

    def request(self, method: str, url: str, **kw: Any) -> requests.Response:  # type: ignore[override]
        kw["verify"] = self.ca
        return super().request(method, url, **kw)


def _msal(ep: dict[str, Any], secret: str | None = None) -> msal.ConfidentialClientApplication:
    ident = ep["identity"]
    return msal.ConfidentialClientApplication(
        ident["client_id"], client_credential=secret or ident["client_secret"],
        authority=ident["authority"], instance_discovery=False, validate_authority=False,
        azure_region=False, http_client=VerifyingSession(ep["ca_bundle"]))


def test_d01_identity_discovery(ep: dict[str, Any], ca: str) -> None:
    auth = ep["identity"]["authority"]
    r = requests.get(f"{auth}/v2.0/.well-known/openid-configuration", verify=ca, timeout=10)
    assert r.status_code == 200
    doc = r.json()
    assert doc["token_endpoint"] == f"{auth}/oauth2/v2.0/token"
    assert doc["authorization_endpoint"] == f"{auth}/oauth2/v2.0/authorize"
    assert doc["issuer"] == f"{auth}/v2.0"
    keys = requests.get(doc["jwks_uri"], verify=ca, timeout=10).json()["keys"]
    assert keys and keys[0]["kty"] == "RSA"
    base = auth.rsplit("/", 1)[0]
    assert requests.get(f"{base}/{TENANT_DOMAIN}/v2.0/.well-known/openid-configuration",
                        verify=ca, timeout=10).status_code == 200
    bad = requests.get(f"{base}/nope.onmicrosoft.com/v2.0/.well-known/openid-configuration",
                       verify=ca, timeout=10)
    assert bad.status_code == 400
    assert bad.json()["error"] == "invalid_tenant"
    assert bad.json()["error_codes"] == [90002]
    assert bad.json()["error_description"].startswith("AADSTS90002: Tenant 'nope.onmicrosoft.com'")


def _token(ep: dict[str, Any], **form: str) -> requests.Response:
    ident = ep["identity"]
    data = {"grant_type": "client_credentials", "client_id": ident["client_id"],
            "client_secret": ident["client_secret"], "scope": f"{BC_RESOURCE}/.default"}
    data.update(form)
    data = {k: v for k, v in data.items() if v is not None and v != "<omit>"}
    return requests.post(f"{ident['authority']}/oauth2/v2.0/token", data=data,
                         verify=ep["ca_bundle"], timeout=10)


def test_d02_identity_token(ep: dict[str, Any]) -> None:
    r = _token(ep)
    assert r.status_code == 200
    doc = r.json()
    assert doc["token_type"] == "Bearer" and doc["expires_in"] == 3599
    assert doc["ext_expires_in"] == 3599 and "scope" not in doc
    claims = jwt_claims(doc["access_token"])
    assert claims["aud"] == BC_RESOURCE and claims["tid"] == TENANT_ID
    assert claims["appid"] == CLIENT_ID and "oid" in claims and claims["roles"]
    assert claims["exp"] - claims["iat"] == 3599
    dv = _token(ep, scope=ep["dataverse"]["scope"]).json()
    assert jwt_claims(dv["access_token"])["aud"] == ep["dataverse"]["base_url"]


@pytest.mark.parametrize("form,status,error,code", [
    ({"client_secret": "wrong"}, 401, "invalid_client", 7000215),
    ({"client_secret": "<omit>"}, 401, "invalid_client", 7000218),
    ({"scope": f"{BC_RESOURCE}/API.ReadWrite.All"}, 400, "invalid_scope", 1002012),
    ({"scope": "https://unknown.example.com/.default"}, 400, "invalid_resource", 500011),
    ({"client_id": "11111111-2222-3333-4444-555555555555"}, 400, "unauthorized_client", 700016),
    ({"grant_type": "password"}, 400, "unsupported_grant_type", 70003),
    ({"scope": "<omit>"}, 400, "invalid_request", 900144),
])
def test_d02_identity_token_errors(ep: dict[str, Any], form: dict[str, str], status: int,
                                   error: str, code: int) -> None:
    r = _token(ep, **form)
    assert r.status_code == status
    doc = r.json()
    assert doc["error"] == error and doc["error_codes"] == [code]
    assert doc["error_description"].startswith(f"AADSTS{code}:")
    for field in ("timestamp", "trace_id", "correlation_id", "error_uri"):
        assert field in doc


def test_d02_identity_unknown_tenant_token(ep: dict[str, Any]) -> None:
    base = ep["identity"]["authority"].rsplit("/", 1)[0]
    r = requests.post(f"{base}/other.onmicrosoft.com/oauth2/v2.0/token",
                      data={"grant_type": "client_credentials"}, verify=ep["ca_bundle"],
                      timeout=10)
    assert r.status_code == 400 and r.json()["error_codes"] == [90002]


def test_d02_msal_gets_tokens_for_both_scopes(ep: dict[str, Any]) -> None:
    app = _msal(ep)
    first = app.acquire_token_for_client([ep["business_central"]["scope"]])
    assert "access_token" in first, first
    assert first["token_source"] == "identity_provider"
    assert jwt_claims(first["access_token"])["aud"] == BC_RESOURCE
    again = app.acquire_token_for_client([ep["business_central"]["scope"]])
    assert again["token_source"] == "cache"
    dv = app.acquire_token_for_client([ep["dataverse"]["scope"]])
    assert jwt_claims(dv["access_token"])["aud"] == ep["dataverse"]["base_url"]


def test_d02_msal_wrong_secret_is_invalid_client(ep: dict[str, Any]) -> None:
    result = _msal(ep, secret="not-the-secret").acquire_token_for_client(
        [ep["business_central"]["scope"]])
    assert result["error"] == "invalid_client"
    assert "AADSTS7000215" in result["error_description"]


@pytest.mark.parametrize("case", ["missing", "malformed", "wrong_audience", "expired",
                                  "foreign_key"])
def test_d03_bc_and_dv_reject_bad_bearers(ep: dict[str, Any], emu_dir: Any, case: str) -> None:
    ca = ep["ca_bundle"]
    dv_aud = ep["dataverse"]["base_url"]
    tokens = {
        "missing": (None, None),
        "malformed": ("abc.def", "not-a-jwt"),
        "wrong_audience": (mint_token(emu_dir, dv_aud), mint_token(emu_dir, BC_RESOURCE)),
        "expired": (mint_token(emu_dir, BC_RESOURCE, now=time.time() - 7200),
                    mint_token(emu_dir, dv_aud, now=time.time() - 7200)),
        "foreign_key": (mint_token(emu_dir / "other", BC_RESOURCE),
                        mint_token(emu_dir / "other", dv_aud)),
    }
    bc_tok, dv_tok = tokens[case]
    r = Api(ep["business_central"]["base_url"], bc_tok, ca).get("companies")
    assert r.status_code == 401
    err = r.json()["error"]
    assert err["code"] == "Authentication_InvalidCredentials"
    assert err["message"].startswith("The server has rejected the client credentials.  "
                                     "CorrelationId:  ")
    r = Api(ep["dataverse"]["api_url"], dv_tok, ca).get("WhoAmI")
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"] == (
        f"Bearer authorization_uri=https://login.microsoftonline.com/{TENANT_ID}/oauth2/"
        f"authorize, resource_id={dv_aud}/")


def test_d03_dv_accepts_org_url_audience(ep: dict[str, Any], emu_dir: Any) -> None:
    from bcdv_emulators.config import DV_ORG_URL
    r = Api(ep["dataverse"]["api_url"], mint_token(emu_dir, DV_ORG_URL),
            ep["ca_bundle"]).get("WhoAmI")
    assert r.status_code == 200
