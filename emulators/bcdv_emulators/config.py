"""Fixed identities, default ports and the data-directory layout of the emulators.

Data directory layout::

    DIR/tls/ca.pem, ca.key, server.pem, server.key   local CA + server certificate (reused)
    DIR/identity.json                                client secret + token signing key id
    DIR/signing.key                                  RSA key that signs access tokens
    DIR/bc.sqlite, DIR/dv.sqlite                     Business Central / Dataverse data
    DIR/endpoints.json                               what clients need to reach the emulators
"""
from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TENANT_ID = "8f3c2d1e-6b5a-4c7d-9e8f-0a1b2c3d4e5f"
"""The emulated Entra tenant (also addressable as ``TENANT_DOMAIN``)."""
TENANT_DOMAIN = "cronus.onmicrosoft.com"
CLIENT_ID = "4b1f6d2a-9c3e-4e57-8a1b-2c3d4e5f6a7b"
"""The one registered application (service principal) allowed to get tokens."""
APP_OBJECT_ID = "a7d3e9f1-2b4c-4d6e-8f0a-1b2c3d4e5f60"
"""Object id of the service principal (``oid`` claim, Dataverse azureactivedirectoryobjectid)."""
ENVIRONMENT = "Production"
BC_RESOURCE = "https://api.businesscentral.dynamics.com"
DV_ORG_URL = "https://bcdv-emulated.crm.dynamics.com"
"""A Microsoft-shaped organisation URL that Dataverse also accepts as token audience."""

DEFAULT_HOST = "127.0.0.1"
DEFAULT_IDENTITY_PORT = 47443
DEFAULT_BC_PORT = 47444
DEFAULT_DV_PORT = 47445


@dataclass
class Settings:
    """Everything the three services need to know about each other."""

    data_dir: Path
    host: str = DEFAULT_HOST
    identity_port: int = DEFAULT_IDENTITY_PORT
    bc_port: int = DEFAULT_BC_PORT
    dv_port: int = DEFAULT_DV_PORT
    client_secret: str = ""
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def identity_url(self) -> str:
        """Base URL of the identity service (no trailing slash)."""
        return f"https://{self.host}:{self.identity_port}"

    @property
    def authority(self) -> str:
        """The msal authority: identity base + tenant."""
        return f"{self.identity_url}/{TENANT_ID}"

    @property
    def bc_url(self) -> str:
        """Scheme + host + port of the Business Central service."""
        return f"https://{self.host}:{self.bc_port}"

    @property
    def bc_base_url(self) -> str:
        """The API root a BC connection uses."""
        return f"{self.bc_url}/v2.0/{TENANT_ID}/{ENVIRONMENT}/api/v2.0"

    @property
    def dv_url(self) -> str:
        """The Dataverse organisation URL."""
        return f"https://{self.host}:{self.dv_port}"

    @property
    def dv_audiences(self) -> set[str]:
        """Token audiences Dataverse accepts (with or without trailing slash)."""
        hosts = {self.dv_url, f"https://localhost:{self.dv_port}", DV_ORG_URL}
        return hosts | {h + "/" for h in hosts}

    def resources(self) -> set[str]:
        """Resource (audience) URIs the identity service will mint tokens for."""
        return {BC_RESOURCE} | self.dv_audiences

    def option(self, name: str, default: Any) -> Any:
        """A documented emulator option (see the services' docstrings)."""
        return self.options.get(name, default)


def load_or_create_secret(data_dir: Path) -> str:
    """Return the client secret of this data directory, generating it on first use."""
    path = data_dir / "identity.json"
    if path.exists():
        return str(json.loads(path.read_text())["client_secret"])
    data_dir.mkdir(parents=True, exist_ok=True)
    # Entra secrets look like 40 chars with a '~' in them; keep a similar shape.
    secret = "bcdv~" + secrets.token_urlsafe(27)
    path.write_text(json.dumps({"client_secret": secret}, indent=2))
    path.chmod(0o600)
    return secret


def endpoints_document(settings: Settings, company_id: str) -> dict[str, Any]:
    """The content of DIR/endpoints.json."""
    return {
        "ca_bundle": str((settings.data_dir / "tls" / "ca.pem").resolve()),
        "identity": {
            "authority": settings.authority,
            "tenant_id": TENANT_ID,
            "client_id": CLIENT_ID,
            "client_secret": settings.client_secret,
        },
        "business_central": {
            "base_url": settings.bc_base_url,
            "scope": f"{BC_RESOURCE}/.default",
            "environment": ENVIRONMENT,
            "company_id": company_id,
        },
        "dataverse": {
            "base_url": settings.dv_url,
            "api_url": f"{settings.dv_url}/api/data/v9.2",
            "scope": f"{settings.dv_url}/.default",
        },
    }
