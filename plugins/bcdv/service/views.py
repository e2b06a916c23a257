"""Read-side queries shared by the CLI and the Airflow UI pages (BC's list pages).

They read the state store (through its public methods where one exists, else its tables
read-only) and the mapping model; nothing here writes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import partial
from typing import Any

from sqlalchemy import func, or_, select

from bcdv import fastjson
from bcdv.clients.odata import and_filters, quote
from bcdv.engine.context import SyncContext
from bcdv.mapping.model import TableMapping
from bcdv.state.pages import ListFilter
from bcdv.state.schema import job_records, jobs, record_errors
from bcdv.state.store import StateStore

PASS_DIRECTIONS = ("to_dataverse", "to_business_central")


def _aware(row: Any) -> dict[str, Any]:
    from bcdv.state.db import aware_row

    return aware_row(row)


def record_name(mapping: TableMapping, row: dict[str, Any]) -> str:
    """The record's name as last synchronised (from the coupling's synced values), or ''."""
    raw = row.get("synced")
    if not raw:
        return ""
    try:
        synced = fastjson.loads(raw)
    except (TypeError, ValueError):
        return ""
    for system, side in (("business_central", mapping.business_central),
                         ("dataverse", mapping.dataverse)):
        value = (synced.get(system) or {}).get(side.name_field or "")
        if value not in (None, ""):
            return str(value)
    return ""


def coupling_row(mapping: TableMapping, row: dict[str, Any]) -> dict[str, Any]:
    """A coupling for display: ids, name, baselines, last results, skipped."""
    return {"mapping": mapping.name, "bc_id": row["bc_id"], "dv_id": row["dv_id"],
            "name": record_name(mapping, row), "skipped": bool(row["skipped"]),
            "pending": bool(row["pending"]), "to_dv_result": row["to_dv_result"] or "",
            "to_bc_result": row["to_bc_result"] or "", "to_dv_job": row["to_dv_job"],
            "to_bc_job": row["to_bc_job"], "bc_modified": row["bc_modified"],
            "dv_modified": row["dv_modified"], "updated_at": row["updated_at"]}


def name_paths(mapping: TableMapping) -> tuple[tuple[str, str], ...]:
    """Where a coupling's synced values hold the record's name, per system."""
    return tuple((system, side.name_field) for system, side in (
        ("business_central", mapping.business_central), ("dataverse", mapping.dataverse))
        if side.name_field)


def list_couplings(store: StateStore, mapping: TableMapping, *, search: str = "",
                   skipped: bool = False, limit: int = 100) -> list[dict[str, Any]]:
    """Couplings of a mapping, most recently changed first; ``search`` matches the start of
    either id or any part of the record's name (any case)."""
    flt = coupling_filter(mapping, search=search, status="skipped" if skipped else "")
    rows, _ = store.coupling_page(flt, limit=limit)
    return [coupling_row(mapping, r) for r in rows]


def coupling_filter(mapping: TableMapping, *, search: str = "", status: str = "",
                    since: datetime | None = None,
                    until: datetime | None = None) -> ListFilter:
    """The filter of a mapping's coupled-records list (status: coupled, failed, skipped)."""
    return ListFilter(mapping=mapping.name, search=search, status=status, since=since,
                      until=until, names=name_paths(mapping))


def find_coupling(store: StateStore, mapping: TableMapping,
                  record_id: str) -> dict[str, Any] | None:
    """The coupling of a record given either its Business Central or its Dataverse id."""
    row = (store.coupling(mapping.name, bc_id=record_id)
           or store.coupling(mapping.name, dv_id=record_id))
    return coupling_row(mapping, row) if row else None


def record_errors_of(store: StateStore, mapping: str, ids: list[str],
                     include_resolved: bool = False) -> list[dict[str, Any]]:
    """Errors of the records with these ids (either side), newest first."""
    ids = [i for i in ids if i]
    if not ids:
        return []
    query = select(record_errors).where(
        record_errors.c.mapping == mapping,
        or_(record_errors.c.source_id.in_(ids), record_errors.c.bc_id.in_(ids),
            record_errors.c.dv_id.in_(ids))).order_by(record_errors.c.last_seen.desc())
    if not include_resolved:
        query = query.where(record_errors.c.resolved.is_(False))
    with store.engine.connect() as conn:
        return [_aware(r) for r in conn.execute(query).mappings().all()]


def error(store: StateStore, error_id: int) -> dict[str, Any] | None:
    """One record-error row by its number."""
    with store.engine.connect() as conn:
        row = conn.execute(select(record_errors).where(
            record_errors.c.id == error_id)).mappings().first()
    return _aware(row) if row else None


def source_system(direction: str) -> str:
    """The system a pass direction reads from."""
    return "business_central" if direction == "to_dataverse" else "dataverse"


def jobs_of_run(store: StateStore, run_id: str) -> list[dict[str, Any]]:
    """The job-log rows (passes) written by one run (an Airflow run id), oldest first."""
    with store.engine.connect() as conn:
        rows = conn.execute(select(jobs).where(jobs.c.run_id == run_id)
                            .order_by(jobs.c.started_at)).mappings().all()
    return [_aware(r) for r in rows]


def errors_of_job(store: StateStore, job_id: str, *,
                  limit: int | None = None) -> list[dict[str, Any]]:
    """Record errors last seen in a job (the first ``limit`` of them), newest first."""
    query = select(record_errors).where(record_errors.c.job_id == job_id).order_by(
        record_errors.c.last_seen.desc(), record_errors.c.id.desc())
    if limit is not None:
        query = query.limit(limit)
    with store.engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
    return [_aware(r) for r in rows]


def error_counts_of_jobs(store: StateStore, job_ids: list[str]) -> dict[str, int]:
    """How many record errors each of these jobs saw last (jobs without one are left out)."""
    if not job_ids:
        return {}
    with store.engine.connect() as conn:
        rows = conn.execute(select(record_errors.c.job_id, func.count())
                            .where(record_errors.c.job_id.in_(job_ids))
                            .group_by(record_errors.c.job_id)).all()
    return {str(r[0]): int(r[1]) for r in rows}


def jobs_by_id(store: StateStore, job_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Some jobs' ``run_id``, ``mapping``, ``mode`` and ``direction``, by job id, in one
    query per 500 ids (the errors page links each error to the run that last saw it)."""
    ids = sorted({j for j in job_ids if j})
    out: dict[str, dict[str, Any]] = {}
    cols = (jobs.c.id, jobs.c.run_id, jobs.c.mapping, jobs.c.mode, jobs.c.direction)
    with store.engine.connect() as conn:
        for start in range(0, len(ids), 500):
            rows = conn.execute(select(*cols).where(
                jobs.c.id.in_(ids[start:start + 500]))).mappings().all()
            out.update({str(r["id"]): dict(r) for r in rows})
    return out


# -- which Airflow DAG run wrote a job ------------------------------------------------------
RECORD_DAG = "bcdv_sync_record"
FULL_SYNC_DAG = "bcdv_full_sync"
ALL_MODIFIED_DAG = "bcdv_sync_all_modified"
# Airflow's run ids start with the run type (DagRunType); the scheduled and backfill runs
# of bcdv are the mapping DAGs' (the operation DAGs have no schedule).
SCHEDULED_PREFIXES = ("scheduled__", "backfill__")


def task_run_splits(run_id: str, dag_id: str | None = None) -> list[tuple[str, str]]:
    """The ways a job's run id of an operator in a user's DAG,
    ``<dag_id>.<task_id>__<Airflow run id>`` (``bcdv.airflow.operators.run_lock_owner``),
    can be read as ``(dag_id, Airflow run id)``, most likely first. DAG and task ids may hold
    dots and underscores, so a run id can have several readings; with ``dag_id`` given,
    only its own. Empty for a run id of another shape (a bcdv DAG's, the CLI's)."""
    out: list[tuple[str, str]] = []
    head = run_id.split("__", 1)[0]
    if "." not in head or "__" not in run_id:
        return out
    dags = [dag_id] if dag_id else [head[:i] for i, c in enumerate(head) if c == "."]
    for dag in dags:
        if not dag or not run_id.startswith(dag + "."):
            continue
        rest = run_id[len(dag) + 1:]
        at = rest.find("__", 1)
        while at > 0:
            if rest[at + 2:]:
                out.append((dag, rest[at + 2:]))
            at = rest.find("__", at + 1)
    return out


def dag_of_job(job: dict[str, Any], mapping_dags: dict[str, str]) -> str | None:
    """The DAG whose run wrote a job, when the job alone tells (``mapping_dags``: mapping
    name -> its DAG id): a record sync's, a scheduled run's (a mapping DAG's), an operator's
    in a user's DAG (the only reading of its run id). None when it does not (a manual run:
    the mapping's DAG, the full sync or the all-modified DAG; the run page asks Airflow)."""
    run_id = str(job.get("run_id") or "")
    if not run_id:
        return None
    if job.get("mode") == "record":
        return RECORD_DAG
    if run_id.startswith(SCHEDULED_PREFIXES):
        return mapping_dags.get(str(job.get("mapping")))
    readings = {dag for dag, _ in task_run_splits(run_id)}
    return readings.pop() if len(readings) == 1 else None


def jobs_of_dag_run(store: StateStore, dag_id: str | None, airflow_run_id: str, *,
                    mapping_dags: dict[str, str] | None = None,
                    also: str | None = None) -> list[dict[str, Any]]:
    """The jobs (passes) of one Airflow DAG run, oldest first: those whose run id is the
    Airflow run id (bcdv's own DAGs) and those of the DAG's operators
    (``<dag_id>.<task_id>__<run id>``). Two mapping DAGs scheduled at the same time share an
    Airflow run id: for a mapping DAG (``mapping_dags``: mapping name -> DAG id) only its
    own mapping's jobs are kept. ``also``: a job run id to include as it is (the page's)."""
    conds = [jobs.c.run_id == airflow_run_id]
    if also and also != airflow_run_id:
        conds.append(jobs.c.run_id == also)
    if dag_id:
        conds.append(jobs.c.run_id.startswith(dag_id + ".", autoescape=True)
                     & jobs.c.run_id.endswith("__" + airflow_run_id, autoescape=True))
    with store.engine.connect() as conn:
        rows = [_aware(r) for r in conn.execute(select(jobs).where(or_(*conds)).order_by(
            jobs.c.started_at, jobs.c.id)).mappings().all()]
    own = {m for m, d in (mapping_dags or {}).items() if d == dag_id}
    if own:
        rows = [r for r in rows if r["run_id"] != airflow_run_id or r["mapping"] in own]
    return rows


def overview(store: StateStore, mapping: TableMapping) -> dict[str, Any]:
    """One row of the Integration Table Mappings page: settings, last run, counts,
    watermarks."""
    last = store.jobs(mapping.name, limit=1)
    return {
        "name": mapping.name, "business_central": mapping.business_central.entity_set,
        "dataverse": mapping.dataverse.entity_set, "direction": mapping.direction.value,
        "business_central_filter": mapping.business_central.filter or "",
        "dataverse_filter": mapping.dataverse.filter or "", "schedule": mapping.schedule,
        "depends_on": list(mapping.depends_on), "dag_id": mapping.dag_id,
        "last_run": last[0] if last else None, "counts": store.counts(mapping.name),
        "watermarks": {d: store.get_watermark(mapping.name, d) for d in PASS_DIRECTIONS},
        "fields": len(mapping.fields),
    }


def _job_records_where(job_id: str, action: str | None, failed: bool) -> list[Any]:
    conds = [job_records.c.job_id == job_id]
    if action:
        conds.append(job_records.c.action == action)
    if failed:  # planned to fail, or refused by the API when written
        conds.append(or_(job_records.c.action == "fail", job_records.c.result == "failed"))
    return conds


def records_of_job(store: StateStore, job_id: str, *, action: str | None = None,
                   failed: bool = False, limit: int | None = None,
                   offset: int = 0) -> list[dict[str, Any]]:
    """What a job did (or, dry, would do) to each record, in plan order: ``action``,
    ``result``, ``name``, ``bc_id`` and ``dv_id``, ``message`` and, for an update, its
    field-level diff ``changes`` (``{field: [old, new]}``). Records a pass left unchanged
    or ignored are only counted on the job row. ``action`` filters (insert, update, ...),
    ``failed`` keeps the records that failed (planned ``fail`` or a write the API refused);
    ``limit`` and ``offset`` page in SQL (plan order)."""
    query = select(job_records).where(*_job_records_where(job_id, action, failed)).order_by(
        job_records.c.id)
    if limit is not None:
        query = query.limit(limit)
    if offset:
        query = query.offset(offset)
    with store.engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(query).mappings().all()]
    for row in rows:
        try:
            row["changes"] = fastjson.loads(row["changes"]) if row["changes"] else {}
        except ValueError:
            row["changes"] = {}
        from_bc = source_system(row["direction"]) == "business_central"
        row["bc_id"] = row["source_id"] if from_bc else row["target_id"]
        row["dv_id"] = row["target_id"] if from_bc else row["source_id"]
        row["conflict"] = bool(row["conflict"])
    return rows


def count_records_of_job(store: StateStore, job_id: str, *, action: str | None = None,
                         failed: bool = False) -> int:
    """How many records a job lists (of one ``action``; only the failed ones), in SQL."""
    query = select(func.count()).select_from(job_records).where(
        *_job_records_where(job_id, action, failed))
    with store.engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def record_actions_of_job(store: StateStore, job_id: str) -> dict[str, int]:
    """How many records a job lists per action (insert, update, fail, skip...), in SQL."""
    with store.engine.connect() as conn:
        rows = conn.execute(select(job_records.c.action, func.count())
                            .where(job_records.c.job_id == job_id)
                            .group_by(job_records.c.action)
                            .order_by(job_records.c.action)).all()
    return {str(r[0]): int(r[1]) for r in rows}


# -- paged lists (the pages' couplings, errors and log) ---------------------------------------
PAGE_SIZES = (25, 50, 100, 200)


@dataclass(frozen=True)
class Page:
    """One page of a list: its rows, the number of rows in all, which page of how many."""

    rows: list[dict[str, Any]]
    total: int
    number: int
    size: int

    @property
    def pages(self) -> int:
        """How many pages the list has (at least one, possibly empty)."""
        return max(1, -(-self.total // self.size))

    @property
    def first(self) -> int:
        """The position (from 1) of the page's first row; 0 when the list is empty."""
        return (self.number - 1) * self.size + 1 if self.rows else 0

    @property
    def last(self) -> int:
        """The position of the page's last row."""
        return (self.number - 1) * self.size + len(self.rows)


def page_size(value: int | str | None, default: int = 50) -> int:
    """A page size from a query parameter: one of PAGE_SIZES, else ``default``."""
    try:
        size = int(value or default)
    except (TypeError, ValueError):
        return default
    return size if size in PAGE_SIZES else default


def _paged(read: Callable[..., tuple[list[dict[str, Any]], int]], number: int,
           size: int) -> tuple[list[dict[str, Any]], int, int]:
    """Read page ``number``; a number past the end reads the last page (one more query)."""
    number = max(1, number)
    rows, total = read(limit=size, offset=(number - 1) * size)
    last = max(1, -(-total // size))
    if number > last:
        number = last
        rows, total = read(limit=size, offset=(number - 1) * size)
    return rows, total, number


def coupling_page(store: StateStore, mapping: TableMapping, flt: ListFilter, *,
                  number: int = 1, size: int = 50) -> Page:
    """A page of a mapping's coupled records (display rows, see :func:`coupling_row`)."""
    rows, total, number = _paged(partial(store.coupling_page, flt), number, size)
    return Page([coupling_row(mapping, r) for r in rows], total, number, size)


def error_page(store: StateStore, flt: ListFilter, *, number: int = 1,
               size: int = 50) -> Page:
    """A page of record errors (``status``: open, resolved or all; ``code``: the API's)."""
    rows, total, number = _paged(partial(store.error_page, flt), number, size)
    return Page(rows, total, number, size)


def record_page(store: StateStore, job_id: str, *, action: str | None = None,
                failed: bool = False, number: int = 1, size: int = 50) -> Page:
    """A page of a job's per-record outcomes (of one ``action``; only the failed ones),
    LIMIT/OFFSET and COUNT in SQL (see :func:`records_of_job`)."""
    def read(limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
        return (records_of_job(store, job_id, action=action, failed=failed, limit=limit,
                               offset=offset),
                count_records_of_job(store, job_id, action=action, failed=failed))

    rows, total, number = _paged(read, number, size)
    return Page(rows, total, number, size)


def job_page(store: StateStore, flt: ListFilter, *, number: int = 1, size: int = 50) -> Page:
    """A page of the job log (``status``: success, partial, failed, running...)."""
    rows, total, number = _paged(partial(store.job_page, flt), number, size)
    return Page(rows, total, number, size)


def day_window(since: str | None, until: str | None) -> tuple[datetime | None,
                                                                datetime | None]:
    """From/to days (``YYYY-MM-DD``, UTC, both inclusive) as a half-open datetime window;
    raises ValueError naming the value that is not a day."""
    def day(text: str | None, name: str) -> datetime | None:
        if not text or not text.strip():
            return None
        try:
            return datetime.strptime(text.strip(), "%Y-%m-%d").replace(tzinfo=timezone.utc)
        except ValueError:
            raise ValueError(f"{name} must be a day as YYYY-MM-DD, not {text!r}") from None

    start, end = day(since, "from"), day(until, "to")
    return start, end + timedelta(days=1) if end is not None else None


# -- records of either side found by name (the page that couples a chosen pair) ---------------
SEARCH_LIMIT = 20


def search_records(ctx: SyncContext, mapping: TableMapping, system: str, text: str, *,
                   limit: int = SEARCH_LIMIT) -> list[dict[str, Any]]:
    """Up to ``limit`` records of one side whose name contains ``text`` (one page of the
    API, ``$filter=contains(<name field>,'text')``; case-sensitive in Business Central, not
    in Dataverse), each with ``id``, ``name`` and the id it is coupled to (``coupled``)."""
    side = mapping.business_central if system == "business_central" else mapping.dataverse
    text = text.strip()
    if not text or not side.name_field:
        return []
    criteria = and_filters(side.filter, f"contains({side.name_field},{quote(text)})")
    select_ = [side.key, side.name_field]
    if system == "business_central":
        pages = ctx.business_central.client.iter_pages(side.entity_set, filter=criteria,
                                                       select=select_, page_size=limit)
    else:
        pages = ctx.dataverse.client.iter_pages(side.entity_set, filter=criteria,
                                                select=select_, page_size=limit)
    rows = next(iter(pages), [])[:limit]
    column = "bc_id" if system == "business_central" else "dv_id"
    out = []
    for row in rows:
        record_id = str(row.get(side.key) or "").lower()
        coupling = ctx.state.coupling(mapping.name, **{column: record_id})
        other = "dv_id" if column == "bc_id" else "bc_id"
        out.append({"id": record_id, "name": str(row.get(side.name_field) or ""),
                    "coupled": (coupling or {}).get(other) if coupling and not
                    coupling["pending"] else None})
    return out


def get_record(ctx: SyncContext, mapping: TableMapping, system: str,
               record_id: str) -> dict[str, Any] | None:
    """One record of a side by id as ``{id, name}``, or None when it does not exist."""
    if system == "business_central":
        side, row = mapping.business_central, ctx.business_central.client.get(
            mapping.business_central.entity_set, record_id)
    else:
        side, row = mapping.dataverse, ctx.dataverse.client.get(
            mapping.dataverse.entity_set, record_id)
    if row is None:
        return None
    return {"id": str(row.get(side.key) or record_id).lower(),
            "name": str(row.get(side.name_field or "") or "")}
