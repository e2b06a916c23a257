"""bcdv_sync_currency: the CURRENCY table mapping (include/mappings/currency.yaml)."""

from bcdv.airflow.dag_factory import mapping_dag

dag = mapping_dag("currency.yaml", dag_file=__file__)
