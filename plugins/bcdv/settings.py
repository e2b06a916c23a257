"""bcdv's settings: one :class:`Settings` object from the environment, and the connection
settings of the three Microsoft endpoints (frozen dataclasses).

:func:`load_settings` is the one place that reads ``BCDV_*`` variables; it is called at call
time (never frozen at import), so a changed environment is seen by the next call. Every
default is here, and none is relative to the current directory: state and staging live under
``home`` (``$BCDV_HOME``, else ``$AIRFLOW_HOME/bcdv`` when ``AIRFLOW_HOME`` is set, else
``$XDG_DATA_HOME/bcdv`` or ``~/.local/share/bcdv``), the same for the CLI and the DAGs.

The endpoints come from an endpoints file (the emulators write one; a user may write one for
a real tenant), from environment variables, or from Airflow connections (bcdv.airflow.hooks).
The client secret never appears in a repr, a log line or an error message.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict

from bcdv.errors import ConfigError

DEFAULT_TIMEOUT = 60.0
PROJECT_ROOT = Path(__file__).resolve().parents[2]


class Settings(BaseModel):
    """Every bcdv setting with its one default (environment variable in brackets)."""

    model_config = ConfigDict(frozen=True)

    home: Path  # BCDV_HOME: the default home of state and staging
    explicit_state_url: str | None = None  # BCDV_STATE_URL
    staging_dir: Path  # BCDV_STAGING_DIR, else <home>/staging
    # BCDV_STAGING_URL: staging on any fsspec URL (file:///shared/x, s3://bucket/x, ...),
    # for workers on several machines; wins over staging_dir (bcdv.engine.staging).
    staging_url: str | None = None
    explicit_mappings_dir: Path | None = None  # BCDV_MAPPINGS_DIR
    endpoints_file: Path | None = None  # BCDV_ENDPOINTS
    lock_stale_seconds: float = 180.0  # BCDV_LOCK_STALE_SECONDS
    lock_heartbeat_seconds: float = 30.0  # BCDV_LOCK_HEARTBEAT_SECONDS
    staging_retention_days: float = 7.0  # BCDV_STAGING_RETENTION_DAYS
    task_retries: int = 2  # BCDV_TASK_RETRIES (read when a DAG file is parsed)
    retry_delay_seconds: float = 30.0  # BCDV_RETRY_DELAY_SECONDS
    max_parallel_loads: int = 4  # BCDV_MAX_PARALLEL_LOADS
    batch_size: int = 100  # BCDV_BATCH_SIZE: records per $batch / bulk request (API caps apply)
    # Client-side pacing under the service protection limits: at most request_limit requests
    # started per request_window_seconds, per service host and process. Both services allow
    # 6,000 per 5-minute sliding window per user (bcdv.clients.http.RequestPacer).
    request_limit: int = 6000  # BCDV_REQUEST_LIMIT (0: no pacing, only Retry-After)
    request_window_seconds: float = 300.0  # BCDV_REQUEST_WINDOW_SECONDS
    up_port: int = 8080  # BCDV_UP_PORT
    # glibc malloc arenas of a sync process (bcdv.engine.memory); 0: glibc's default, as
    # when MALLOC_ARENA_MAX is set (the operator told glibc directly).
    malloc_arenas: int = 2  # BCDV_MALLOC_ARENAS
    # Test-only fault injection: a load task kills itself after this many writes.
    test_kill_load_after_writes: int = 0  # BCDV_TEST_KILL_LOAD_AFTER_WRITES
    # Alert settings by lower-case name (bcdv_alert_*, bcdv_failed_records_threshold); an
    # Airflow Variable of the same name wins over these (bcdv.airflow.notifiers).
    alerts: dict[str, str] = {}

    @property
    def state_url(self) -> str:
        """``BCDV_STATE_URL``, else the SQLite file ``<home>/state.db``."""
        return self.explicit_state_url or f"sqlite:///{(self.home / 'state.db').resolve()}"

    @property
    def staging_root(self) -> str:
        """Where passes stage their files: ``BCDV_STAGING_URL``, else ``staging_dir``."""
        return self.staging_url or str(self.staging_dir)

    @property
    def mappings_dir(self) -> Path:
        """``BCDV_MAPPINGS_DIR``, else the include/mappings of the project bcdv is installed
        from (a checkout, or an Airflow deployment with plugins/ beside include/), else
        ``<home>/mappings``."""
        if self.explicit_mappings_dir is not None:
            return self.explicit_mappings_dir
        shipped = PROJECT_ROOT / "include" / "mappings"
        return shipped if shipped.is_dir() else self.home / "mappings"


def default_home(env: Mapping[str, str]) -> Path:
    """The one home rule: ``BCDV_HOME``, else ``$AIRFLOW_HOME/bcdv``, else the user's data
    directory (``$XDG_DATA_HOME/bcdv``, default ``~/.local/share/bcdv``)."""
    if env.get("BCDV_HOME"):
        return Path(env["BCDV_HOME"]).expanduser().resolve()
    if env.get("AIRFLOW_HOME"):
        return (Path(env["AIRFLOW_HOME"]).expanduser() / "bcdv").resolve()
    data = Path(env.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return (data.expanduser() / "bcdv").resolve()


_NUMBERS: dict[str, tuple[str, type]] = {
    "lock_stale_seconds": ("BCDV_LOCK_STALE_SECONDS", float),
    "lock_heartbeat_seconds": ("BCDV_LOCK_HEARTBEAT_SECONDS", float),
    "staging_retention_days": ("BCDV_STAGING_RETENTION_DAYS", float),
    "task_retries": ("BCDV_TASK_RETRIES", int),
    "retry_delay_seconds": ("BCDV_RETRY_DELAY_SECONDS", float),
    "max_parallel_loads": ("BCDV_MAX_PARALLEL_LOADS", int),
    "batch_size": ("BCDV_BATCH_SIZE", int),
    "request_limit": ("BCDV_REQUEST_LIMIT", int),
    "request_window_seconds": ("BCDV_REQUEST_WINDOW_SECONDS", float),
    "up_port": ("BCDV_UP_PORT", int),
    "malloc_arenas": ("BCDV_MALLOC_ARENAS", int),
    "test_kill_load_after_writes": ("BCDV_TEST_KILL_LOAD_AFTER_WRITES", int),
}


def _number(env: Mapping[str, str], name: str, kind: type) -> float | None:
    raw = (env.get(name) or "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    return int(value) if kind is int else value


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """The settings from the environment (``os.environ`` unless given): the one function
    that reads ``BCDV_*`` variables. Cheap; call it where the value is needed."""
    env = os.environ if environ is None else environ
    home = default_home(env)
    data: dict[str, Any] = {
        field_: value for field_, (name, kind) in _NUMBERS.items()
        if (value := _number(env, name, kind)) is not None}
    data["alerts"] = {k.lower(): v for k, v in env.items()
                      if (k.startswith("BCDV_ALERT_") or k == "BCDV_FAILED_RECORDS_THRESHOLD")
                      and v}
    data.update(
        home=home,
        explicit_state_url=env.get("BCDV_STATE_URL") or None,
        staging_dir=Path(env.get("BCDV_STAGING_DIR") or home / "staging").expanduser(),
        staging_url=(env.get("BCDV_STAGING_URL") or "").strip() or None,
        explicit_mappings_dir=Path(env["BCDV_MAPPINGS_DIR"]).expanduser()
        if env.get("BCDV_MAPPINGS_DIR") else None,
        endpoints_file=Path(env["BCDV_ENDPOINTS"]) if env.get("BCDV_ENDPOINTS") else None)
    if env.get("MALLOC_ARENA_MAX"):
        data["malloc_arenas"] = 0
    return Settings.model_validate(data)


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
