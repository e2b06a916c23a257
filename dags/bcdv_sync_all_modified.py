"""bcdv_sync_all_modified: every mapping's modified records, dependencies first."""

from bcdv.airflow.operation_dags import sync_all_modified_dag

dag = sync_all_modified_dag(dag_file=__file__)
