"""bcdv.airflow."""
