"""Operators for users' own DAGs: synchronise one mapping, or several in dependency order.

    from bcdv.airflow.operators import BcdvSyncOperator, BcdvFullSyncOperator

Each operator is one task that calls the service layer (:mod:`bcdv.service.runs`) with the
settings of the bcdv connections (through :mod:`bcdv.airflow.hooks`), under the run lock of
every mapping it writes (a dry run takes none). It pushes a small JSON-safe summary (counts
per pass, job ids, the first problem records) as its XCom ``return_value``, and fails *after
everything is committed* when records failed beyond its threshold (watermarks have moved, the
other records arrived; a dry run never fails for failed records). Documented in
docs/operators.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

if TYPE_CHECKING:  # the engine (pandas) loads when a task runs, not when a DAG file parses
    from bcdv.engine.report import PassReport
    from bcdv.mapping.model import TableMapping
    from bcdv.service.results import RunResult

MODES = ("modified", "full", "dry_run")
PROBLEMS_IN_SUMMARY = 10


# -- pure helpers (tested without Airflow running) ------------------------------------------
def threshold_of(value: bool | int | None) -> int | None:
    """The failed-records threshold (per mapping and run) that fails the task, in bcdv's
    convention (:mod:`bcdv.service.outcome`): True = any failure (0), an int N = N or more
    (0 and 1: any), False/None = never."""
    if value is True:
        return 0
    if value is False or value is None:
        return None
    if isinstance(value, int) and value >= 0:
        return value
    raise ValueError(f"fail_on_failed_records must be True, False or a number of records "
                     f"(0 or more), not {value!r}")


def optional_time(value: Any) -> str | None:
    """A rendered ``since``/``until``: None when not given (an empty template renders as
    '' or 'None')."""
    if value is None:
        return None
    text = str(value).strip()
    return None if text in ("", "None") else text


def pass_summary(report: PassReport) -> dict[str, Any]:
    """One pass in the XCom summary: its job, mode and counters (no record values)."""
    return {"mapping": report.mapping, "direction": report.direction, "job_id": report.job_id,
            "mode": report.mode, "dry_run": report.dry_run, "extracted": report.extracted,
            **report.counters(), "ignored": report.ignored, "status": report.status}


def problems(reports: Sequence[PassReport], limit: int = PROBLEMS_IN_SUMMARY
             ) -> list[dict[str, Any]]:
    """The first records that failed or were skipped (ids, name, the API's message)."""
    from bcdv.state.jsonsafe import safe_text

    out = [{"mapping": r.mapping, "direction": r.direction, "source_id": rec.source_id,
            "target_id": rec.target_id, "name": rec.name, "result": rec.result,
            "message": (safe_text(rec.message) or "")[:500]}
           for r in reports for rec in r.records if rec.result in ("failed", "skipped")]
    return out[:limit]


def run_summary(result: RunResult, *, mode: str, dry_run: bool, mappings: Sequence[str],
                window: tuple[str, str] | None = None) -> dict[str, Any]:
    """The operator's XCom: JSON-safe, small, never a secret (ids, counters, messages)."""
    from bcdv.state.jsonsafe import json_safe

    return json_safe({"run_id": result.run_id, "mode": mode, "dry_run": dry_run,
                      "window": {"since": window[0], "until": window[1]} if window else None,
                      "mappings": list(mappings), "failed": result.failed,
                      "failed_by_mapping": failed_by_mapping(result),
                      "passes": [pass_summary(r) for r in result.reports],
                      "problems": problems(result.reports)})


def failed_by_mapping(result: RunResult) -> dict[str, int]:
    """Failed records per mapping over every pass of the run."""
    out: dict[str, int] = {}
    for report in result.reports:
        out[report.mapping] = out.get(report.mapping, 0) + report.failed
    return out


def failure_message(summary: dict[str, Any], verdict_message: str) -> str:
    """Why the task failed, once the run was committed: the verdict and the first records."""
    first = "; ".join(f"{p['mapping']} {p['source_id']} ({p['name']}): {p['message']}"
                      for p in summary["problems"][:3] if p["result"] == "failed")
    return f"{verdict_message} First: {first}" if first else verdict_message


def run_lock_owner(context: Any) -> str:
    """The run id the operator's run locks and job-log rows carry: unique per task of a DAG
    run (two DAGs scheduled at the same time share an Airflow run id, and the lock is
    re-entrant by run id), ending with the Airflow run id."""
    ti = context["ti"]
    index = getattr(ti, "map_index", -1)
    task = f"{ti.task_id}[{index}]" if index is not None and index >= 0 else ti.task_id
    return f"{ti.dag_id}.{task}__{context['run_id']}"[:250]


# -- the operators --------------------------------------------------------------------------
class _BcdvRunOperator(BaseOperator):
    """Shared parts: mode, window, lock wait, threshold; the run and its summary."""

    template_fields: Sequence[str] = ("since", "until")
    ui_color = "#dbeafe"

    def __init__(self, *, mode: str = "modified", direction: str | None = None,
                 since: Any = None, until: Any = None, lock_wait: float = 0,
                 fail_on_failed_records: bool | int = True, couple_first: bool = True,
                 dry_run: bool = False, mappings_dir: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; allowed: {', '.join(MODES)}")
        # mode="dry_run" is the dry run of "modified"; dry_run=True previews either mode.
        self.mode = "modified" if mode == "dry_run" else mode
        self.is_dry_run = dry_run or mode == "dry_run"  # BaseOperator.dry_run is a method
        self.direction = direction
        self.since = since
        self.until = until
        self.lock_wait = lock_wait
        self.threshold = threshold_of(fail_on_failed_records)
        self.couple_first = couple_first
        self.mappings_dir = mappings_dir

    def selected(self, mappings: dict[str, TableMapping]) -> list[TableMapping]:
        """The mappings this task synchronises, in order."""
        raise NotImplementedError

    def _mappings(self) -> dict[str, TableMapping]:
        from bcdv.airflow.tasks import mappings_dir
        from bcdv.mapping.loader import load_mappings

        if self.mappings_dir:
            return load_mappings(self.mappings_dir)
        fileloc = getattr(self.dag, "fileloc", None) if self.has_dag() else None
        return load_mappings(mappings_dir(fileloc))

    def _window(self) -> tuple[str, str] | None:
        since, until = optional_time(self.since), optional_time(self.until)
        if (since is None) != (until is None):
            raise ValueError("give both since and until (a backfill window), or neither")
        if since is not None and self.mode == "full":
            raise ValueError("a backfill window (since/until) and mode='full' exclude each other")
        return (since, until) if since is not None and until is not None else None

    def run(self, mappings: dict[str, TableMapping], chosen: list[TableMapping],
            run_id: str) -> RunResult:
        """One call of the service layer on the connections' settings."""
        from bcdv.airflow import hooks
        from bcdv.service import runs

        window = self._window()
        options: dict[str, Any] = {"direction": self.direction, "run_id": run_id,
                                   "lock_wait": self.lock_wait,
                                   "dry_run": self.is_dry_run}
        ctx = hooks.sync_context(mappings)
        try:
            if self.mode == "full":
                return runs.full_sync(ctx, chosen, couple_first=self.couple_first, **options)
            if window is not None:
                return runs.backfill(ctx, chosen, window[0], window[1], **options)
            return runs.sync(ctx, chosen, **options)
        finally:
            ctx.close()

    def execute(self, context: Any) -> dict[str, Any]:
        """Synchronise, log each pass, push the summary; fail after commit over threshold."""
        from airflow.sdk.exceptions import AirflowFailException

        from bcdv.airflow.tasks import log_reports
        from bcdv.service import outcome

        mappings = self._mappings()
        chosen = self.selected(mappings)
        result = self.run(mappings, chosen, run_lock_owner(context))
        log_reports(result.reports)
        summary = run_summary(result, mode=self.mode, dry_run=self.is_dry_run,
                              mappings=[m.name for m in chosen], window=self._window())
        if self.threshold is None:
            return summary
        verdict = outcome.run_verdict(result.reports, self.threshold, self.is_dry_run)
        if not verdict.ok:
            # The summary is still wanted downstream (e.g. by a teardown or an alert).
            context["ti"].xcom_push(key="return_value", value=summary)
            # Not retried: the run is committed, a retry would only run the sync again.
            raise AirflowFailException(failure_message(summary, verdict.message))
        return summary


class BcdvSyncOperator(_BcdvRunOperator):
    """Synchronise one mapping (every direction it has, or ``direction``).

    Args:
        mapping: the mapping's name (e.g. ``CUSTOMER``; any case).
        mode: ``modified`` (the coupled records changed since the watermarks, BC's
            "Synchronize Modified Records"), ``full`` (BC's "Run Full Synch.": match-based
            coupling first unless ``couple_first=False``, new records created) or ``dry_run``
            (the dry run of ``modified``).
        dry_run: plan only, write nothing, take no lock (the summary says what a real run
            would do); with ``mode="full"``, the preview of a full synchronisation.
        direction: ``to_dataverse`` or ``to_business_central``; None: the mapping's passes.
        since, until: templated; both given: re-synchronise the records modified in
            [since, until) (a backfill window, e.g. ``"{{ data_interval_start }}"`` and
            ``"{{ data_interval_end }}"``), the watermarks do not move.
        lock_wait: seconds to wait for the mapping's run lock held by another run (then the
            task fails naming the holder; Airflow's retries apply).
        fail_on_failed_records: True (default): fail after commit when any record failed
            (a new failure; a record failing again with the same error counts as skipped, as
            in BC); an int N: when N or more failed (0: any); False: never.
        mappings_dir: the mapping files (default: ``BCDV_MAPPINGS_DIR``, else
            include/mappings beside the DAGs folder).
    """

    def __init__(self, *, mapping: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mapping = mapping

    def selected(self, mappings: dict[str, TableMapping]) -> list[TableMapping]:
        """The one mapping."""
        from bcdv.service.validate import mapping_of

        return [mapping_of(mappings, self.mapping)]


class BcdvFullSyncOperator(_BcdvRunOperator):
    """Synchronise several mappings (or every one) in dependency order, in one task.

    Args:
        mappings: names (any case); None: every mapping. Run in dependency order whatever
            order they are given in.
        mode: ``full`` (default), ``modified`` or ``dry_run``; the other arguments as
            :class:`BcdvSyncOperator`.
    """

    def __init__(self, *, mappings: Sequence[str] | None = None, mode: str = "full",
                 **kwargs: Any) -> None:
        super().__init__(mode=mode, **kwargs)
        self.mappings = list(mappings) if mappings is not None else None

    def selected(self, mappings: dict[str, TableMapping]) -> list[TableMapping]:
        """The named mappings (or all), dependencies first."""
        from bcdv.service.runs import in_dependency_order
        from bcdv.service.validate import mapping_of

        ordered = in_dependency_order(mappings)
        if self.mappings is None:
            return ordered
        wanted = {mapping_of(mappings, name).name for name in self.mappings}
        return [m for m in ordered if m.name in wanted]

