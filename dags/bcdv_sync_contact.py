"""bcdv_sync_contact: the CONTACT table mapping (include/mappings/contact.yaml)."""

from bcdv.airflow.dag_factory import mapping_dag

dag = mapping_dag("contact.yaml", dag_file=__file__)
