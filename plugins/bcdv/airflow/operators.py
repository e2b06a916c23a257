"""Operators for users' own DAGs: synchronise one mapping, or several in dependency order.

    from bcdv.airflow.operators import BcdvSyncOperator, BcdvFullSyncOperator

Each operator is one task that calls the service layer (:mod:`bcdv.service.runs`) with the
settings of the bcdv connections (through :mod:`bcdv.airflow.hooks`), under the run lock of
every mapping it writes (a dry run takes none). It pushes a small JSON-safe summary (counts
per pass, job ids, the first problem records) as its XCom ``return_value``, and fails *after
everything is committed* when records failed beyond its threshold (watermarks have moved, the
other records arrived; a dry run never fails for failed records). Documented in
docs/operators.md.

The stage operators (:class:`BcdvCoupleOperator`, :class:`BcdvExtractOperator`,
:class:`BcdvTransformOperator`, :class:`BcdvSplitOperator`, :class:`BcdvLoadOperator`,
:class:`BcdvCommitOperator`, :class:`BcdvCheckOperator`, :class:`BcdvLockOperator`,
:class:`BcdvUnlockOperator`) are the same run split into its stages, one task each, with the
staged files passed on by reference (their directory): bcdv's shipped DAGs are built from them
(:mod:`bcdv.airflow.dag_factory`), so a load retries without extracting again and a full
sync's loads run as parallel mapped tasks. ``mode``, ``dry_run``, ``lock_wait`` and the stage
inputs are templated, so a DAG's trigger form can drive them (``"{{ params.dry_run }}"``).
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


def flag(value: Any) -> bool:
    """A boolean argument, as given or as a template renders it (``"True"``, ``"false"``,
    ``""``)."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("true", "1", "yes", "on"):
            return True
        if text in ("false", "0", "no", "off", "", "none"):
            return False
        raise ValueError(f"not a boolean: {value!r}")
    return bool(value)


def templated(value: Any) -> bool:
    """Whether an argument is still a Jinja template (checked when rendered, at run time)."""
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def mode_of(value: Any, dry_run: Any = False) -> tuple[str, bool]:
    """``(mode, dry_run)`` of a (rendered) mode: ``dry_run`` is the dry run of
    ``modified``; ``dry_run=True`` previews either mode."""
    mode = str(value).strip()
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; allowed: {', '.join(MODES)}")
    return ("modified" if mode == "dry_run" else mode), flag(dry_run) or mode == "dry_run"


def names_of(value: Any) -> list[str]:
    """Mapping names, as a list or as a template renders one (``"['A', 'B']"``, ``"A,B"``)."""
    if value is None:
        return []
    if isinstance(value, str):
        import ast

        text = value.strip()
        if text.startswith("["):
            return [str(v) for v in ast.literal_eval(text)]
        return [v.strip() for v in text.split(",") if v.strip()]
    return [str(v) for v in value]


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
class _KeepsTaskError:
    """Keep a failing task's error (masked) for the run's alert (:mod:`bcdv.airflow.notifiers`),
    then re-raise; a skip is not an error."""

    def _guarded(self, context: Any, fn: Any) -> Any:
        try:
            return fn()
        except Exception as exc:
            from airflow.sdk.exceptions import AirflowSkipException

            from bcdv.airflow.notifiers import record_task_error

            ti = context.get("ti") if hasattr(context, "get") else None
            if not isinstance(exc, AirflowSkipException) and ti is not None and \
                    context.get("run_id"):
                record_task_error(str(getattr(ti, "dag_id", "")), str(context["run_id"]),
                                  str(getattr(ti, "task_id", "")), exc)
            raise


class _BcdvRunOperator(_KeepsTaskError, BaseOperator):
    """Shared parts: mode, window, lock wait, threshold; the run and its summary."""

    template_fields: Sequence[str] = ("since", "until", "mode", "dry_run_arg", "lock_wait")
    ui_color = "#dbeafe"

    def __init__(self, *, mode: str = "modified", direction: str | None = None,
                 since: Any = None, until: Any = None, lock_wait: Any = 0,
                 fail_on_failed_records: bool | int = True, couple_first: bool = True,
                 dry_run: Any = False, mappings_dir: str | None = None,
                 skip_when_locked: bool = False, per_task_run_id: bool = True,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not templated(mode):
            mode_of(mode)  # an unknown mode fails when the DAG file parses
        # mode="dry_run" is the dry run of "modified"; dry_run=True previews either mode.
        self.mode = mode
        self.dry_run_arg = dry_run  # BaseOperator.dry_run is a method
        self.direction = direction
        self.since = since
        self.until = until
        self.lock_wait = lock_wait
        self.threshold = threshold_of(fail_on_failed_records)
        self.couple_first = couple_first
        self.mappings_dir = mappings_dir
        self.skip_when_locked = skip_when_locked
        self.per_task_run_id = per_task_run_id

    @property
    def run_mode(self) -> str:
        """The (rendered) mode: ``modified`` or ``full``."""
        return mode_of(self.mode, self.dry_run_arg)[0]

    @property
    def is_dry_run(self) -> bool:
        """Whether this run (as rendered) is a dry run."""
        return mode_of(self.mode, self.dry_run_arg)[1]

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
        if since is not None and self.run_mode == "full":
            raise ValueError("a backfill window (since/until) and mode='full' exclude each other")
        return (since, until) if since is not None and until is not None else None

    def run(self, mappings: dict[str, TableMapping], chosen: list[TableMapping],
            run_id: str) -> RunResult:
        """One call of the service layer on the connections' settings."""
        from bcdv.airflow import hooks
        from bcdv.service import runs

        window = self._window()
        options: dict[str, Any] = {"direction": self.direction, "run_id": run_id,
                                   "lock_wait": float(self.lock_wait or 0),
                                   "dry_run": self.is_dry_run}
        ctx = hooks.sync_context(mappings)
        try:
            if self.run_mode == "full":
                return runs.full_sync(ctx, chosen, couple_first=self.couple_first, **options)
            if window is not None:
                return runs.backfill(ctx, chosen, window[0], window[1], **options)
            return runs.sync(ctx, chosen, **options)
        finally:
            ctx.close()

    def execute(self, context: Any) -> dict[str, Any]:
        """Synchronise, log each pass, push the summary; fail after commit over threshold."""
        return self._guarded(context, lambda: self._execute(context))  # type: ignore[no-any-return]

    def _execute(self, context: Any) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

        from bcdv.airflow.tasks import log_reports
        from bcdv.errors import SafetyStopError
        from bcdv.service import outcome

        mappings = self._mappings()
        chosen = self.selected(mappings)
        owner = run_lock_owner(context) if self.per_task_run_id else str(context["run_id"])
        try:
            result = self.run(mappings, chosen, owner)
        except SafetyStopError as exc:
            if not self.skip_when_locked:
                raise
            raise AirflowSkipException(f"skipped: {exc}") from None
        log_reports(result.reports)
        summary = run_summary(result, mode=self.run_mode, dry_run=self.is_dry_run,
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
        skip_when_locked: skip the task (instead of failing) when another run still holds
            the run lock after ``lock_wait``.
        per_task_run_id: the run id of the lock and the job log: ``<dag>.<task>__<run id>``
            (default), or False: the Airflow run id itself (as the shipped DAGs' tasks, whose
            alert and pages find the run's jobs by it).

    ``mode``, ``dry_run`` and ``lock_wait`` are templated too.
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



# -- the stage operators: one run split into tasks (the shipped DAGs) ---------------------------
class _BcdvStageOperator(_KeepsTaskError, BaseOperator):
    """One stage of a mapping's run. Shared parts: the mapping's file, the run's params."""

    ui_color = "#e0e7ff"

    def __init__(self, *, mapping: str, mappings_dir: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mapping = mapping
        self.mappings_dir = mappings_dir

    def mapping_file(self) -> str:
        """The mapping's YAML file."""
        return str(self.entry().path)

    def entry(self) -> Any:
        """The mapping's catalog entry (read leniently: a broken other mapping does not
        matter)."""
        from bcdv.airflow import catalog
        from bcdv.airflow.tasks import mappings_dir

        if self.mappings_dir:
            directory = self.mappings_dir
        else:
            fileloc = getattr(self.dag, "fileloc", None) if self.has_dag() else None
            directory = str(mappings_dir(fileloc))
        entries = {name.upper(): entry for name, entry in catalog.scan(directory).items()}
        entry = entries.get(self.mapping.upper())
        if entry is None:
            from airflow.sdk.exceptions import AirflowFailException

            raise AirflowFailException(f"unknown mapping {self.mapping!r} in {directory}; "
                                       f"known: {', '.join(sorted(entries))}")
        return entry

    def execute(self, context: Any) -> Any:
        """The stage, its error kept for the run's alert."""
        return self._guarded(context, lambda: self.stage(context))

    def stage(self, context: Any) -> Any:
        """What this stage does."""
        raise NotImplementedError


class BcdvCoupleOperator(_BcdvStageOperator):
    """A run's first stage: take the mapping's run lock (``lock=True``), then, in mode
    ``full``, match-based coupling (unless ``couple_first`` is false).

    Args:
        mode, dry_run, couple_first, lock_wait: templated, as :class:`BcdvSyncOperator`.
        lock: take the run lock (owner: the Airflow run id; released by
            :class:`BcdvCommitOperator` or the DAG's failure callback). A run that finds it
            held skips when scheduled or backfilled and fails when triggered by hand.
        enabled: templated; false: do nothing (a mapping not selected in the trigger form).
    """

    template_fields: Sequence[str] = ("mode", "dry_run_arg", "couple_first", "lock_wait",
                                      "enabled")

    def __init__(self, *, mode: Any = "modified", dry_run: Any = False,
                 couple_first: Any = True, lock: bool = True, lock_wait: Any = 0,
                 enabled: Any = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not templated(mode):
            mode_of(mode)
        self.mode, self.dry_run_arg, self.couple_first = mode, dry_run, couple_first
        self.lock, self.lock_wait, self.enabled = lock, lock_wait, enabled

    def stage(self, context: Any) -> dict[str, Any]:
        """Lock, then couple."""
        from bcdv.airflow import tasks

        entry = self.entry()
        mapping_file = str(entry.path)
        mode, dry_run = mode_of(self.mode, self.dry_run_arg)
        if self.lock:
            tasks.acquire_lock(entry.name, context["run_id"],
                               context["dag_run"].run_type,
                               wait_seconds=float(self.lock_wait or 0))
        if not flag(self.enabled):
            return {"selected": False}
        return tasks.couple(mapping_file, {"full": mode == "full", "dry_run": dry_run,
                                           "couple_first": flag(self.couple_first)},
                            context["run_id"])


class BcdvExtractOperator(_BcdvStageOperator):
    """Extract one pass into the staging directory; returns the directory (XCom).

    Args:
        direction: ``to_dataverse`` or ``to_business_central``.
        mode, dry_run: templated, as :class:`BcdvSyncOperator`.
        since, until: templated; both given: the backfill window [since, until). Neither: a
            backfill run's data interval, else the watermark.
        batch_size: templated; records per page read (None: the API's default).
        enabled: templated; false: extract nothing and return "" (the later stages skip).
    """

    template_fields: Sequence[str] = ("mode", "dry_run_arg", "since", "until", "batch_size",
                                      "enabled")

    def __init__(self, *, direction: str, mode: Any = "modified", dry_run: Any = False,
                 since: Any = None, until: Any = None, batch_size: Any = None,
                 enabled: Any = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not templated(mode):
            mode_of(mode)
        self.direction, self.mode, self.dry_run_arg = direction, mode, dry_run
        self.since, self.until, self.batch_size, self.enabled = since, until, batch_size, enabled

    def stage(self, context: Any) -> str:
        """The pass's staging directory."""
        from bcdv.airflow import tasks

        if not flag(self.enabled):
            return ""
        mapping_file = self.mapping_file()
        mode, dry_run = mode_of(self.mode, self.dry_run_arg)
        window = tasks.backfill_window(
            {"resync_from": optional_time(self.since), "resync_until": optional_time(self.until)},
            context["dag_run"].run_type,
            (context.get("data_interval_start"), context.get("data_interval_end")))
        size = optional_time(self.batch_size)
        return tasks.extract_pass(mapping_file, self.direction,
                                  {"full": mode == "full", "dry_run": dry_run,
                                   "batch_size": int(size) if size else None},
                                  context["run_id"], window)


class BcdvTransformOperator(_BcdvStageOperator):
    """Transform and plan one pass. ``staged``: templated, the extract's directory (its
    ``.output``); "" (nothing extracted) passes through."""

    template_fields: Sequence[str] = ("staged",)

    def __init__(self, *, staged: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.staged = staged

    def stage(self, context: Any) -> str:
        """The same directory, planned."""
        from bcdv.airflow import tasks

        return tasks.plan_pass(self.mapping_file(), self.staged) if self.staged else ""


class BcdvLoadOperator(_BcdvStageOperator):
    """Apply one pass's plan (or one chunk of it). Safe to retry: done actions are not
    redone. ``staged``: templated, the planned directory (or a chunk's, mapped)."""

    template_fields: Sequence[str] = ("staged",)

    def __init__(self, *, staged: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.staged = staged

    def stage(self, context: Any) -> str:
        """The same directory, applied."""
        from bcdv.airflow import tasks

        if not self.staged:
            return ""
        return tasks.load_pass(self.mapping_file(), self.staged, context["ti"].try_number)


class BcdvSplitOperator(_KeepsTaskError, BaseOperator):
    """Split a pass's plan into chunks of ``chunk_size`` planned records (templated), one
    directory each, for :class:`BcdvLoadOperator` mapped over them (parallel loads)."""

    template_fields: Sequence[str] = ("staged", "chunk_size")
    ui_color = "#e0e7ff"

    def __init__(self, *, staged: Any, chunk_size: Any = 5000, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.staged, self.chunk_size = staged, chunk_size

    def execute(self, context: Any) -> list[str]:
        """The chunk directories ([""] when nothing was extracted)."""
        from bcdv.airflow import operations

        return self._guarded(context, lambda: operations.split_plan(  # type: ignore[no-any-return]
            self.staged, int(self.chunk_size or 5000)))


class BcdvCommitOperator(_BcdvStageOperator):
    """Commit every pass of the mapping (job log, watermarks); returns each pass's counters.

    Args:
        staged: templated; the passes' directories, in order.
        chunked: the loads ran as chunks: gather their outcomes first.
        release_lock: release the mapping's run lock (a multi-mapping run releases its
            locks in :class:`BcdvUnlockOperator` instead).
    """

    template_fields: Sequence[str] = ("staged",)

    def __init__(self, *, staged: Any, chunked: bool = False, release_lock: bool = True,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.staged, self.chunked, self.release_lock = staged, chunked, release_lock

    def stage(self, context: Any) -> list[dict[str, Any]]:
        """The passes' small reports (XCom)."""
        from bcdv.airflow import operations, tasks

        directories = [d for d in (self.staged or []) if d]
        if self.chunked:
            if not directories:
                return []
            for d in directories:
                operations.merge_chunks(d)
        return tasks.commit_passes(self.mapping_file(), directories, context["run_id"],
                                   release=self.release_lock)


class BcdvCheckOperator(_KeepsTaskError, BaseOperator):
    """A run's last task: fails (not retried) when records failed beyond a mapping's
    threshold, after every commit; a dry run never fails it.

    Args:
        results: templated; the commits' outputs (lists of pass reports) or the run
            operators' summaries; None (a skipped task) is ignored.
        thresholds: per mapping; None = the ``bcdv_failed_records_threshold`` setting
            (default 0: any new failure).
        dry_run: templated.
    """

    template_fields: Sequence[str] = ("results", "dry_run_arg")
    ui_color = "#fee2e2"

    def __init__(self, *, results: Any, thresholds: dict[str, int | None],
                 dry_run: Any = False, **kwargs: Any) -> None:
        kwargs.setdefault("retries", 0)
        kwargs.setdefault("doc_md", "Fails when records failed in this run beyond the "
                          "mapping's threshold (see `bcdv errors list -m NAME` or the bcdv "
                          "Errors page).")
        super().__init__(**kwargs)
        self.results, self.thresholds, self.dry_run_arg = results, thresholds, dry_run

    def execute(self, context: Any) -> dict[str, Any]:
        """The verdict (raises when the run's records failed)."""
        from bcdv.airflow import tasks

        results = [r["passes"] if isinstance(r, dict) and "passes" in r else r
                   for r in (self.results or [])]
        return self._guarded(context, lambda: tasks.check_outcome(  # type: ignore[no-any-return]
            results, self.thresholds, flag(self.dry_run_arg)))


class BcdvLockOperator(_KeepsTaskError, BaseOperator):
    """Take the run lock of several mappings at once (all or none; owner: the Airflow run
    id); fails naming the holder. ``mappings``: templated, the names (a subset of
    ``known``); returns the names locked."""

    template_fields: Sequence[str] = ("mappings", "lock_wait")
    ui_color = "#fef3c7"

    def __init__(self, *, mappings: Any, known: Sequence[str], lock_wait: Any = 0,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mappings, self.known, self.lock_wait = mappings, list(known), lock_wait

    def execute(self, context: Any) -> list[str]:
        """The locked mappings, in the order of ``known``."""
        return self._guarded(context, lambda: self._lock(context))  # type: ignore[no-any-return]

    def _lock(self, context: Any) -> list[str]:
        from airflow.sdk.exceptions import AirflowFailException

        from bcdv.airflow import operations

        chosen = names_of(self.mappings)
        unknown = sorted(set(chosen) - set(self.known))
        if unknown:
            raise AirflowFailException(f"unknown mapping(s) {', '.join(unknown)}; known: "
                                       f"{', '.join(self.known)}")
        return operations.lock_all([n for n in self.known if n in chosen], context["run_id"],
                                   float(self.lock_wait or 0))


class BcdvUnlockOperator(BaseOperator):
    """Release the run locks this run holds (a teardown: runs whatever happened).
    ``locked``: templated, the :class:`BcdvLockOperator`'s output."""

    template_fields: Sequence[str] = ("locked",)
    ui_color = "#fef3c7"

    def __init__(self, *, locked: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.locked = locked

    def execute(self, context: Any) -> list[str]:
        """The mappings released."""
        from bcdv.airflow import operations

        return operations.release_all(names_of(self.locked), context["run_id"])
