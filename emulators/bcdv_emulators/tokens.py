"""Access tokens: RS256 JWTs shaped like the Entra v1 app-only tokens of these two resources.

Business Central and Dataverse are Microsoft first-party resources: client-credentials tokens
for them are v1.0 tokens (https://learn.microsoft.com/entra/identity-platform/
access-token-claims-reference): ``iss`` = ``https://sts.windows.net/{tid}/``, ``aud`` = the
resource URI, ``appid`` (not ``azp``) = the client id, ``ver`` = ``1.0``, and ``roles`` = the
application permissions granted on the resource. Business Central's are ``API.ReadWrite.All``
and ``Automation.ReadWrite.All`` (Learn, "Using Service-to-Service (S2S) Authentication");
Dataverse has no application permissions, so its app-only tokens carry no ``roles`` claim at
all (the app is authorised by its application user inside the environment instead).

The signing key lives in DIR/signing.key so tokens stay valid across restarts; the public key
is served as a JWKS by the identity service and used by the APIs to validate bearers.
"""
from __future__ import annotations

import base64
import hashlib
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bcdv_emulators.config import APP_OBJECT_ID, BC_RESOURCE, CLIENT_ID, TENANT_ID

LEEWAY_SECONDS = 300
"""Clock skew tolerated when checking exp/nbf, as Microsoft's token validation does."""
ISSUER = f"https://sts.windows.net/{TENANT_ID}/"
"""The v1 issuer of the emulated tenant (v2 tokens would say login.microsoftonline.com/.../v2.0)."""
BC_ROLES = ["API.ReadWrite.All", "Automation.ReadWrite.All"]
"""Application permissions the emulated app holds on Business Central (both admin-consented)."""
BC_API_ROLE = "API.ReadWrite.All"
"""The role Business Central requires for its APIs and web services (the automation API
route needs Automation.ReadWrite.All instead; the emulator serves only API v2.0)."""


def _b64url_uint(n: int) -> str:
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def is_bc_audience(aud: str) -> bool:
    """True for Business Central's resource URI (with or without trailing slash)."""
    return aud.rstrip("/").lower() == BC_RESOURCE


def _is_guid(value: Any) -> bool:
    try:
        return isinstance(value, str) and str(uuid.UUID(value)) == value.lower()
    except ValueError:
        return False


@dataclass
class TokenAuthority:
    """Signs and verifies the emulators' access tokens."""

    key: rsa.RSAPrivateKey
    kid: str

    @classmethod
    def load(cls, data_dir: Path) -> TokenAuthority:
        """Load DIR/signing.key, creating it on first use."""
        path = data_dir / "signing.key"
        if path.exists():
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
            if not isinstance(key, rsa.RSAPrivateKey):
                raise ValueError(f"{path} does not hold an RSA private key "
                                 f"({type(key).__name__}); delete it to have a new one made")
        else:
            data_dir.mkdir(parents=True, exist_ok=True)
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
            path.chmod(0o600)
        der = key.public_key().public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
        kid = base64.urlsafe_b64encode(hashlib.sha1(der).digest()).rstrip(b"=").decode()
        return cls(key=key, kid=kid)

    def jwks(self) -> dict[str, Any]:
        """The JSON Web Key Set document."""
        nums = self.key.public_key().public_numbers()
        return {"keys": [{"kty": "RSA", "use": "sig", "kid": self.kid, "x5t": self.kid,
                          "n": _b64url_uint(nums.n), "e": _b64url_uint(nums.e),
                          "issuer": ISSUER}]}

    def mint(self, audience: str, *, now: float | None = None, lifetime: int = 3599,
             claims: dict[str, Any] | None = None) -> str:
        """Issue the app-only v1 access token Entra issues for ``audience``.

        ``claims`` overrides claims (a value of None removes the claim): tests use it to
        forge tokens Entra would never issue to this app (another tenant, app or issuer).
        """
        now = time.time() if now is None else now
        doc: dict[str, Any] = {
            "aud": audience,
            "iss": ISSUER,
            "iat": int(now), "nbf": int(now), "exp": int(now) + lifetime,
            "aio": uuid.uuid4().hex,
            "appid": CLIENT_ID, "appidacr": "1",
            "idp": ISSUER,
            "oid": APP_OBJECT_ID, "sub": APP_OBJECT_ID,
            "rh": "0.emulated.", "tid": TENANT_ID, "uti": uuid.uuid4().hex[:22], "ver": "1.0",
        }
        if is_bc_audience(audience):
            doc["roles"] = list(BC_ROLES)
        for name, value in (claims or {}).items():
            if value is None:
                doc.pop(name, None)
            else:
                doc[name] = value
        return jwt.encode(doc, self.key, algorithm="RS256",
                          headers={"kid": self.kid, "x5t": self.kid})

    def verify(self, token: str, audiences: set[str], now: float | None = None
               ) -> dict[str, Any] | None:
        """Return the claims of a token Entra issued this tenant's app for one of
        ``audiences``, else None.

        Checks the signature, expiry (with leeway), audience, the v1 issuer and tenant, and
        an ``appid``; for Business Central also that the app is the one registered in its
        Microsoft Entra Applications page and holds API.ReadWrite.All. For Dataverse the app
        is checked against the environment's application users by the service itself.
        ``now`` is the calling service's clock (default: real time), so a service whose clock
        was moved forward sees tokens expire as the real service would.
        """
        try:
            claims = jwt.decode(token, self.key.public_key(), algorithms=["RS256"],
                                audience=list(audiences), issuer=ISSUER,
                                leeway=LEEWAY_SECONDS,
                                options={"require": ["exp", "nbf", "aud", "iss", "tid"],
                                         "verify_exp": now is None, "verify_nbf": now is None})
        except jwt.PyJWTError:
            return None
        if now is not None and not (claims["nbf"] - LEEWAY_SECONDS <= now
                                    < claims["exp"] + LEEWAY_SECONDS):
            return None
        if claims.get("tid") != TENANT_ID or claims.get("ver") != "1.0":
            return None
        if not _is_guid(claims.get("appid")):
            return None
        if is_bc_audience(str(claims["aud"])):
            roles = claims.get("roles")
            if claims["appid"] != CLIENT_ID or not isinstance(roles, list) \
                    or BC_API_ROLE not in roles:
                return None
        return claims
