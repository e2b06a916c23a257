"""Connection settings for the three Microsoft endpoints, as frozen dataclasses.

They come from an endpoints file (the emulators write one; a user may write one for a real
tenant), from environment variables, or from Airflow connections (bcdv.airflow.hooks). The
client secret never appears in a repr, a log line or an error message.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bcdv.errors import ConfigError

DEFAULT_TIMEOUT = 60.0


def https_url(value: str, setting: str) -> str:
    """``value`` if it is an https URL with a host, else a ConfigError naming ``setting``.

    Bearer tokens and the client secret travel with these URLs: never in clear text, not even
    on loopback (the emulators serve https too).
    """
    parts = urlsplit(str(value).strip())
    if parts.scheme.lower() != "https" or not parts.hostname:
        shown = str(value) if len(str(value)) <= 120 else str(value)[:117] + "..."
        raise ConfigError(f"{setting}: {shown!r} is not an https URL; only https is accepted "
                          "(tokens and the client secret must never travel in clear text)")
    return str(value).strip()


@dataclass(frozen=True)
class IdentitySettings:
    """An Entra ID app registration used with the client-credentials flow."""

    authority: str
    tenant_id: str
    client_id: str
    client_secret: str = field(repr=False)
    ca_bundle: str | None = None

    def __post_init__(self) -> None:
        https_url(self.authority, "identity authority")


@dataclass(frozen=True)
class BusinessCentralSettings:
    """Where Business Central API v2.0 lives and which company to use.

    ``base_url`` ends in ``/api/v2.0``, e.g.
    ``https://api.businesscentral.dynamics.com/v2.0/<tenant>/Production/api/v2.0``.
    """

    base_url: str
    company_id: str
    identity: IdentitySettings
    scope: str = "https://api.businesscentral.dynamics.com/.default"
    environment: str = "Production"
    timeout: float = DEFAULT_TIMEOUT

    def __post_init__(self) -> None:
        https_url(self.base_url, "Business Central base_url")


@dataclass(frozen=True)
class DataverseSettings:
    """Where the Dataverse organisation lives (``base_url`` is the org URL)."""

    base_url: str
    identity: IdentitySettings
    api_url: str = ""
    scope: str = ""
    timeout: float = DEFAULT_TIMEOUT

    def __post_init__(self) -> None:
        https_url(self.base_url, "Dataverse base_url")
        if self.api_url:
            https_url(self.api_url, "Dataverse api_url")
        base = self.base_url.rstrip("/")
        object.__setattr__(self, "base_url", base)
        if not self.api_url:
            object.__setattr__(self, "api_url", f"{base}/api/data/v9.2")
        if not self.scope:
            object.__setattr__(self, "scope", f"{base}/.default")


@dataclass(frozen=True)
class Endpoints:
    """Both APIs' settings, as read from an endpoints file or the environment."""

    business_central: BusinessCentralSettings
    dataverse: DataverseSettings


def _require(data: dict[str, Any], key: str, where: str) -> Any:
    value = data.get(key)
    if value in (None, ""):
        raise ConfigError(f"{where}: missing '{key}'")
    return value


def endpoints_from_dict(data: dict[str, Any], where: str = "endpoints",
                        names: dict[str, str] | None = None) -> Endpoints:
    """Build settings from the endpoints.json structure the emulators write.

    Every URL must be https; an error names ``where`` and the key (or, through ``names``,
    what the user set instead, e.g. an environment variable).
    """
    ident = data.get("identity") or {}
    for section, key in (("identity", "authority"), ("business_central", "base_url"),
                         ("dataverse", "base_url"), ("dataverse", "api_url")):
        value = (data.get(section) or {}).get(key)
        if value:
            label = f"{section}.{key}"
            https_url(value, (names or {}).get(label) or f"{where}: {label}")
    identity = IdentitySettings(
        authority=_require(ident, "authority", f"{where}.identity"),
        tenant_id=_require(ident, "tenant_id", f"{where}.identity"),
        client_id=_require(ident, "client_id", f"{where}.identity"),
        client_secret=_require(ident, "client_secret", f"{where}.identity"),
        ca_bundle=data.get("ca_bundle"),
    )
    bc = data.get("business_central") or {}
    dv = data.get("dataverse") or {}
    return Endpoints(
        business_central=BusinessCentralSettings(
            base_url=_require(bc, "base_url", f"{where}.business_central").rstrip("/"),
            company_id=_require(bc, "company_id", f"{where}.business_central"),
            identity=identity,
            scope=bc.get("scope") or BusinessCentralSettings.scope,
            environment=bc.get("environment") or "Production",
        ),
        dataverse=DataverseSettings(
            base_url=_require(dv, "base_url", f"{where}.dataverse"),
            identity=identity,
            api_url=dv.get("api_url", ""),
            scope=dv.get("scope", ""),
        ),
    )


def load_endpoints(path: str | os.PathLike[str]) -> Endpoints:
    """Read an endpoints.json file."""
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"endpoints file not found: {p}") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{p}:{exc.lineno}: not valid JSON: {exc.msg}") from exc
    return endpoints_from_dict(data, where=str(p))


def endpoints_from_env(environ: dict[str, str] | None = None) -> Endpoints:
    """Settings for the CLI: ``BCDV_ENDPOINTS`` (a file) or individual ``BCDV_*`` variables."""
    env = os.environ if environ is None else environ
    if env.get("BCDV_ENDPOINTS"):
        return load_endpoints(env["BCDV_ENDPOINTS"])
    data = {
        "ca_bundle": env.get("BCDV_CA_BUNDLE") or None,
        "identity": {
            "authority": env.get("BCDV_AUTHORITY")
            or (f"https://login.microsoftonline.com/{env['BCDV_TENANT_ID']}"
                if env.get("BCDV_TENANT_ID") else ""),
            "tenant_id": env.get("BCDV_TENANT_ID", ""),
            "client_id": env.get("BCDV_CLIENT_ID", ""),
            "client_secret": env.get("BCDV_CLIENT_SECRET", ""),
        },
        "business_central": {
            "base_url": env.get("BCDV_BC_BASE_URL", ""),
            "company_id": env.get("BCDV_BC_COMPANY_ID", ""),
            "environment": env.get("BCDV_BC_ENVIRONMENT", "Production"),
        },
        "dataverse": {"base_url": env.get("BCDV_DATAVERSE_URL", "")},
    }
    return endpoints_from_dict(data, where="environment (BCDV_ENDPOINTS or BCDV_* variables)",
                               names=_ENV_NAMES)


_ENV_NAMES = {"identity.authority": "BCDV_AUTHORITY (or BCDV_TENANT_ID)",
              "business_central.base_url": "BCDV_BC_BASE_URL",
              "dataverse.base_url": "BCDV_DATAVERSE_URL"}
