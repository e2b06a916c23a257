"""Provider metadata: registers the three bcdv connection types with Airflow.

Airflow finds it through the ``apache_airflow_provider`` entry point of the ``bcdv``
distribution (pyproject.toml), so the connection form lists "Business Central (bcdv)",
"Dataverse (bcdv)" and "bcdv state store" with their own fields, and "Test connection"
calls the hooks' ``test_connection``. Nothing here imports Airflow.
"""

from __future__ import annotations

from typing import Any


def _behaviour(b: dict[str, Any]) -> dict[str, Any]:
    return {"hidden-fields": list(b.get("hidden_fields", [])),
            "relabeling": dict(b.get("relabeling", {})),
            "placeholders": dict(b.get("placeholders", {}))}


def get_provider_info() -> dict[str, Any]:
    """The provider info dictionary Airflow's ProvidersManager validates and loads."""
    # Plain data only: importing the hooks here would import Airflow while it loads us.
    from bcdv.airflow import connection_types as hooks

    module = "bcdv.airflow.hooks"
    return {
        "package-name": "bcdv",
        "name": "bcdv",
        "description": "Business Central <-> Dataverse synchronisation: connection types and "
                       "hooks for Business Central, Dataverse and the bcdv state store.",
        "versions": ["0.1.0"],
        "hooks": [{"integration-name": "bcdv", "python-modules": [module]}],
        "connection-types": [
            {"connection-type": "bcdv_business_central", "hook-name": "Business Central (bcdv)",
             "hook-class-name": f"{module}.BusinessCentralHook",
             "conn-fields": hooks.conn_fields(hooks.BC_FIELDS),
             "ui-field-behaviour": _behaviour(hooks.BC_BEHAVIOUR)},
            {"connection-type": "bcdv_dataverse", "hook-name": "Dataverse (bcdv)",
             "hook-class-name": f"{module}.DataverseHook",
             "conn-fields": hooks.conn_fields(hooks.DV_FIELDS),
             "ui-field-behaviour": _behaviour(hooks.DV_BEHAVIOUR)},
            {"connection-type": "bcdv_state", "hook-name": "bcdv state store",
             "hook-class-name": f"{module}.StateStoreHook",
             "conn-fields": hooks.conn_fields(hooks.STATE_FIELDS),
             "ui-field-behaviour": _behaviour(hooks.STATE_BEHAVIOUR)},
        ],
        "notifications": ["bcdv.airflow.notifiers.BcdvAlertNotifier"],
    }
