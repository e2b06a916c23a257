"""Access tokens: RS256 JWTs shaped like Entra v1 app-only tokens.

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

from bcdv.emulators.config import APP_OBJECT_ID, CLIENT_ID, TENANT_ID

LEEWAY_SECONDS = 300
"""Clock skew tolerated when checking exp/nbf, as Microsoft's token validation does."""


def _b64url_uint(n: int) -> str:
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@dataclass
class TokenAuthority:
    """Signs and verifies the emulators' access tokens."""

    key: rsa.RSAPrivateKey
    kid: str

    @classmethod
    def load(cls, data_dir: Path) -> "TokenAuthority":
        """Load DIR/signing.key, creating it on first use."""
        path = data_dir / "signing.key"
        if path.exists():
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
            assert isinstance(key, rsa.RSAPrivateKey)
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
                          "issuer": f"https://sts.windows.net/{TENANT_ID}/"}]}

    def mint(self, audience: str, *, now: float | None = None, lifetime: int = 3599,
             roles: list[str] | None = None, client_id: str = CLIENT_ID) -> str:
        """Issue an app-only access token for ``audience`` (exp = now + lifetime)."""
        now = time.time() if now is None else now
        claims = {
            "aud": audience,
            "iss": f"https://sts.windows.net/{TENANT_ID}/",
            "iat": int(now), "nbf": int(now), "exp": int(now) + lifetime,
            "aio": uuid.uuid4().hex,
            "appid": client_id, "appidacr": "1",
            "idp": f"https://sts.windows.net/{TENANT_ID}/",
            "oid": APP_OBJECT_ID, "sub": APP_OBJECT_ID,
            "rh": "0.emulated.", "tid": TENANT_ID, "uti": uuid.uuid4().hex[:22], "ver": "1.0",
            "roles": roles if roles is not None else ["API.ReadWrite.All"],
        }
        return jwt.encode(claims, self.key, algorithm="RS256",
                          headers={"kid": self.kid, "x5t": self.kid})

    def verify(self, token: str, audiences: set[str]) -> dict[str, Any] | None:
        """Return the claims of a valid token for one of ``audiences``, else None."""
        try:
            claims = jwt.decode(token, self.key.public_key(), algorithms=["RS256"],
                                audience=list(audiences), leeway=LEEWAY_SECONDS,
                                options={"require": ["exp", "aud", "tid"]})
        except jwt.PyJWTError:
            return None
        if claims.get("tid") != TENANT_ID:
            return None
        return claims
