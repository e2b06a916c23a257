"""bcdv_sync_record: synchronise, couple, uncouple or restore one record."""

from bcdv.airflow.operation_dags import sync_record_dag

dag = sync_record_dag(dag_file=__file__)
