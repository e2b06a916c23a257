"""Airflow hooks of the three bcdv connection types: they only turn a Connection into settings.

- ``bcdv_business_central``: login = client id, password = client secret; extras tenant_id,
  environment, company_id (each asked once), optional overrides authority, scope, ca_bundle
  and host (the API URL, else derived from tenant and environment). "Test connection" gets a
  token and reads the record ``companies({company_id})``.
- ``bcdv_dataverse``: host = organisation URL; extra tenant_id, optional overrides authority,
  scope, api_url, ca_bundle. "Test connection" gets a token, calls ``WhoAmI`` and reads the
  calling user's ``systemusers`` record.

"Test connection" needs ``[core] test_connection = Enabled`` (``bcdv up`` and
docker-compose.yml set it); it returns ``(False, message)`` without the secret on failure.
- ``bcdv_state``: host/login/password/schema/port of a PostgreSQL server, or a full
  SQLAlchemy URL in the extra ``url``. "Test connection" runs ``SELECT 1``.

Airflow masks the client secret when it reads a connection; the hooks also install bcdv's log
redaction (secret, bearer tokens) for every stdlib log record, at every level, and no message
these hooks produce contains it.

The hooks are the only path from an Airflow connection to bcdv settings: :func:`endpoints`,
:func:`state_url` and :func:`sync_context` (what every task uses) go through them.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseHook

from bcdv.airflow import connections as conns
from bcdv.airflow import masking
from bcdv.airflow.connection_types import (
    BC_BEHAVIOUR,
    BC_FIELDS,
    DV_BEHAVIOUR,
    DV_FIELDS,
    STATE_BEHAVIOUR,
    STATE_FIELDS,
    widgets,
)
from bcdv.errors import BcdvError, ConfigError
from bcdv.settings import Endpoints, load_endpoints, load_settings


class ConnectionMissing(ConfigError):
    """The Airflow connection is not defined."""


def safe_message(exc: BaseException, *secrets: str | None) -> str:
    """An exception's message with any secret removed (defence in depth: ours carry none)."""
    text = f"{type(exc).__name__}: {exc}" if not isinstance(exc, BcdvError) else str(exc)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text[:1000]


class _BcdvHook(BaseHook):
    """Shared parts: reading the connection with its secret masked."""

    conn_name_attr = "conn_id"
    default_conn_name = ""

    def __init__(self, conn_id: str | None = None, **kwargs: Any) -> None:
        # Airflow's Connection.get_hook (the Test button) passes the id as conn_name_attr.
        named = kwargs.pop(self.conn_name_attr, None)
        super().__init__(**kwargs)
        self.conn_id = conn_id or named or self.default_conn_name

    def connection(self) -> Any:
        """The Airflow connection; its password is redacted from every log record (Airflow
        masks it when reading the connection; bcdv's redaction covers stdlib loggers)."""
        masking.install()
        try:
            conn = self.get_connection(self.conn_id)
        except Exception as exc:  # Airflow raises its own not-found type per version
            raise ConnectionMissing(f"Airflow connection {self.conn_id!r} is not defined: "
                                    f"{type(exc).__name__}") from None
        conns.redact_connection(conn)
        return conn


class BusinessCentralHook(_BcdvHook):
    """Business Central API v2.0 connection (``bcdv_business_central``)."""

    conn_name_attr = "bcdv_business_central_conn_id"
    default_conn_name = conns.BC_CONN_ID
    conn_type = "bcdv_business_central"
    hook_name = "Business Central (bcdv)"

    @classmethod
    def get_connection_formwidgets(cls) -> dict[str, Any]:
        """Extra fields of the connection form (pre-3.2 Airflow)."""
        return widgets(BC_FIELDS)

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Relabelled and hidden standard fields."""
        return BC_BEHAVIOUR

    def get_settings(self) -> Any:
        """``BusinessCentralSettings`` of the connection."""
        return conns.business_central_settings(self.connection(), self.conn_id)

    def test_connection(self) -> tuple[bool, str]:
        """Get a token and read the configured company."""
        from bcdv.clients.business_central import BusinessCentralClient
        from bcdv.clients.http import RetryPolicy

        secret = None
        try:
            conn = self.connection()
            secret = conn.password
            settings = conns.business_central_settings(conn, self.conn_id)
            client = BusinessCentralClient(settings, retry=RetryPolicy(max_attempts=1,
                                                                        budget_seconds=10))
            try:
                company = client.http.get_json(client.company_url)
            finally:
                client.close()
            return True, (f"Connected to Business Central company "
                          f"{company.get('name') or company.get('displayName') or ''} "
                          f"({settings.company_id})").replace("  ", " ")
        except Exception as exc:  # the UI shows the message; it never carries the secret
            return False, safe_message(exc, secret)


class DataverseHook(_BcdvHook):
    """Dataverse Web API v9.2 connection (``bcdv_dataverse``)."""

    conn_name_attr = "bcdv_dataverse_conn_id"
    default_conn_name = conns.DV_CONN_ID
    conn_type = "bcdv_dataverse"
    hook_name = "Dataverse (bcdv)"

    @classmethod
    def get_connection_formwidgets(cls) -> dict[str, Any]:
        """Extra fields of the connection form (pre-3.2 Airflow)."""
        return widgets(DV_FIELDS)

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Relabelled and hidden standard fields."""
        return DV_BEHAVIOUR

    def get_settings(self) -> Any:
        """``DataverseSettings`` of the connection."""
        return conns.dataverse_settings(self.connection(), self.conn_id)

    def test_connection(self) -> tuple[bool, str]:
        """Get a token, call WhoAmI and read that user's own record (the security role must
        allow reading users; the sync needs it too)."""
        from bcdv.clients.dataverse import DataverseClient
        from bcdv.clients.http import RetryPolicy

        secret = None
        try:
            conn = self.connection()
            secret = conn.password
            client = DataverseClient(conns.dataverse_settings(conn, self.conn_id),
                                     retry=RetryPolicy(max_attempts=1, budget_seconds=10))
            try:
                who = client.whoami()
                user = client.get("systemusers", who["UserId"], select=["fullname"]) or {}
            finally:
                client.close()
            return True, (f"Connected to Dataverse as {user.get('fullname') or 'user'} "
                          f"{who.get('UserId')} (organisation {who.get('OrganizationId')})")
        except Exception as exc:
            return False, safe_message(exc, secret)


class StateStoreHook(_BcdvHook):
    """The bcdv state store database (``bcdv_state``)."""

    conn_name_attr = "bcdv_state_conn_id"
    default_conn_name = conns.STATE_CONN_ID
    conn_type = "bcdv_state"
    hook_name = "bcdv state store"

    @classmethod
    def get_connection_formwidgets(cls) -> dict[str, Any]:
        """Extra fields of the connection form (pre-3.2 Airflow)."""
        return widgets(STATE_FIELDS)

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Relabelled standard fields."""
        return STATE_BEHAVIOUR

    def get_uri(self) -> str:
        """The SQLAlchemy URL of the state store."""
        return conns.state_url_of(self.connection())

    def test_connection(self) -> tuple[bool, str]:
        """``SELECT 1`` on the database (no schema change)."""
        secret = None
        try:
            conn = self.connection()
            secret = conn.password
            from sqlalchemy import create_engine, text
            from sqlalchemy.engine import make_url

            url = make_url(conns.state_url_of(conn))
            secret = secret or url.password
            engine = create_engine(url, pool_pre_ping=True)
            try:
                with engine.connect() as db:
                    db.execute(text("SELECT 1"))
            finally:
                engine.dispose()
            return True, f"Connected to {url.render_as_string(hide_password=True)}"
        except Exception as exc:
            return False, safe_message(exc, secret)


# -- what the tasks use ----------------------------------------------------------------------
def endpoints() -> Endpoints:
    """Both APIs' settings from the connections ``bcdv_business_central`` and
    ``bcdv_dataverse``; without them, the endpoints file named by ``BCDV_ENDPOINTS``."""
    try:
        bc, dv = BusinessCentralHook(), DataverseHook()
        bc_conn, dv_conn = bc.connection(), dv.connection()
    except ConnectionMissing:
        endpoints_file = load_settings().endpoints_file
        if endpoints_file is not None:
            return load_endpoints(endpoints_file)
        raise
    return Endpoints(business_central=conns.business_central_settings(bc_conn, bc.conn_id),
                     dataverse=conns.dataverse_settings(dv_conn, dv.conn_id))


def state_url() -> str:
    """The state store: ``BCDV_STATE_URL``, else connection ``bcdv_state``, else the
    settings' default (SQLite under bcdv's home)."""
    settings = load_settings()
    if settings.explicit_state_url:
        return settings.explicit_state_url
    try:
        return StateStoreHook().get_uri()
    except ConnectionMissing:
        return settings.state_url


def sync_context(mappings: dict[str, Any] | None = None) -> Any:
    """A ``SyncContext`` on the connections' endpoints and state store (close it after)."""
    from bcdv.airflow import object_storage
    from bcdv.engine.context import SyncContext

    object_storage.install()  # staging URLs open as Airflow ObjectStoragePath
    return SyncContext.create(endpoints(), state_url(), load_settings().staging_root, mappings)
