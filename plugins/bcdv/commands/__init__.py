"""Command groups of the ``bcdv`` CLI (``bcdv.cli`` registers them); each calls the service
layer (:mod:`bcdv.service`), the same functions the DAGs and the UI call.

Shared read-side queries of the operator surfaces (CLI and the Airflow UI pages) live in
:mod:`bcdv.service.views`.
"""
