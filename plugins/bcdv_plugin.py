"""The Airflow plugin of bcdv: the operator pages (FastAPI app at /bcdv) and a nav link.

Airflow imports this file from plugins/ (plugins/.airflowignore hides the bcdv package).
"""

from __future__ import annotations

from typing import Any, ClassVar

from airflow.plugins_manager import AirflowPlugin

from bcdv.airflow.ui import fastapi_app, nav_view


class BcdvPlugin(AirflowPlugin):
    """Business Central ⇄ Dataverse: mappings, coupled records, errors, log."""

    name = "bcdv"
    fastapi_apps: ClassVar[list[dict[str, Any]]] = [fastapi_app()]
    external_views: ClassVar[list[dict[str, Any]]] = [nav_view()]
