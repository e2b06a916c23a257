"""Paged, filtered reads of the operator lists: couplings, record errors, the job log.

One WHERE clause per list, built here once: a page is its ``COUNT(*)`` and its rows read with
``LIMIT``/``OFFSET`` in SQL, never everything loaded and sliced. ``search_couplings`` (the id
look-up of the CLI and the pages) and the paged coupling list share the same clause.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    case,
    cast,
    false,
    func,
    not_,
    or_,
    select,
)
from sqlalchemy.dialects.postgresql import JSONB

from bcdv.state.db import StoreBase, aware_row, to_db
from bcdv.state.schema import couplings, jobs, record_errors

COUPLING_STATUSES = ("coupled", "failed", "skipped")
"""coupled: last results not a failure; failed: a last result failed, not skipped;
skipped: Skipped (BC's "Synch. Skipped")."""
ERROR_STATUSES = ("open", "resolved", "all")
JOB_STATUSES = ("success", "partial", "failed", "running", "not_configured")
NO_CODE = "(none)"
"""The ``code`` filter value of errors the API gave no code for."""


@dataclass(frozen=True)
class ListFilter:
    """What a list is narrowed to; empty values do not filter.

    ``since`` is inclusive and ``until`` exclusive (a day filter "to 2026-03-01" passes the
    start of 2026-03-02). ``names`` are the (system, field) paths of the record's name in a
    coupling's synced values (the mapping's name fields), searched besides the ids.
    """

    mapping: str | None = None
    status: str = ""
    code: str = ""
    search: str = ""
    since: datetime | None = None
    until: datetime | None = None
    names: tuple[tuple[str, str], ...] = ()


def _escaped(text: str) -> str:
    return text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _starts(column: Any, text: str) -> ColumnElement[bool]:
    return func.lower(column).like(f"{_escaped(text)}%", escape="\\")


def _contains(column: Any, text: str) -> ColumnElement[bool]:
    return func.lower(column).like(f"%{_escaped(text)}%", escape="\\")


def _window(column: Any, flt: ListFilter) -> list[ColumnElement[bool]]:
    out = []
    if flt.since is not None:
        out.append(column >= to_db(flt.since))
    if flt.until is not None:
        out.append(column < to_db(flt.until))
    return out


def synced_name(dialect: str, system: str, field: str) -> ColumnElement[Any]:
    """The record name a coupling's synced JSON holds for ``system`` (SQL, per dialect)."""
    if dialect == "postgresql":
        return cast(couplings.c.synced, JSONB)[(system, field)].astext
    path = f'$."{system}"."{field}"'
    # json_extract refuses malformed text with an error; a NULL is simply no name.
    return case((func.json_valid(couplings.c.synced) == 1,
                 func.json_extract(couplings.c.synced, path)), else_=None)


def coupling_where(flt: ListFilter, dialect: str) -> list[ColumnElement[bool]]:
    """The WHERE clause of a mapping's confirmed couplings under ``flt``."""
    cond: list[ColumnElement[bool]] = [couplings.c.mapping == (flt.mapping or ""),
                                       couplings.c.pending.is_(False)]
    text = flt.search.strip()
    if text:
        found = [_starts(couplings.c.bc_id, text), _starts(couplings.c.dv_id, text)]
        found += [_contains(synced_name(dialect, system, field), text)
                  for system, field in flt.names]
        cond.append(or_(*found))
    failed = or_(couplings.c.to_dv_result == "failure", couplings.c.to_bc_result == "failure")
    skipped = couplings.c.skipped.is_(True)
    by_status = {"coupled": and_(not_(skipped), not_(failed)),
                 "failed": and_(not_(skipped), failed), "skipped": skipped}
    if flt.status:
        cond.append(by_status.get(flt.status, false()))
    return cond + _window(couplings.c.updated_at, flt)


def error_where(flt: ListFilter) -> list[ColumnElement[bool]]:
    """The WHERE clause of record errors under ``flt`` (status ``open`` by default)."""
    cond: list[ColumnElement[bool]] = []
    if flt.mapping:
        cond.append(record_errors.c.mapping == flt.mapping)
    status = flt.status or "open"
    if status == "open":
        cond.append(record_errors.c.resolved.is_(False))
    elif status == "resolved":
        cond.append(record_errors.c.resolved.is_(True))
    elif status != "all":
        cond.append(false())
    if flt.code == NO_CODE:
        cond.append(record_errors.c.code.is_(None))
    elif flt.code:
        cond.append(record_errors.c.code == flt.code)
    text = flt.search.strip()
    if text:
        cond.append(or_(*(_starts(c, text) for c in (
            record_errors.c.source_id, record_errors.c.bc_id, record_errors.c.dv_id)),
            _contains(record_errors.c.name, text), _contains(record_errors.c.message, text)))
    return cond + _window(record_errors.c.last_seen, flt)


def job_where(flt: ListFilter) -> list[ColumnElement[bool]]:
    """The WHERE clause of job-log rows under ``flt``."""
    cond: list[ColumnElement[bool]] = []
    if flt.mapping:
        cond.append(jobs.c.mapping == flt.mapping)
    if flt.status:
        cond.append(jobs.c.status == flt.status)
    text = flt.search.strip()
    if text:
        cond.append(or_(_starts(jobs.c.id, text), _contains(jobs.c.run_id, text),
                        _contains(jobs.c.message, text)))
    return cond + _window(jobs.c.started_at, flt)


class PageQueries(StoreBase):
    """The paged lists of the state store (read only)."""

    def _page(self, query: Select[Any], where: Sequence[ColumnElement[bool]], *,
              limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
        counted = select(func.count()).select_from(query.where(*where).order_by(None)
                                                   .subquery())
        with self.engine.connect() as conn:
            total = int(conn.execute(counted).scalar_one())
            rows = conn.execute(query.where(*where).limit(limit).offset(offset)
                                ).mappings().all()
        return [aware_row(r) for r in rows], total

    def coupling_page(self, flt: ListFilter, *, limit: int = 50,
                      offset: int = 0) -> tuple[list[dict[str, Any]], int]:
        """A mapping's couplings under ``flt``, most recently changed first, and how many
        there are in all."""
        query = select(couplings).order_by(couplings.c.updated_at.desc(),
                                           couplings.c.id.desc())
        return self._page(query, coupling_where(flt, self.engine.dialect.name),
                          limit=limit, offset=offset)

    def error_page(self, flt: ListFilter, *, limit: int = 50,
                   offset: int = 0) -> tuple[list[dict[str, Any]], int]:
        """Record errors under ``flt``, last seen first, and how many there are in all."""
        query = select(record_errors).order_by(record_errors.c.last_seen.desc(),
                                               record_errors.c.id.desc())
        return self._page(query, error_where(flt), limit=limit, offset=offset)

    def error_ids(self, flt: ListFilter) -> list[int]:
        """The numbers of every record error under ``flt``, oldest first."""
        query = select(record_errors.c.id).where(*error_where(flt)).order_by(
            record_errors.c.id)
        with self.engine.connect() as conn:
            return [int(i) for i in conn.execute(query).scalars().all()]

    def error_codes(self, mapping: str | None = None) -> list[tuple[str, int]]:
        """The API codes of open errors (``(none)`` for errors without one) and how many
        errors have each, most frequent first."""
        code = func.coalesce(record_errors.c.code, NO_CODE)
        query = (select(code.label("code"), func.count().label("n"))
                 .where(record_errors.c.resolved.is_(False)).group_by(code)
                 .order_by(func.count().desc(), code))
        if mapping:
            query = query.where(record_errors.c.mapping == mapping)
        with self.engine.connect() as conn:
            return [(str(r.code), int(r.n)) for r in conn.execute(query).all()]

    def job_page(self, flt: ListFilter, *, limit: int = 50,
                 offset: int = 0) -> tuple[list[dict[str, Any]], int]:
        """Job-log rows under ``flt``, newest first, and how many there are in all."""
        query = select(jobs).order_by(jobs.c.started_at.desc(), jobs.c.id.desc())
        return self._page(query, job_where(flt), limit=limit, offset=offset)


__all__ = ["COUPLING_STATUSES", "ERROR_STATUSES", "JOB_STATUSES", "NO_CODE",
           "ListFilter", "PageQueries", "coupling_where", "error_where", "job_where",
           "synced_name"]
