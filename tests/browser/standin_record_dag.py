"""Stand-in ``bcdv_sync_record`` for the browser tests, used only while the project's DAGs
folder has none: same params (mapping, side, record_id, action, other_id), one task that
calls the same core functions (bcdv.engine.records) with the Airflow run id."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from airflow.sdk import DAG, Param, get_current_context, task


@task(task_id="sync_record")
def sync_record_task() -> dict[str, Any]:
    from bcdv.airflow.connections import endpoints_from_connections, staging_dir, state_url
    from bcdv.airflow.tasks import mappings_dir
    from bcdv.engine import SyncContext
    from bcdv.engine.records import restore_record, sync_record, uncouple_record
    from bcdv.mapping import load_mappings

    context = get_current_context()
    params = dict(context["params"])
    mappings = load_mappings(mappings_dir())
    mapping = mappings[str(params["mapping"]).upper()]
    ctx = SyncContext.create(endpoints_from_connections(), state_url(), staging_dir(), mappings)
    try:
        ids = {"bc_id" if params["side"] == "business_central" else "dv_id": params["record_id"]}
        if params["action"] == "uncouple":
            return {"uncoupled": uncouple_record(ctx, mapping, **ids)}
        if params["action"] == "restore":
            return {"restored": restore_record(ctx, mapping, **ids)}
        report = sync_record(ctx, mapping, system=params["side"], record_id=params["record_id"],
                             run_id=context["run_id"])
        if report.failed:
            raise RuntimeError(f"{report.failed} record(s) failed: "
                               f"{report.records[0].message if report.records else ''}")
        return report.to_dict()
    finally:
        ctx.close()


with DAG(
    dag_id="bcdv_sync_record",
    schedule=None,
    start_date=datetime(2025, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    tags=["bcdv"],
    params={
        "mapping": Param("CUSTOMER", type="string"),
        "side": Param("business_central", enum=["business_central", "dataverse"]),
        "record_id": Param("", type="string"),
        "action": Param("sync", enum=["sync", "couple", "uncouple", "restore"]),
        "other_id": Param(None, type=["null", "string"]),
    },
):
    sync_record_task()
