"""A sensor for users' own DAGs: wait until a mapping has been synchronised.

    from bcdv.airflow.sensors import BcdvMappingSyncedSensor

It reads bcdv's own job log in the state store (through the hooks' state store URL and the
store's jobs API; never Airflow's database) until a successful, non-dry-run synchronisation
job of the mapping finished after ``since`` in every direction the mapping has. Modes: poke,
reschedule, or ``deferrable=True`` (the wait runs in the triggerer:
:class:`bcdv.airflow.triggers.BcdvMappingSyncedTrigger`). Documented in docs/operators.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator
from airflow.sdk.exceptions import AirflowSensorTimeout

if TYPE_CHECKING:  # the state store (SQLAlchemy) loads when the task runs, not at parse time
    from bcdv.airflow.synced import SyncedCheck


class BcdvMappingSyncedSensor(BaseSensorOperator):
    """Wait for a mapping's next successful synchronisation.

    Args:
        mapping: the mapping's name (any case).
        since: templated; ``"now"`` (default: when this task first started, kept across
            reschedules) or an ISO 8601 date-time such as ``"{{ data_interval_end }}"``. A
            job counts when it finished after it.
        accept_partial: also count a run in which some records failed (job status
            ``partial``); default False: only ``success``.
        mappings_dir: the mapping files (default as the operators).
        deferrable: wait in the triggerer instead of a worker slot.
        poke_interval, timeout, mode (``poke``/``reschedule``), soft_fail: as every sensor.

    Pushes (XCom ``return_value``) the job id of each direction's satisfying job.
    """

    template_fields: Sequence[str] = ("since",)
    ui_color = "#e0f2fe"

    def __init__(self, *, mapping: str, since: Any = "now", accept_partial: bool = False,
                 mappings_dir: str | None = None, deferrable: bool = False,
                 **kwargs: Any) -> None:
        kwargs.setdefault("poke_interval", 60)
        super().__init__(**kwargs)
        self.mapping = mapping
        self.since = since
        self.accept_partial = accept_partial
        self.mappings_dir = mappings_dir
        self.deferrable = deferrable
        self._last: SyncedCheck | None = None

    # -- what to wait for ---------------------------------------------------------------------
    def _directions(self) -> tuple[str, list[str]]:
        from bcdv.airflow.tasks import mappings_dir
        from bcdv.mapping.loader import load_mappings
        from bcdv.service.validate import mapping_of

        if self.mappings_dir:
            found = load_mappings(self.mappings_dir)
        else:
            fileloc = getattr(self.dag, "fileloc", None) if self.has_dag() else None
            found = load_mappings(mappings_dir(fileloc))
        mapping = mapping_of(found, self.mapping)
        return mapping.name, [d.value for d in mapping.passes()]

    def _since(self, context: Any) -> datetime:
        from bcdv.service.validate import when

        text = str(self.since).strip() if self.since is not None else "now"
        if text.lower() in ("now", "", "none"):
            first = context["ti"].get_first_reschedule_date(context) if self.reschedule else None
            start = first or getattr(context["ti"], "start_date", None)
            return when(start or datetime.now(timezone.utc), "since")
        return when(text, "since")

    def _check(self, context: Any) -> SyncedCheck:
        from bcdv.airflow.synced import check_synced

        name, directions = self._directions()
        return check_synced(_store(), name, directions, self._since(context),
                            accept_partial=self.accept_partial)

    # -- sensor ---------------------------------------------------------------------------------
    def poke(self, context: Any) -> Any:
        """True (with the job ids) once every direction has a satisfying job."""
        from airflow.sdk.bases.sensor import PokeReturnValue

        self._last = check = self._check(context)
        self.log.info("%s", check.describe())
        return PokeReturnValue(check.done, xcom_value=check.job_ids if check.done else None)

    def execute(self, context: Any) -> Any:
        """Poke (or defer); a timeout says what was waited for and what was seen."""
        if self.deferrable:
            return self._defer(context)
        try:
            return super().execute(context)
        except AirflowSensorTimeout as exc:
            raise AirflowSensorTimeout(self._timeout_message()) from exc

    def _timeout_message(self) -> str:
        what = self._last.describe() if self._last else f"{self.mapping}: not checked"
        return (f"timed out after {self.timeout:g} s waiting for mapping {self.mapping} to be "
                f"synchronised successfully: {what}. Is its DAG (or the task that syncs it) "
                "paused, failing or locked? See its runs and the bcdv job log.")

    # -- deferrable ----------------------------------------------------------------------------
    def _defer(self, context: Any) -> Any:
        from bcdv.airflow import hooks
        from bcdv.airflow.triggers import BcdvMappingSyncedTrigger

        check = self._check(context)
        self.log.info("%s", check.describe())
        if check.done:
            return check.job_ids
        trigger = BcdvMappingSyncedTrigger(
            state_url=hooks.state_url(), mapping=check.mapping, directions=check.directions,
            since=check.since.isoformat(), accept_partial=self.accept_partial,
            poke_interval=self.poke_interval, timeout=self.timeout)
        self.defer(trigger=trigger, method_name="execute_complete",
                   timeout=timedelta(seconds=self.timeout + 60))

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> Any:
        """Resumed from the trigger: its job ids, or the clear timeout message."""
        event = event or {}
        if event.get("status") == "success":
            return event.get("job_ids")
        raise AirflowSensorTimeout(
            f"timed out after {self.timeout:g} s waiting for mapping {self.mapping} to be "
            f"synchronised successfully: {event.get('message', 'no event')}. Is its DAG (or "
            "the task that syncs it) paused, failing or locked? See its runs and the bcdv job "
            "log.")


def _store() -> Any:
    from bcdv.airflow.tasks import state_store

    return state_store()
