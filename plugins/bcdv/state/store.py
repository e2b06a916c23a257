"""The state store: couplings, watermarks, the job log and record errors.

A SQLite file by default (``sqlite:///path/state.db``), PostgreSQL in production
(``postgresql+psycopg2://...``; ``postgresql://`` and ``postgres://`` are accepted). All
timestamps are stored as naive UTC and returned as aware UTC, microseconds kept. Run locks
per mapping live in ``bcdv.state.locks``, the operator views in ``bcdv.state.admin``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
from sqlalchemy import and_, bindparam, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from bcdv import fastjson
from bcdv.state.admin import OperatorViews
from bcdv.state.db import aware_row, execute_many, from_db, to_db, upsert_insert, utcnow
from bcdv.state.errors import error_identity
from bcdv.state.jsonsafe import safe_text
from bcdv.state.locks import LockHolder, MappingLocks
from bcdv.state.pages import PageQueries
from bcdv.state.schema import (
    couplings,
    job_records,
    jobs,
    record_errors,
    service_facts,
    watermarks,
)

INTENT_ATTEMPTS = 5
"""Distinct payloads a pending create's intent keeps (the lost one may be any of them)."""


def intent_doc(existing: Any, sent: dict[str, Any], source: dict[str, Any] | None,
               moment: datetime) -> str:
    """A pending create's ``synced``: the payload sent, the source record's baseline when it
    was sent (values, modified-on, hash), when it was first sent, and the earlier distinct
    attempts (a resend keeps the first time: the lost create may be the first one, made
    from values the source has changed since). ``existing``: the coupling row, if any.

    The last attempt is ``sent`` and ``source`` themselves; ``earlier`` holds the ones
    before it (up to ``INTENT_ATTEMPTS`` in all: :func:`intent_attempts`), so a create's
    payload and source are stored once, not twice (a full sync writes one per record)."""
    before = intent_of(existing.synced if existing is not None and existing.pending
                       else None)
    earlier = [a for a in intent_attempts(before) if a.get("sent") != sent]
    return fastjson.dumps({"intent": {"sent": sent, "source": source,
                                      "earlier": earlier[-(INTENT_ATTEMPTS - 1):],
                                      "since": before.get("since") or moment.isoformat()}})


def intent_attempts(intent: dict[str, Any]) -> list[dict[str, Any]]:
    """The attempts of a pending create's intent, oldest first, each ``{"sent", "source"}``:
    its ``earlier`` ones and the last (``sent``, ``source``); an intent stored before
    ``earlier`` existed lists every attempt in ``attempts``. [] when none was sent."""
    if "attempts" in intent:
        return list(intent.get("attempts") or [])
    if not intent.get("sent"):
        return []
    return [*(intent.get("earlier") or []),
            {"sent": intent["sent"], "source": intent.get("source")}]


def _synced_doc(synced: Any) -> dict[str, Any]:
    """A coupling's ``synced`` JSON as a dict ({} when empty or not an object)."""
    if not isinstance(synced, str) or not synced:
        return {}
    try:
        doc = fastjson.loads(synced)
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def intent_of(synced: Any) -> dict[str, Any]:
    """The intent a pending coupling recorded (``sent`` payload, first ``since``), or {}."""
    intent = _synced_doc(synced).get("intent")
    return intent if isinstance(intent, dict) else {}


__all__ = ["COUNTERS", "LockHolder", "Stamp", "StateStore", "default_state_url", "from_db",
           "intent_attempts", "intent_of",
           "to_db", "utcnow"]

COUNTERS = ("inserted", "modified", "deleted", "unchanged", "skipped", "failed",
            "conflicts", "coupled", "uncoupled")
COUPLING_COLUMNS = [c.name for c in couplings.columns]
DATETIME_COLUMNS = ("bc_modified", "dv_modified", "created_at", "updated_at")
T = TypeVar("T")


@dataclass(frozen=True)
class Stamp:
    """A successful sync of one coupled pair, as recorded after the write."""

    bc_id: str
    dv_id: str
    bc_modified: datetime | None
    dv_modified: datetime | None
    bc_hash: str | None
    dv_hash: str | None
    synced: str | None = None  # JSON: {"business_central": {...}, "dataverse": {...}}


def _retry_on_conflict(action: Callable[[], T], attempts: int = 3) -> T:
    """Run a read-then-insert transaction again when a concurrent writer inserted the same
    key first (PostgreSQL row locks cannot lock a row that does not exist yet)."""
    for attempt in range(attempts):
        try:
            return action()
        except IntegrityError:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


class StateStore(MappingLocks, OperatorViews, PageQueries):
    """Persistent sync state for all mappings.

    Args:
        url: SQLAlchemy URL; the schema is migrated to the newest revision on first use.
    """

    # -- watermarks -------------------------------------------------------------------
    def get_watermark(self, mapping: str, direction: str) -> datetime | None:
        """The watermark of a mapping's pass, or None if it never ran."""
        with self.engine.connect() as conn:
            value = conn.execute(
                select(watermarks.c.value).where(
                    watermarks.c.mapping == mapping, watermarks.c.direction == direction)
            ).scalar_one_or_none()
        return from_db(value)

    def advance_watermark(self, mapping: str, direction: str, value: datetime | None) -> None:
        """Move a watermark forward to ``value`` (never backwards; None is a no-op)."""
        if value is None:
            return
        now, new = to_db(utcnow()), to_db(value)
        with self._write() as conn:
            conn.execute(upsert_insert(conn, watermarks).values(
                mapping=mapping, direction=direction, value=None, updated_at=now,
            ).on_conflict_do_nothing(index_elements=["mapping", "direction"]))
            # One conditional UPDATE: atomic against a concurrent advance on both databases.
            conn.execute(update(watermarks).where(
                watermarks.c.mapping == mapping, watermarks.c.direction == direction,
                or_(watermarks.c.value.is_(None), watermarks.c.value < new),
            ).values(value=new, updated_at=now))

    # -- what the engine learned about a service ---------------------------------------
    def op_seconds(self, service: str) -> float | None:
        """How long one ``$batch`` write operation of ``service`` took in the last run that
        measured it (None if no run has)."""
        with self.engine.connect() as conn:
            value = conn.execute(select(service_facts.c.op_seconds).where(
                service_facts.c.service == service)).scalar_one_or_none()
        return float(value) if value is not None and value > 0 else None

    def keep_op_seconds(self, service: str, seconds: float) -> None:
        """Remember what one ``$batch`` write operation of ``service`` took."""
        if not seconds > 0:
            return
        now = to_db(utcnow())
        with self._write() as conn:
            conn.execute(upsert_insert(conn, service_facts).values(
                service=service, op_seconds=seconds, updated_at=now,
            ).on_conflict_do_update(index_elements=["service"],
                                    set_={"op_seconds": seconds, "updated_at": now}))

    def reset_watermarks(self, mapping: str) -> None:
        """Clear a mapping's watermarks (BC: Synchronize All / full sync)."""
        with self._write() as conn:
            conn.execute(update(watermarks).where(watermarks.c.mapping == mapping)
                         .values(value=None, updated_at=to_db(utcnow())))

    # -- couplings --------------------------------------------------------------------
    def couplings(
        self, mapping: str, *, bc_ids: Sequence[str] | None = None,
        dv_ids: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """Couplings of a mapping as a DataFrame (optionally only for some ids); the
        datetime columns are aware UTC."""
        query = select(couplings).where(couplings.c.mapping == mapping)
        rows: list[Any] = []
        with self.engine.connect() as conn:
            if bc_ids is None and dv_ids is None:
                rows += conn.execute(query).all()
            for col, ids in ((couplings.c.bc_id, bc_ids), (couplings.c.dv_id, dv_ids)):
                for part in _parts(list(ids or [])):
                    rows += conn.execute(query.where(col.in_(part))).all()
        # One frame from plain tuples (a frame per 500 ids and a concat cost more).
        frame = pd.DataFrame([tuple(r) for r in rows], columns=COUPLING_COLUMNS)
        frame = frame.drop_duplicates(subset=["id"]).reset_index(drop=True)
        for name in DATETIME_COLUMNS:
            frame[name] = pd.to_datetime(frame[name], utc=True)
        return frame

    def coupling_marks(self, mapping: str, column: str,
                       ids: Sequence[str]) -> list[dict[str, Any]]:
        """The pair, pending flag and each direction's result and job of the couplings whose
        ``column`` (``bc_id`` or ``dv_id``) is one of ``ids``, as plain rows: what a load
        asks of every batch it writes, without a DataFrame's cost."""
        c = couplings.c
        col = c.bc_id if column == "bc_id" else c.dv_id
        out: list[dict[str, Any]] = []
        with self.engine.connect() as conn:
            for part in _parts(ids):
                out += [dict(r) for r in conn.execute(select(
                    c.bc_id, c.dv_id, c.pending, c.to_dv_result, c.to_bc_result, c.to_dv_job,
                    c.to_bc_job).where(c.mapping == mapping, col.in_(part))).mappings()]
        return out

    def record_update_intents(self, mapping: str, column: str,
                              intents: dict[str, dict[str, Any]]) -> None:
        """Before an update batch is sent: keep, on each coupling (``column``, ``bc_id`` or
        ``dv_id``, is one of the keys), what the update sends and the source record it was
        made from. A success stamps the coupling and drops it; if the answer is lost or the
        run dies first, ``settle_updates`` (engine/updates.py) finds whether the update
        landed, so an update of ours is never taken for a person's change."""
        if not intents:
            return
        c = couplings.c
        col = c.bc_id if column == "bc_id" else c.dv_id

        def run() -> None:
            with self._write() as conn:
                rows = []
                for part in _parts(list(intents)):
                    for r in conn.execute(select(c.id, col.label("key")).where(
                            c.mapping == mapping, col.in_(part),
                            c.pending.is_(False)).with_for_update()):
                        rows.append({"row_id": r.id,
                                     "update_intent": fastjson.dumps(intents[str(r.key)])})
                _update_by_id(conn, rows)
        _retry_on_conflict(run)

    def update_intents(self, mapping: str) -> list[dict[str, Any]]:
        """Couplings that hold an update intent (few: only after a lost answer or a crash;
        found through a partial index), as rows with ``bc_id``, ``dv_id``, the baselines,
        the parsed ``intent`` and the parsed ``synced`` values."""
        c = couplings.c
        with self.engine.connect() as conn:
            rows = conn.execute(select(
                c.id, c.bc_id, c.dv_id, c.bc_modified, c.dv_modified, c.bc_hash, c.dv_hash,
                c.synced, c.update_intent).where(
                c.mapping == mapping, c.update_intent.is_not(None),
                c.pending.is_(False))).mappings().all()
        out = []
        for r in rows:
            row = dict(r)
            intent = _synced_doc(row.pop("update_intent"))
            out.append({**row, "intent": intent, "synced": _synced_doc(r["synced"])})
        return out

    def drop_update_intents(self, mapping: str, row_ids: list[int]) -> None:
        """Forget the update intents of these couplings (the updates did not land, or were
        overwritten since: the baselines stand as they are)."""
        def run() -> None:
            with self._write() as conn:
                for part in _parts(row_ids):
                    conn.execute(update(couplings).where(
                        couplings.c.mapping == mapping, couplings.c.id.in_(part)).values(
                        update_intent=None))
        if row_ids:
            _retry_on_conflict(run)

    def pending_bc_creates(self, mapping: str) -> list[str]:
        """Dataverse ids of unconfirmed Business Central creates (intents without a BC id)."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(couplings.c.dv_id).where(
                couplings.c.mapping == mapping, couplings.c.pending.is_(True),
                couplings.c.bc_id.is_(None), couplings.c.dv_id.is_not(None))).all()
        return [str(r.dv_id) for r in rows]

    def coupling_count(self, mapping: str) -> int:
        """Number of couplings (pending intents excluded)."""
        with self.engine.connect() as conn:
            return int(conn.execute(
                select(func.count()).select_from(couplings).where(
                    couplings.c.mapping == mapping, couplings.c.pending.is_(False))
            ).scalar_one())

    def record_intent(self, mapping: str, *, bc_id: str | None, dv_id: str | None) -> None:
        """Record, before a create is sent, which pair it will make (exactly-once creates).

        For a Dataverse create the new row's id is chosen by us and stored here first, so a
        rerun after a crash writes the same id (an upsert) instead of a second row.
        """
        _retry_on_conflict(lambda: self._record_intent(mapping, bc_id=bc_id, dv_id=dv_id))

    def record_intents(self, mapping: str, pairs: list[tuple[Any, ...]]
                       ) -> set[tuple[str, str]]:
        """``record_intent`` for many (bc_id, dv_id[, sent payload[, source baseline]]) in
        one transaction.

        With a payload (a Business Central create, whose id the service chooses), the intent
        keeps what was sent, the source record as it was then and when it was first sent
        (``intent_doc``), so that recovery after a lost response finds the record that
        create made and couples it with a baseline (see engine/lost_creates.py).

        Returns the (bc_id, dv_id) of the intents made as new rows with both ids (a
        Dataverse create, whose id is ours): no other row holds either id, which lets
        ``stamp_many`` confirm them without looking them up (its ``fresh``).
        """
        fresh: set[tuple[str, str]] = set()

        def run() -> None:
            fresh.clear()
            with self._write() as conn:
                made = self._intent_rows(conn, mapping, pairs)
                if made is None:
                    for pair in pairs:
                        self._intent_row(conn, mapping, *pair)
                else:
                    fresh.update(made)
        if pairs:
            _retry_on_conflict(run)
        return fresh

    def _intent_rows(self, conn: Any, mapping: str, pairs: list[tuple[Any, ...]]
                     ) -> set[tuple[str, str]] | None:
        """``_intent_row`` for a whole batch in a few statements: one SELECT of the rows
        the batch names, one executemany UPDATE and one INSERT. Returns the (bc_id, dv_id)
        of the rows it inserted with both ids, or None (nothing done) when two pairs name
        the same record, which the row-by-row path handles in order."""
        keys = [(p[0] or None, p[1] or None) for p in pairs]
        by_bc = [bc for bc, _ in keys if bc]
        by_dv = [dv for bc, dv in keys if not bc and dv]
        if len(set(by_bc)) != len(by_bc) or len(set(by_dv)) != len(by_dv) or (
                len(by_bc) + len(by_dv) != len(keys)):
            return None
        found: dict[tuple[str, str], Any] = {}
        for col, name, ids in ((couplings.c.bc_id, "bc", by_bc), (couplings.c.dv_id, "dv",
                                                                  by_dv)):
            for part in _parts(ids):
                for row in conn.execute(select(
                        couplings.c.id, couplings.c.bc_id, couplings.c.dv_id,
                        couplings.c.pending, couplings.c.synced).where(
                        couplings.c.mapping == mapping, col.in_(part)).with_for_update()):
                    found[(name, str(row.bc_id if name == "bc" else row.dv_id))] = row
        moment = utcnow()
        now = to_db(moment)
        updates: list[dict[str, Any]] = []
        inserts: list[dict[str, Any]] = []
        for pair, (bc_id, dv_id) in zip(pairs, keys, strict=True):
            existing = found.get(("bc", bc_id) if bc_id else ("dv", str(dv_id)))
            values: dict[str, Any] = {"bc_id": bc_id, "dv_id": dv_id, "pending": True,
                                      "updated_at": now}
            sent = pair[2] if len(pair) > 2 else None
            if sent is not None:
                values["synced"] = intent_doc(existing, sent, pair[3] if len(pair) > 3
                                              else None, moment)
            if existing is not None:
                updates.append({"row_id": existing.id, **values})
            else:
                inserts.append({"mapping": mapping, "skipped": False, "to_dv_result": "",
                                "to_bc_result": "", "created_at": now, "synced": None,
                                **values})
        _update_by_id(conn, updates)
        execute_many(conn, insert(couplings), inserts)
        return {(str(r["bc_id"]), str(r["dv_id"])) for r in inserts
                if r["bc_id"] and r["dv_id"]}

    def _record_intent(self, mapping: str, *, bc_id: str | None, dv_id: str | None) -> None:
        with self._write() as conn:
            self._intent_row(conn, mapping, bc_id, dv_id)

    def _intent_row(self, conn: Any, mapping: str, bc_id: str | None,
                    dv_id: str | None, sent: dict[str, Any] | None = None,
                    source: dict[str, Any] | None = None) -> None:
        moment = utcnow()
        now = to_db(moment)
        col = couplings.c.bc_id if bc_id else couplings.c.dv_id
        existing = conn.execute(select(couplings.c.id, couplings.c.pending, couplings.c.synced)
                                .where(couplings.c.mapping == mapping, col == (bc_id or dv_id))
                                .with_for_update()).first()
        values: dict[str, Any] = {"bc_id": bc_id, "dv_id": dv_id, "pending": True,
                                  "updated_at": now}
        if sent is not None:
            values["synced"] = intent_doc(existing, sent, source, moment)
        if existing is not None:
            conn.execute(update(couplings).where(couplings.c.id == existing.id).values(**values))
        else:
            conn.execute(insert(couplings).values(
                mapping=mapping, skipped=False, to_dv_result="", to_bc_result="",
                created_at=now, **values))

    def stamp_success(self, mapping: str, direction: str, job_id: str, stamp: Stamp) -> None:
        """Record a successful sync of a pair; baselines only move forward."""
        _retry_on_conflict(lambda: self._stamp_success(mapping, direction, job_id, stamp))

    def stamp_many(self, mapping: str, direction: str, job_id: str,
                   stamps: list[Stamp], fresh: Collection[tuple[str, str]] = ()) -> None:
        """``stamp_success`` for many pairs in one transaction.

        ``fresh``: (bc_id, dv_id) of intents this pass made as new rows
        (``record_intents``'s answer). Their stamps are one executemany UPDATE of the
        pending row holding both ids, with no SELECT: the row has no baseline to keep by
        MAX and no other row can hold either id. Should one not be found so, every stamp
        goes the usual way (a stamp applied twice changes nothing). SQLite only, whose
        executemany counts the rows it updated."""
        def run() -> None:
            with self._write() as conn:
                rest = stamps
                if fresh and conn.dialect.name == "sqlite":
                    rest = self._stamp_fresh(conn, mapping, direction, job_id, stamps, fresh)
                if rest and not self._stamp_rows(conn, mapping, direction, job_id, rest):
                    for stamp in rest:
                        self._stamp_row(conn, mapping, direction, job_id, stamp)
        if stamps:
            _retry_on_conflict(run)

    def _stamp_fresh(self, conn: Any, mapping: str, direction: str, job_id: str,
                     stamps: list[Stamp], fresh: Collection[tuple[str, str]]
                     ) -> list[Stamp]:
        """The stamps of ``fresh`` intents as one UPDATE by their ids; returns the stamps
        left to the usual way (all of them when a fresh row was not where it should be)."""
        mine = [s for s in stamps if (s.bc_id, s.dv_id) in fresh]
        if not mine:
            return stamps
        now = to_db(utcnow())
        rows = []
        for stamp in mine:
            values = _stamped_values(stamp, None, direction, job_id, now)
            del values["bc_id"], values["dv_id"]  # the row's own: keys of the WHERE
            rows.append({"m_": mapping, "b_": stamp.bc_id, "d_": stamp.dv_id, **values})
        c = couplings.c
        stmt = update(couplings).where(
            c.mapping == bindparam("m_"), c.bc_id == bindparam("b_"),
            c.dv_id == bindparam("d_"), c.pending.is_(True))
        done = execute_many(conn, stmt, rows)
        if done != len(mine):
            return stamps
        return [s for s in stamps if (s.bc_id, s.dv_id) not in fresh]

    def _stamp_rows(self, conn: Any, mapping: str, direction: str, job_id: str,
                    stamps: list[Stamp]) -> bool:
        """``_stamp_row`` for a whole batch in a few statements: one SELECT of the rows
        either id of the batch names, one DELETE of the void intents, one executemany
        UPDATE and one INSERT. Returns False (nothing done) when two stamps name the same
        record or one row, which the row-by-row path handles in order."""
        bc_ids = [s.bc_id for s in stamps]
        dv_ids = [s.dv_id for s in stamps]
        if (not all(bc_ids) or not all(dv_ids) or len(set(bc_ids)) != len(bc_ids)
                or len(set(dv_ids)) != len(dv_ids)):
            return False
        rows: dict[int, Any] = {}
        c = couplings.c
        wanted = (c.id, c.bc_id, c.dv_id, c.pending, c.bc_modified, c.dv_modified)
        for col, ids in ((c.bc_id, bc_ids), (c.dv_id, dv_ids)):
            for part in _parts(ids):
                # Only the columns the stamp reads: not the synced values, the largest.
                for row in conn.execute(select(*wanted).where(
                        c.mapping == mapping, col.in_(part)).with_for_update()).mappings():
                    rows[row["id"]] = row
        by_bc: dict[str, list[Any]] = {}
        by_dv: dict[str, list[Any]] = {}
        for row in rows.values():
            if row["bc_id"] is not None:
                by_bc.setdefault(str(row["bc_id"]), []).append(row)
            if row["dv_id"] is not None:
                by_dv.setdefault(str(row["dv_id"]), []).append(row)
        claimed: set[int] = set()
        now = to_db(utcnow())
        stale: list[int] = []
        updates: list[dict[str, Any]] = []
        inserts: list[dict[str, Any]] = []
        other_col, other_job = _result_columns(_other(direction))
        for stamp in stamps:
            at_bc, at_dv = by_bc.get(stamp.bc_id, ()), by_dv.get(stamp.dv_id, ())
            if len(at_bc) == 1 and len(at_dv) == 1 and at_bc[0] is at_dv[0]:
                ordered = [at_bc[0]]  # the common case: one row holds both ids
            else:
                matched = {r["id"]: r for r in (*at_bc, *at_dv)}
                ordered = sorted(matched.values(), key=lambda r: (bool(r["pending"]), r["id"]))
            taken = {r["id"] for r in ordered}
            if claimed & taken:
                return False  # one row answers two stamps: keep the in-order semantics
            claimed |= taken
            row = ordered[0] if ordered else None
            # Unconfirmed intents that claimed one of the two ids are void now.
            stale += [r["id"] for r in ordered[1:] if r["pending"]]
            values = _stamped_values(stamp, row, direction, job_id, now)
            if row is None:
                inserts.append({"mapping": mapping, "skipped": False, "created_at": now,
                                other_col: "", other_job: None, **values})
            else:
                if row["bc_id"] == stamp.bc_id and row["dv_id"] == stamp.dv_id:
                    # Unchanged ids stay out of the SET: each is a unique index to maintain.
                    del values["bc_id"], values["dv_id"]
                updates.append({"row_id": row["id"], **values})
        for part in _parts(stale):
            conn.execute(couplings.delete().where(couplings.c.id.in_(part)))
        _update_by_id(conn, updates)
        execute_many(conn, insert(couplings), inserts)
        return True

    def _stamp_success(self, mapping: str, direction: str, job_id: str, stamp: Stamp) -> None:
        with self._write() as conn:
            self._stamp_row(conn, mapping, direction, job_id, stamp)

    def _stamp_row(self, conn: Any, mapping: str, direction: str, job_id: str,
                   stamp: Stamp) -> None:
        now = to_db(utcnow())
        rows = conn.execute(select(couplings).where(
            couplings.c.mapping == mapping,
            (couplings.c.bc_id == stamp.bc_id) | (couplings.c.dv_id == stamp.dv_id),
        ).order_by(couplings.c.pending, couplings.c.id).with_for_update()).mappings().all()
        row = rows[0] if rows else None
        # Unconfirmed intents that claimed one of the two ids are void now.
        stale = [r["id"] for r in rows[1:] if r["pending"]]
        if stale:
            conn.execute(couplings.delete().where(couplings.c.id.in_(stale)))
        values = _stamped_values(stamp, row, direction, job_id, now)
        if row is None:
            conn.execute(insert(couplings).values(
                mapping=mapping, skipped=False, created_at=now,
                **{"to_dv_result": "", "to_bc_result": "", **values}))
        else:
            conn.execute(update(couplings).where(couplings.c.id == row["id"]).values(**values))

    def stamp_failure(
        self, mapping: str, direction: str, job_id: str, *, bc_id: str | None,
        dv_id: str | None, skip: bool = False,
    ) -> bool:
        """Record a failed sync of a coupled pair, marking it Skipped when told to (the
        engine decides: ``bcdv.engine.outcome``); returns True if it was marked Skipped.

        Uncoupled records and unconfirmed creates have no coupling to mark: nothing happens.
        """
        result_col, job_col = _result_columns(direction)
        with self._write() as conn:
            cond = [couplings.c.mapping == mapping, couplings.c.pending.is_(False)]
            cond.append(couplings.c.bc_id == bc_id if bc_id else couplings.c.dv_id == dv_id)
            row = conn.execute(select(couplings).where(and_(*cond)).with_for_update()
                               ).mappings().first()
            if row is None:
                return False
            conn.execute(update(couplings).where(couplings.c.id == row["id"]).values(
                **{result_col: "failure", job_col: job_id, "updated_at": to_db(utcnow())},
                **({"skipped": True} if skip else {})))
            return skip

    def _couple(self, mapping: str, bc_id: str, dv_id: str) -> bool:
        now = to_db(utcnow())
        with self._write() as conn:
            taken = conn.execute(select(couplings.c.id).where(
                couplings.c.mapping == mapping, couplings.c.pending.is_(False),
                (couplings.c.bc_id == bc_id) | (couplings.c.dv_id == dv_id))).first()
            if taken is not None:
                return False
            conn.execute(couplings.delete().where(
                couplings.c.mapping == mapping, couplings.c.pending.is_(True),
                (couplings.c.bc_id == bc_id) | (couplings.c.dv_id == dv_id)))
            conn.execute(insert(couplings).values(
                mapping=mapping, bc_id=bc_id, dv_id=dv_id, pending=False, skipped=False,
                to_dv_result="", to_bc_result="", created_at=now, updated_at=now))
        return True

    def couple(self, mapping: str, bc_id: str, dv_id: str) -> bool:
        """Couple two records without any sync baseline (both sides count as changed).

        Returns False when either record is already coupled in this mapping (BC refuses to
        couple a record twice); a removed coupling frees both ids again.
        """
        try:
            return self._couple(mapping, bc_id, dv_id)
        except IntegrityError:  # a concurrent couple() of one of the ids won
            return False

    def remove_coupling(self, mapping: str, *, bc_id: str | None = None,
                        dv_id: str | None = None) -> int:
        """Delete a coupling by either id; returns the number removed."""
        cond = couplings.c.bc_id == bc_id if bc_id else couplings.c.dv_id == dv_id
        with self._write() as conn:
            return conn.execute(couplings.delete().where(
                couplings.c.mapping == mapping, cond)).rowcount

    # -- jobs and errors ----------------------------------------------------------------
    def start_job(self, mapping: str, direction: str, *, mode: str, run_id: str | None = None,
                  dry_run: bool = False, job_type: str = "synchronization") -> str:
        """Open a job-log row and return its id."""
        job_id = str(uuid.uuid4())
        with self._write() as conn:
            conn.execute(insert(jobs).values(
                id=job_id, mapping=mapping, direction=direction, type=job_type, mode=mode,
                run_id=run_id, status="running", dry_run=dry_run,
                started_at=to_db(utcnow()), **dict.fromkeys(COUNTERS, 0)))
        return job_id

    def update_job(self, job_id: str, **values: Any) -> None:
        """Set fields of a job row (counters, signpost, message, status...)."""
        clean = {k: to_db(v) if isinstance(v, datetime) else v for k, v in values.items()}
        with self._write() as conn:
            conn.execute(update(jobs).where(jobs.c.id == job_id).values(**clean))

    def finish_job(self, job_id: str, *, status: str, message: str | None = None) -> None:
        """Close a job row."""
        self.update_job(job_id, status=status, message=message, finished_at=utcnow())

    def running_jobs(self, mapping: str, run_id: str | None = None) -> list[dict[str, Any]]:
        """The mapping's job rows still ``running`` (of one run id when given), oldest
        first."""
        query = (select(jobs).where(jobs.c.mapping == mapping, jobs.c.status == "running")
                 .order_by(jobs.c.started_at))
        if run_id is not None:
            query = query.where(jobs.c.run_id == run_id)
        with self.engine.connect() as conn:
            return [aware_row(r) for r in conn.execute(query).mappings().all()]

    def close_jobs(self, job_ids: Iterable[str], *, status: str, message: str) -> int:
        """Close these job rows if still ``running`` (status, message, finish time); returns
        how many were closed. Which jobs to close is the caller's decision."""
        ids = list(job_ids)
        if not ids:
            return 0
        with self._write() as conn:
            return int(conn.execute(update(jobs).where(
                jobs.c.id.in_(ids), jobs.c.status == "running").values(
                status=status, message=message, finished_at=to_db(utcnow()))).rowcount)

    def job(self, job_id: str) -> dict[str, Any] | None:
        """One job row."""
        with self.engine.connect() as conn:
            row = conn.execute(select(jobs).where(jobs.c.id == job_id)).mappings().first()
        return aware_row(row) if row else None

    def jobs(self, mapping: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """Recent job rows, newest first."""
        query = select(jobs).order_by(jobs.c.started_at.desc()).limit(limit)
        if mapping:
            query = query.where(jobs.c.mapping == mapping)
        with self.engine.connect() as conn:
            return [aware_row(r) for r in conn.execute(query).mappings().all()]

    def last_errors(self, mapping: str, direction: str,
                    source_ids: Iterable[str]) -> dict[str, str]:
        """The latest unresolved error message per source id."""
        ids = list(source_ids)
        out: dict[str, str] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(ids), 500):
                rows = conn.execute(select(record_errors.c.source_id, record_errors.c.message)
                    .where(record_errors.c.mapping == mapping,
                           record_errors.c.direction == direction,
                           record_errors.c.resolved.is_(False),
                           record_errors.c.source_id.in_(ids[start:start + 500]))
                    .order_by(record_errors.c.last_seen)).all()
                out.update({r.source_id: r.message for r in rows})
        return out

    def record_error(self, mapping: str, direction: str, job_id: str, *, source_id: str,
                     bc_id: str | None, dv_id: str | None, message: str,
                     name: str | None = None, code: str | None = None,
                     field: str | None = None, value: Any = None,
                     caused_by: int | None = None) -> int:
        """Add or refresh the error row of a record; returns the row's id.

        One open row per record and cause: a failure with the same identity as an open row
        of the record (``bcdv.state.errors.error_identity``: code, field and the message
        without the ids and timestamps every answer carries) counts one more attempt on it
        and moves its last_seen and job; the row keeps the latest full text and ids.
        """
        message = safe_text(message) or ""
        code, field = _cut(safe_text(code), 100), _cut(safe_text(field), 250)
        details: dict[str, Any] = {"name": _cut(safe_text(name), 250), "code": code,
                                   "field": field, "value": safe_text(value),
                                   "caused_by": caused_by}
        wanted = error_identity(message, code=code, field=field)
        now = to_db(utcnow())
        with self._write() as conn:
            rows = conn.execute(select(record_errors.c.id, record_errors.c.attempts,
                                       record_errors.c.message, record_errors.c.code,
                                       record_errors.c.field).where(
                record_errors.c.mapping == mapping, record_errors.c.direction == direction,
                record_errors.c.source_id == source_id, record_errors.c.resolved.is_(False),
            ).order_by(record_errors.c.last_seen.desc())).all()
            # A row written before revision 0005 has no code or field: its message decides.
            row = next((r for r in rows if wanted in (
                error_identity(r.message, code=r.code, field=r.field),
                error_identity(r.message, code=code, field=field) if r.code is None
                and r.field is None else None)), None)
            if row is not None:
                conn.execute(update(record_errors).where(record_errors.c.id == row.id).values(
                    attempts=row.attempts + 1, last_seen=now, job_id=job_id,
                    bc_id=bc_id, dv_id=dv_id, message=message, **details))
                return int(row.id)
            result = conn.execute(insert(record_errors).values(
                mapping=mapping, direction=direction, source_id=source_id, bc_id=bc_id,
                dv_id=dv_id, job_id=job_id, message=message, attempts=1,
                first_seen=now, last_seen=now, resolved=False, **details))
            key = result.inserted_primary_key
            if key is None:
                raise RuntimeError("the database returned no id for the new error row")
            return int(key[0])

    def open_error_for(self, mapping: str, direction: str | None,
                       record: str) -> dict[str, Any] | None:
        """The newest open error of a mapping's record found by its name or either id
        (what a lookup value names), or None."""
        query = select(record_errors).where(
            record_errors.c.mapping == mapping, record_errors.c.resolved.is_(False),
            or_(record_errors.c.name == record, record_errors.c.source_id == record,
                record_errors.c.bc_id == record, record_errors.c.dv_id == record),
        ).order_by(record_errors.c.last_seen.desc()).limit(1)
        if direction is not None:
            query = query.where(record_errors.c.direction == direction)
        with self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        return aware_row(row) if row is not None else None

    def resolve_errors(self, mapping: str, direction: str, source_ids: Iterable[str]) -> None:
        """Mark the errors of records that synced successfully as resolved."""
        ids = list(source_ids)
        if not ids:
            return
        with self._write() as conn:
            # The open errors of the pass's direction first (usually none, or few next to
            # the records of a pass): only the records among them are updated, not every
            # record a full sync wrote, 500 at a time.
            open_ids = set(conn.execute(select(record_errors.c.source_id).where(
                record_errors.c.mapping == mapping, record_errors.c.direction == direction,
                record_errors.c.resolved.is_(False))).scalars())
            hit = [i for i in ids if str(i) in open_ids]
            for part in _parts(hit):
                conn.execute(update(record_errors).where(
                    record_errors.c.mapping == mapping, record_errors.c.direction == direction,
                    record_errors.c.source_id.in_(part),
                    record_errors.c.resolved.is_(False)).values(resolved=True))

    def errors(self, mapping: str | None = None, *, include_resolved: bool = False,
               limit: int = 200) -> list[dict[str, Any]]:
        """Record errors, newest first."""
        query = select(record_errors).order_by(record_errors.c.last_seen.desc()).limit(limit)
        if mapping:
            query = query.where(record_errors.c.mapping == mapping)
        if not include_resolved:
            query = query.where(record_errors.c.resolved.is_(False))
        with self.engine.connect() as conn:
            return [aware_row(r) for r in conn.execute(query).mappings().all()]


    # -- what each job did to each record ------------------------------------------------
    def record_job_records(self, job_id: str, mapping: str, direction: str,
                           rows: Iterable[dict[str, Any]]) -> int:
        """Store a job's per-record outcomes (action, name, ids, field diff); a job's rows
        are replaced, so committing a pass twice does not list a record twice."""
        values = [_job_record(job_id, mapping, direction, r) for r in rows]
        with self._write() as conn:
            conn.execute(delete(job_records).where(job_records.c.job_id == job_id))
            for start in range(0, len(values), 500):
                execute_many(conn, insert(job_records), values[start:start + 500])
        return len(values)

    def append_job_records(self, job_id: str, mapping: str, direction: str,
                           rows: Iterable[dict[str, Any]]) -> int:
        """Add a batch of a job's per-record outcomes after those already stored (a long
        job's list is written batch by batch: ``record_job_records(job_id, ..., [])``
        first clears it)."""
        values = [_job_record(job_id, mapping, direction, r) for r in rows]
        if values:
            with self._write() as conn:
                for start in range(0, len(values), 500):
                    execute_many(conn, insert(job_records), values[start:start + 500])
        return len(values)

    def job_records(self, job_id: str, *, action: str | None = None,
                    limit: int | None = None) -> list[dict[str, Any]]:
        """A job's per-record outcomes in the order they were planned (``changes``
        decoded: ``{field: [old, new]}``)."""
        query = select(job_records).where(job_records.c.job_id == job_id).order_by(
            job_records.c.id)
        if action:
            query = query.where(job_records.c.action == action)
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            rows = [dict(r) for r in conn.execute(query).mappings().all()]
        for row in rows:
            row["changes"] = fastjson.loads(row["changes"]) if row["changes"] else {}
        return rows


def _job_record(job_id: str, mapping: str, direction: str,
                r: dict[str, Any]) -> dict[str, Any]:
    """A ``job_records`` row from a record outcome's row."""
    return {"job_id": job_id, "mapping": mapping, "direction": direction,
            "source_id": str(r["source_id"]), "target_id": r.get("target_id"),
            "name": _cut(safe_text(r.get("name")), 250), "action": r["action"],
            "result": r.get("result"), "message": safe_text(r.get("message")),
            "changes": fastjson.dumps(r["changes"]) if r.get("changes")
            else None, "conflict": bool(r.get("conflict"))}


def _cut(text: str | None, size: int) -> str | None:
    """Text that fits a column of ``size`` characters."""
    return text if text is None or len(text) <= size else text[:size - 1] + "…"


def _parts(ids: Sequence[Any], size: int = 500) -> Iterable[list[Any]]:
    """``ids`` in slices that fit an IN list on every backend."""
    for start in range(0, len(ids), size):
        yield list(ids[start:start + size])


def _stamped_values(stamp: Stamp, row: Any, direction: str, job_id: str,
                    now: Any) -> dict[str, Any]:
    """A successful sync's coupling columns: the pair, this direction's result and job, the
    hashes and synced values, and each side's baseline kept by MAX (a baseline never moves
    back, whichever write stamps it)."""
    result_col, job_col = _result_columns(direction)
    values: dict[str, Any] = {
        "bc_id": stamp.bc_id, "dv_id": stamp.dv_id, "pending": False,
        result_col: "success", job_col: job_id, "updated_at": now,
        "bc_hash": stamp.bc_hash, "dv_hash": stamp.dv_hash, "synced": stamp.synced,
        "update_intent": None,
    }
    for col, new in (("bc_modified", stamp.bc_modified), ("dv_modified", stamp.dv_modified)):
        values[col] = _later(row[col] if row is not None else None, new)
    return values


def _later(stored: datetime | None, new: datetime | None) -> datetime | None:
    """A baseline kept by MAX: the later of the stored one (naive UTC) and ``new``, for
    storage."""
    old = from_db(stored)
    return to_db(max(v for v in (old, new) if v is not None)) if (old or new) else None


def _update_by_id(conn: Any, rows: list[dict[str, Any]]) -> None:
    """One executemany UPDATE of couplings by ``row_id`` (every dict has the same keys)."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(sorted(row)), []).append(row)
    for group in groups.values():
        execute_many(conn, update(couplings).where(couplings.c.id == bindparam("row_id")),
                     group)


def _other(direction: str) -> str:
    return "to_business_central" if direction == "to_dataverse" else "to_dataverse"


def _result_columns(direction: str) -> tuple[str, str]:
    if direction == "to_dataverse":
        return "to_dv_result", "to_dv_job"
    if direction == "to_business_central":
        return "to_bc_result", "to_bc_job"
    raise ValueError(f"unknown pass direction {direction!r}")


def default_state_url(home: str | Path | None = None) -> str:
    """The embedded default: the SQLite file ``state.db`` under ``home``, or under bcdv's
    home (settings: ``$BCDV_HOME``, else ``$AIRFLOW_HOME/bcdv``, else the user's data
    directory); never relative to the current directory."""
    from bcdv.settings import load_settings

    base = Path(home).expanduser() if home else load_settings().home
    return f"sqlite:///{(base / 'state.db').resolve()}"
