"""The bcdv connection types as plain data: form fields and field behaviour.

Shared by the hooks (bcdv.airflow.hooks) and the provider metadata (bcdv.airflow.provider).
This module imports nothing from Airflow: Airflow loads the provider metadata while it is
itself being imported, so the metadata must not import the hooks (which import airflow.sdk).
"""

from __future__ import annotations

from typing import Any

# One declaration of the form fields, used by the provider metadata (Airflow 3.2+ reads it
# without importing the hook) and by get_connection_form_widgets (older Airflow). Each value is
# asked once per form: the tenant only in "Tenant ID" (the authority and Business Central's API
# URL are derived from it), Business Central's environment only in "Environment".
TENANT_FIELD: dict[str, dict[str, Any]] = {
    "tenant_id": {"label": "Tenant ID", "description": "Microsoft Entra tenant (GUID or domain)"},
}
IDENTITY_OVERRIDES: dict[str, dict[str, Any]] = {
    "authority": {"label": "Authority URL override",
                  "description": "Optional; default https://login.microsoftonline.com/<tenant>"},
    "scope": {"label": "Scope override", "description": "Optional OAuth scope (…/.default)"},
    "ca_bundle": {"label": "CA bundle", "description": "Optional path of a CA bundle (PEM)"},
}
BC_FIELDS: dict[str, dict[str, Any]] = {
    **TENANT_FIELD,
    "environment": {"label": "Environment", "description": "Business Central environment name, "
                                                          "e.g. Production"},
    "company_id": {"label": "Company ID", "description": "The company's id (GUID)"},
    **IDENTITY_OVERRIDES,
}
DV_FIELDS: dict[str, dict[str, Any]] = {
    **TENANT_FIELD,
    **IDENTITY_OVERRIDES,
    "api_url": {"label": "Web API URL override",
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
    from flask_appbuilder.fieldwidgets import BS3TextFieldWidget  # type: ignore[import-not-found]
    from wtforms import StringField  # type: ignore[import-untyped]

    return {name: StringField(f["label"], widget=BS3TextFieldWidget(),
                              description=f.get("description", ""))
            for name, f in fields.items()}


_API_HIDDEN = ["schema", "port"]
_API_LABELS = {"login": "Client ID", "password": "Client secret"}
# Business Central: "host" is only an override of the API URL derived from tenant and
# environment (the emulators, a sovereign cloud, a proxy); left empty for a real tenant.
BC_BEHAVIOUR = {
    "hidden_fields": _API_HIDDEN,
    "relabeling": {**_API_LABELS, "host": "API URL override (optional)"},
    "placeholders": {
        "host": "empty: https://api.businesscentral.dynamics.com/v2.0/<tenant>/<environment>"
                "/api/v2.0",
        "login": "application (client) id", "tenant_id": "contoso.onmicrosoft.com or GUID",
        "environment": "Production", "company_id": "00000000-0000-0000-0000-000000000000",
        "authority": "empty: https://login.microsoftonline.com/<tenant>",
        "scope": "empty: https://api.businesscentral.dynamics.com/.default"}}
DV_BEHAVIOUR = {
    "hidden_fields": _API_HIDDEN,
    "relabeling": {**_API_LABELS, "host": "Organisation URL"},
    "placeholders": {
        "host": "https://<org>.crm.dynamics.com", "login": "application (client) id",
        "tenant_id": "contoso.onmicrosoft.com or GUID",
        "authority": "empty: https://login.microsoftonline.com/<tenant>",
        "scope": "empty: <organisation URL>/.default"}}
STATE_BEHAVIOUR = {
    "hidden_fields": [],
    "relabeling": {"schema": "Database"},
    "placeholders": {"host": "postgres.example.com", "schema": "bcdv", "port": "5432",
                     "url": "postgresql+psycopg2://user:password@host:5432/bcdv"},
}
