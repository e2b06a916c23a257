"""A user's own pipeline with bcdv's operators (docs/operators.md).

Every day: wait until the customers have been synchronised (by bcdv's own bcdv_sync_customer
DAG, or any other run), then synchronise the contacts, whose company lookup needs the
customers' couplings, then use the run's summary downstream.

Copy it into your DAGs folder; the mappings are read from ``BCDV_MAPPINGS_DIR`` (else
include/mappings beside the DAGs folder) and the systems from the bcdv connections.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from airflow.sdk import dag, task  # noqa: TID251 (a user's DAG file, not bcdv's core)

from bcdv.airflow.operators import BcdvSyncOperator
from bcdv.airflow.sensors import BcdvMappingSyncedSensor


@dag(dag_id="example_bcdv_pipeline", schedule="@daily",
     start_date=datetime(2026, 1, 1, tzinfo=timezone.utc), catchup=False,
     tags=["bcdv", "example"])
def example_bcdv_pipeline() -> None:
    """Customers synced -> contacts synced -> a report of what changed."""
    customers_synced = BcdvMappingSyncedSensor(
        task_id="wait_for_customers",
        mapping="CUSTOMER",
        # A CUSTOMER run (both directions) that finished after this run became due.
        since="{{ data_interval_end }}",
        mode="reschedule",  # frees the worker slot between checks
        poke_interval=300,
        timeout=6 * 3600,
    )
    sync_contacts = BcdvSyncOperator(
        task_id="sync_contacts",
        mapping="CONTACT",
        mode="modified",
        lock_wait=600,  # bcdv_sync_contact may be running: wait for its run lock
        fail_on_failed_records=True,  # fail (after commit) when any contact failed
    )

    @task
    def contacts_report(summary: dict[str, Any]) -> dict[str, int]:
        """What the contact sync did, per direction (the operator's XCom summary)."""
        totals = {f"{p['direction']}.{counter}": p[counter] for p in summary["passes"]
                  for counter in ("inserted", "modified", "failed")}
        print(f"contact sync {summary['run_id']}: {totals}")
        return totals

    customers_synced >> sync_contacts
    contacts_report(sync_contacts.output)


example_bcdv_pipeline()
