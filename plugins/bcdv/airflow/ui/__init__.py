"""The bcdv pages in the Airflow UI (a FastAPI app for the API server; see ``app``)."""

from __future__ import annotations

from typing import Any

__all__ = ["fastapi_app", "nav_view"]


def fastapi_app() -> dict[str, Any]:
    """The ``fastapi_apps`` entry of the Airflow plugin."""
    from bcdv.airflow.ui.app import URL_PREFIX, app

    return {"app": app, "url_prefix": URL_PREFIX, "name": "bcdv"}


def nav_view() -> dict[str, Any]:
    """The ``external_views`` entry: a link in the UI's navigation, shown inside Airflow."""
    return {"name": "Dataverse sync", "href": "/bcdv/", "destination": "nav",
            "url_route": "bcdv"}
