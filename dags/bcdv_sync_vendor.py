"""bcdv_sync_vendor: the VENDOR table mapping (include/mappings/vendor.yaml)."""

from bcdv.airflow.dag_factory import mapping_dag

dag = mapping_dag("vendor.yaml", dag_file=__file__)
