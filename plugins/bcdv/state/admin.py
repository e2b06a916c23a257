"""What the operator surfaces (UI, CLI) read and do: skipped records, Restore / Restore All,
coupling look-up and search, counts, job-log cleanup."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    and_,
    delete,
    func,
    or_,
    select,
    union,
    update,
)

from bcdv.state.db import StoreBase, aware_row, to_db, utcnow
from bcdv.state.pages import ListFilter, coupling_where
from bcdv.state.schema import couplings, job_records, jobs, record_errors


def _by_id(bc_id: str | None, dv_id: str | None) -> ColumnElement[bool]:
    if bool(bc_id) == bool(dv_id):
        raise ValueError("give exactly one of bc_id and dv_id")
    return couplings.c.bc_id == bc_id if bc_id else couplings.c.dv_id == dv_id


class OperatorViews(StoreBase):
    """The operator part of the state store."""

    def coupling(self, mapping: str, bc_id: str | None = None,
                 dv_id: str | None = None) -> dict[str, Any] | None:
        """The coupling (or pending create intent) of one record by either id, or None."""
        with self.engine.connect() as conn:
            row = conn.execute(select(couplings).where(
                couplings.c.mapping == mapping, _by_id(bc_id, dv_id))).mappings().first()
        return aware_row(row) if row is not None else None

    def search_couplings(self, mapping: str, text: str,
                         limit: int = 50) -> list[dict[str, Any]]:
        """Couplings whose Business Central or Dataverse id starts with ``text`` (any case),
        most recently changed first (the paged list's clause: ``bcdv.state.pages``)."""
        where = coupling_where(ListFilter(mapping=mapping, search=text),
                               self.engine.dialect.name)
        query = select(couplings).where(*where).order_by(
            couplings.c.updated_at.desc(), couplings.c.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [aware_row(r) for r in conn.execute(query).mappings().all()]

    def _open_messages(self, conn: Connection, mapping: str,
                       rows: list[dict[str, Any]]) -> dict[str, str]:
        ids = sorted({i for r in rows for i in (r["bc_id"], r["dv_id"]) if i})
        out: dict[str, str] = {}
        for start in range(0, len(ids), 500):
            found = conn.execute(select(record_errors.c.source_id, record_errors.c.message)
                                 .where(record_errors.c.mapping == mapping,
                                        record_errors.c.resolved.is_(False),
                                        record_errors.c.source_id.in_(ids[start:start + 500]))
                                 .order_by(record_errors.c.last_seen)).all()
            out.update({r.source_id: r.message for r in found})
        return out

    def restore(self, mapping: str, bc_id: str | None = None, dv_id: str | None = None,
                all: bool = False) -> int:
        """Restore skipped couplings (BC: Restore, or Restore All with ``all=True``).

        Skipped is cleared; the failure result stays, so the next run retries the record
        (the retry set is "failed and not skipped"); the record's open errors are resolved,
        so its failure streak starts over: it is skipped again only after failing twice more
        with the same error. Returns the number of couplings restored.
        """
        scope: ColumnElement[bool]
        if all:
            scope = couplings.c.skipped.is_(True)
        else:
            scope = and_(_by_id(bc_id, dv_id), couplings.c.skipped.is_(True))
        with self._write() as conn:
            rows = conn.execute(select(couplings.c.id, couplings.c.bc_id, couplings.c.dv_id)
                                .where(couplings.c.mapping == mapping, scope)
                                .with_for_update()).all()
            if not rows:
                return 0
            ids = [r.id for r in rows]
            records = sorted({i for r in rows for i in (r.bc_id, r.dv_id) if i})
            for start in range(0, len(ids), 500):
                conn.execute(update(couplings).where(couplings.c.id.in_(ids[start:start + 500]))
                             .values(skipped=False, updated_at=to_db(utcnow())))
            for start in range(0, len(records), 500):
                conn.execute(update(record_errors).where(
                    record_errors.c.mapping == mapping, record_errors.c.resolved.is_(False),
                    record_errors.c.source_id.in_(records[start:start + 500]),
                ).values(resolved=True))
        return len(rows)

    def counts(self, mapping: str) -> dict[str, int]:
        """Numbers for a mapping's overview: ``couplings`` (confirmed), ``skipped``,
        ``failed`` (last result a failure, not skipped), ``pending`` (create intents) and
        ``errors`` (open record errors)."""
        mine = couplings.c.mapping == mapping
        confirmed = couplings.c.pending.is_(False)
        failed = or_(couplings.c.to_dv_result == "failure", couplings.c.to_bc_result == "failure")

        def count(*cond: Any) -> Any:
            return func.count().filter(and_(*cond))

        with self.engine.connect() as conn:
            row = conn.execute(select(
                count(confirmed).label("couplings"),
                count(confirmed, couplings.c.skipped.is_(True)).label("skipped"),
                count(confirmed, couplings.c.skipped.is_(False), failed).label("failed"),
                count(couplings.c.pending.is_(True)).label("pending"),
            ).where(mine)).one()
            errors = conn.execute(select(func.count()).select_from(record_errors).where(
                record_errors.c.mapping == mapping,
                record_errors.c.resolved.is_(False))).scalar_one()
        return {"couplings": int(row.couplings or 0), "skipped": int(row.skipped or 0),
                "failed": int(row.failed or 0), "pending": int(row.pending or 0),
                "errors": int(errors)}

    def delete_jobs_older_than(self, days: float) -> int:
        """Delete job-log entries started more than ``days`` ago, with their error rows
        and their per-record outcomes.

        A job referenced by a Skipped coupling is kept (BC: such an entry cannot be deleted,
        it explains why the record is skipped). Returns the number of jobs deleted.
        """
        cutoff = to_db(utcnow() - timedelta(days=days))
        skipped = couplings.c.skipped.is_(True)
        kept = union(
            select(couplings.c.to_dv_job.label("job")).where(
                skipped, couplings.c.to_dv_job.is_not(None)),
            select(couplings.c.to_bc_job.label("job")).where(
                skipped, couplings.c.to_bc_job.is_not(None)),
        ).subquery()
        with self._write() as conn:
            old = [r.id for r in conn.execute(select(jobs.c.id).where(
                jobs.c.started_at < cutoff, jobs.c.id.not_in(select(kept.c.job)))).all()]
            for start in range(0, len(old), 500):
                part = old[start:start + 500]
                conn.execute(delete(record_errors).where(record_errors.c.job_id.in_(part)))
                conn.execute(delete(job_records).where(job_records.c.job_id.in_(part)))
                conn.execute(delete(jobs).where(jobs.c.id.in_(part)))
        return len(old)
