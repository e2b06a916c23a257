"""bcdv_full_sync: full synchronisation of the selected mappings, dependency wave by wave."""

from bcdv.airflow.operation_dags import full_sync_dag

dag = full_sync_dag(dag_file=__file__)
