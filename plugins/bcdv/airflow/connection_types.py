"""The bcdv connection types as plain data: form fields and field behaviour.

Shared by the hooks (bcdv.airflow.hooks) and the provider metadata (bcdv.airflow.provider).
This module imports nothing from Airflow: Airflow loads the provider metadata while it is
itself being imported, so the metadata must not import the hooks (which import airflow.sdk).
"""

from __future__ import annotations

from typing import Any

# One declaration of the form fields, used by the provider metadata (Airflow 3.2+ reads it
# without importing the hook) and by get_connection_form_widgets (older Airflow).
IDENTITY_FIELDS: dict[str, dict[str, Any]] = {
    "tenant_id": {"label": "Tenant ID", "description": "Microsoft Entra tenant (GUID or domain)"},
    "authority": {"label": "Authority URL",
                  "description": "Optional; default https://login.microsoftonline.com/<tenant>"},
    "scope": {"label": "Scope", "description": "Optional OAuth scope (…/.default)"},
    "ca_bundle": {"label": "CA bundle", "description": "Optional path of a CA bundle (PEM)"},
}
BC_FIELDS: dict[str, dict[str, Any]] = {
    "company_id": {"label": "Company ID", "description": "The company's id (GUID)"},
    "environment": {"label": "Environment", "description": "e.g. Production"},
    **IDENTITY_FIELDS,
}
DV_FIELDS: dict[str, dict[str, Any]] = {
    **IDENTITY_FIELDS,
    "api_url": {"label": "Web API URL",
                "description": "Optional; default <organisation URL>/api/data/v9.2"},
}
STATE_FIELDS: dict[str, dict[str, Any]] = {
    "url": {"label": "SQLAlchemy URL",
            "description": "Optional full URL, e.g. postgresql+psycopg2://user:pw@host/bcdv "
                           "or sqlite:////path/state.db (overrides the fields above)"},
}


def conn_fields(fields: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Provider-metadata ``conn-fields`` of a field declaration."""
    return {name: {"label": f["label"], "description": f.get("description", ""),
                   "schema": {"type": ["string", "null"]}} for name, f in fields.items()}


def widgets(fields: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """wtforms fields of a field declaration (the pre-3.2 way; needs the FAB provider)."""
    from flask_appbuilder.fieldwidgets import BS3TextFieldWidget
    from wtforms import StringField

    return {name: StringField(f["label"], widget=BS3TextFieldWidget(),
                              description=f.get("description", ""))
            for name, f in fields.items()}


API_BEHAVIOUR = {
    "hidden_fields": ["schema", "port"],
    "relabeling": {"host": "Base URL", "login": "Client ID", "password": "Client secret"},
}
BC_BEHAVIOUR = {**API_BEHAVIOUR, "placeholders": {
    "host": "https://api.businesscentral.dynamics.com/v2.0/<tenant>/Production/api/v2.0",
    "login": "application (client) id", "company_id": "00000000-0000-0000-0000-000000000000",
    "environment": "Production", "scope": "https://api.businesscentral.dynamics.com/.default"}}
DV_BEHAVIOUR = {**API_BEHAVIOUR, "placeholders": {
    "host": "https://<org>.crm.dynamics.com", "login": "application (client) id"}}
STATE_BEHAVIOUR = {
    "hidden_fields": [],
    "relabeling": {"schema": "Database"},
    "placeholders": {"host": "postgres.example.com", "schema": "bcdv", "port": "5432",
                     "url": "postgresql+psycopg2://user:password@host:5432/bcdv"},
}
