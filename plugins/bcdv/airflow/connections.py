"""Airflow connections -> bcdv settings: the conversions the hooks (bcdv.airflow.hooks, the
only path from a connection to a client) apply, and the connections of a local Airflow.

Connection ids: ``bcdv_business_central``, ``bcdv_dataverse`` (login = client id, password =
client secret, extra = tenant_id, authority, scope, environment, company_id, ca_bundle) and
``bcdv_state`` (a SQLAlchemy URL in the extra ``url`` or as the URI). Business Central's host
is optional: without it the API URL is derived from the tenant and the environment; with it
(an override: the emulators, a proxy) the tenant and environment default to the ones it names.
Dataverse's host is the organisation URL. The authority defaults to the tenant's.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from bcdv.errors import ConfigError
from bcdv.settings import BusinessCentralSettings, DataverseSettings, IdentitySettings, https_url

BC_CONN_ID = "bcdv_business_central"
DV_CONN_ID = "bcdv_dataverse"
STATE_CONN_ID = "bcdv_state"
BC_API_ROOT = "https://api.businesscentral.dynamics.com/v2.0"
# .../v2.0/<tenant>/<environment>/api/v2.0, the form of every Business Central API URL
_BC_URL = re.compile(r"/v2\.0/(?P<tenant>[^/]+)/(?P<environment>[^/]+)/api/v2\.0/?$")


def airflow_env(name: str) -> str | None:
    """An ``AIRFLOW_*`` environment variable (Airflow's own, e.g. a Variable's env form): the
    one place bcdv's Airflow glue reads Airflow's environment; bcdv's own settings come from
    :func:`bcdv.settings.load_settings`."""
    return os.environ.get(name) or None


def _extra(conn: Any) -> dict[str, Any]:
    extra = conn.extra_dejson if hasattr(conn, "extra_dejson") else json.loads(conn.extra or "{}")
    return dict(extra or {})


def _identity(conn: Any, extra: dict[str, Any], conn_id: str) -> IdentitySettings:
    tenant = extra.get("tenant_id") or ""
    authority = extra.get("authority") or (
        f"https://login.microsoftonline.com/{tenant}" if tenant else "")
    missing = [n for n, v in (("login (client id)", conn.login),
                              ("password (client secret)", conn.password),
                              ("extra.tenant_id or extra.authority", authority)) if not v]
    if missing:
        raise ConfigError(f"connection {conn_id!r} is missing {', '.join(missing)}")
    https_url(authority, f"connection {conn_id!r} extra.authority")
    return IdentitySettings(authority=authority, tenant_id=tenant, client_id=conn.login,
                            client_secret=conn.password, ca_bundle=extra.get("ca_bundle"))


def redact_connection(conn: Any) -> None:
    """Keep the connection's password out of every log record.

    Airflow registers a connection's password with its secrets masker when the connection
    is read; calling ``mask_secret`` again only sends the value once more through Airflow's
    comms, whose DEBUG log shows the message. bcdv's own redaction (no logging) is added.
    """
    from bcdv.clients import redact

    redact.install()
    redact.register_secret(getattr(conn, "password", None))


def bc_url_parts(url: str) -> tuple[str, str]:
    """(tenant, environment) a Business Central API URL names, else empty strings."""
    match = _BC_URL.search(url or "")
    return (match["tenant"], match["environment"]) if match else ("", "")


def business_central_settings(conn: Any, conn_id: str = BC_CONN_ID) -> BusinessCentralSettings:
    """Business Central settings of one connection: tenant, environment and company in the
    extras; the API URL derived from them unless host overrides it."""
    redact_connection(conn)
    extra = _extra(conn)
    host_tenant, host_environment = bc_url_parts(conn.host or "")
    tenant = extra.get("tenant_id") or host_tenant
    environment = extra.get("environment") or host_environment or "Production"
    base_url = conn.host or (f"{BC_API_ROOT}/{tenant}/{environment}/api/v2.0" if tenant else "")
    if not base_url or not extra.get("company_id"):
        raise ConfigError(f"connection {conn_id!r} needs extra.tenant_id (or host, an API URL "
                          "override ending in /api/v2.0) and extra.company_id")
    https_url(base_url, f"connection {conn_id!r} host")
    return BusinessCentralSettings(
        base_url=base_url.rstrip("/"), company_id=extra["company_id"],
        identity=_identity(conn, {**extra, "tenant_id": tenant}, conn_id),
        scope=extra.get("scope") or BusinessCentralSettings.scope, environment=environment)


def dataverse_settings(conn: Any, conn_id: str = DV_CONN_ID) -> DataverseSettings:
    """Dataverse settings of one connection (host = organisation URL)."""
    redact_connection(conn)
    extra = _extra(conn)
    if not conn.host:
        raise ConfigError(f"connection {conn_id!r} needs host (the organisation URL)")
    https_url(conn.host, f"connection {conn_id!r} host")
    if extra.get("api_url"):
        https_url(extra["api_url"], f"connection {conn_id!r} extra.api_url")
    return DataverseSettings(base_url=conn.host, identity=_identity(conn, extra, conn_id),
                             api_url=extra.get("api_url", ""), scope=extra.get("scope", ""))


def state_url_of(conn: Any) -> str:
    """The SQLAlchemy URL of a ``bcdv_state`` connection (extra ``url``, else its URI)."""
    redact_connection(conn)
    url = _extra(conn).get("url")
    if not url and conn.host and "://" in conn.host:  # the whole URL typed into "host"
        url = conn.host
    if not url:
        scheme = "postgresql+psycopg2"
        auth = ""
        if conn.login:
            from urllib.parse import quote

            auth = quote(conn.login, safe="")
            if conn.password:
                auth += ":" + quote(conn.password, safe="")
            auth += "@"
        port = f":{conn.port}" if conn.port else ""
        url = f"{scheme}://{auth}{conn.host or ''}{port}/{conn.schema or ''}"
    return str(url).replace("postgres://", "postgresql+psycopg2://", 1)


def connection_env(endpoints: dict[str, Any]) -> dict[str, str]:
    """``AIRFLOW_CONN_*`` variables (JSON form) for an endpoints.json structure."""
    ident, bc, dv = endpoints["identity"], endpoints["business_central"], endpoints["dataverse"]
    common = {"tenant_id": ident["tenant_id"], "authority": ident["authority"]}
    if endpoints.get("ca_bundle"):
        common["ca_bundle"] = endpoints["ca_bundle"]
    conns = {
        BC_CONN_ID: {"conn_type": BC_CONN_ID, "host": bc["base_url"], "login": ident["client_id"],
                     "password": ident["client_secret"],
                     "extra": {**common, "scope": bc["scope"], "environment": bc["environment"],
                               "company_id": bc["company_id"]}},
        DV_CONN_ID: {"conn_type": DV_CONN_ID, "host": dv["base_url"], "login": ident["client_id"],
                     "password": ident["client_secret"],
                     "extra": {**common, "scope": dv["scope"], "api_url": dv["api_url"]}},
    }
    return {f"AIRFLOW_CONN_{k.upper()}": json.dumps(v) for k, v in conns.items()}


def local_airflow_env(root: Path, home: Path, endpoints: dict[str, Any], state_url: str,
                      staging: Path) -> dict[str, str]:
    """Environment for a project-local Airflow (the demo, ``bcdv up``): its own home and
    SQLite metadata DB, this checkout's dags/plugins/mappings, and the connections."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_")}
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(root / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(root / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "BCDV_STATE_URL": state_url,
        "BCDV_STAGING_DIR": str(staging),
        "BCDV_MAPPINGS_DIR": str(root / "include" / "mappings"),
    })
    env.update(connection_env(endpoints))
    return env
