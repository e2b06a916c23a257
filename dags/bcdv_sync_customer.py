"""bcdv_sync_customer: the CUSTOMER table mapping (include/mappings/customer.yaml)."""

from bcdv.airflow.dag_factory import mapping_dag

dag = mapping_dag("customer.yaml", dag_file=__file__)
