"""bcdv_sync_salespeople: the SALESPEOPLE table mapping (include/mappings/salespeople.yaml)."""

from bcdv.airflow.dag_factory import mapping_dag

dag = mapping_dag("salespeople.yaml", dag_file=__file__)
