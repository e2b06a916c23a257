"""The bcdv pages in the Airflow UI (a FastAPI app for the API server; see ``app``)."""

from __future__ import annotations

from typing import Any

__all__ = ["NAV_LABEL", "fastapi_app", "nav_view"]


def fastapi_app() -> dict[str, Any]:
    """The ``fastapi_apps`` entry of the Airflow plugin."""
    from bcdv.airflow.ui.app import URL_PREFIX, app

    return {"app": app, "url_prefix": URL_PREFIX, "name": "bcdv"}


NAV_LABEL = "BC ⇄ DV"
"""The navigation button's label: Airflow 3 shows a plugin's single nav link as a 56 px
button whose label is cut with an ellipsis (a longer name read "Datavers..."); the page
itself says Business Central ⇄ Dataverse in full."""


def nav_view() -> dict[str, Any]:
    """The ``external_views`` entry: a link in the UI's navigation, shown inside Airflow."""
    return {"name": NAV_LABEL, "href": "/bcdv/", "destination": "nav", "url_route": "bcdv",
            "icon": "/bcdv/static/icon.svg"}
