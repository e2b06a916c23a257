"""Command groups of the ``bcdv`` CLI (``bcdv.cli`` registers them); each calls core functions.

Shared read-side queries of the operator surfaces (CLI and the Airflow UI pages) live in
:mod:`bcdv.commands.views`.
"""
