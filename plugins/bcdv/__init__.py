"""bcdv: Business Central <-> Dataverse synchronisation (pure core; no Airflow imports)."""

__version__ = "0.1.0"
