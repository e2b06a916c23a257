"""The synchronisation engine: extract -> transform/plan -> load -> commit. No Airflow here."""

from bcdv.engine.context import SyncContext
from bcdv.engine.report import PassReport
from bcdv.engine.runner import run_pass, sync_mapping

__all__ = ["PassReport", "SyncContext", "run_pass", "sync_mapping"]
