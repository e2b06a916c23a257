"""Database plumbing of the state store: URLs, engines, transactions, time conversion.

SQLite (the embedded default) and PostgreSQL (production) behave the same through this
module: every write runs in a transaction that serialises against other writers of the same
rows. On SQLite that is ``BEGIN IMMEDIATE`` (the database write lock is taken when the
transaction starts, so a read-then-write never races another process); on PostgreSQL it is
row locks (``SELECT ... FOR UPDATE``) plus ``INSERT ... ON CONFLICT`` for rows that may not
exist yet.

A PostgreSQL schema other than ``public`` is chosen in the URL, not in code:
``postgresql://user@host/db?options=-csearch_path%3Dbcdv`` keeps every bcdv table (and the
Alembic version table) in schema ``bcdv``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from operator import itemgetter
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import Table, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, make_url

# Execution option that makes a SQLite transaction start with BEGIN IMMEDIATE.
WRITE_OPTION = "bcdv_write"
_PG_DRIVERS = {"postgres", "postgresql"}


def utcnow() -> datetime:
    """Now, aware UTC."""
    return datetime.now(timezone.utc)


def to_db(value: datetime | None) -> datetime | None:
    """Aware datetime -> naive UTC for storage (a naive value is taken as UTC already)."""
    if value is None:
        return None
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return value


def from_db(value: datetime | None) -> datetime | None:
    """Stored naive UTC -> aware UTC (microseconds kept)."""
    if value is None or pd.isna(value):
        return None
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


def aware_row(row: Any) -> dict[str, Any]:
    """A result row as a dict whose datetimes are aware UTC."""
    return {k: from_db(v) if isinstance(v, datetime) else v for k, v in dict(row).items()}


def normalise_url(url: str) -> str:
    """The SQLAlchemy URL to connect with: ``postgres://`` and ``postgresql://`` (the forms
    Heroku, Airflow connections and libpq use) become ``postgresql+psycopg2://``."""
    parsed = make_url(url)
    if parsed.drivername in _PG_DRIVERS:
        parsed = parsed.set(drivername="postgresql+psycopg2")
    return parsed.render_as_string(hide_password=False)


_ENGINES: dict[str, Engine] = {}
_ENGINES_LOCK = threading.Lock()


def _forget_engines_after_fork() -> None:
    # A forked child (Airflow's LocalExecutor, multiprocessing) must not reuse the parent's
    # pooled connections: drop them without closing the parent's sockets.
    for eng in _ENGINES.values():
        eng.dispose(close=False)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_engines_after_fork)


def _set_wal(cur: Any, attempts: int = 100) -> None:
    """Switch to WAL. On a new file several processes may try at once, and the switch needs
    the file to itself: SQLite then answers "database is locked" at once instead of waiting
    for its busy timeout, so wait and try again."""
    import sqlite3
    import time

    for attempt in range(attempts):
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.05 * (1 + attempt % 5))


def _sqlite_engine(url: str) -> Engine:
    path = make_url(url).database
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    eng = create_engine(url, connect_args={"timeout": 30})

    @event.listens_for(eng, "connect")
    def _connect(dbapi_conn: Any, _: Any) -> None:
        # Take transaction control from the driver so BEGIN is ours (see _begin).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        _set_wal(cur)
        # WAL + NORMAL: a commit survives a crash of the process (what exactly-once needs);
        # only an OS crash or power loss can drop the last commits. FULL fsyncs every commit
        # and made the state store the bottleneck of a sync (tens of ms per record).
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(eng, "begin")
    def _begin(conn: Connection) -> None:
        write = conn.get_execution_options().get(WRITE_OPTION)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return eng


def engine_for(url: str) -> Engine:
    """The process-wide engine of a URL, migrated to the newest schema on first use."""
    from bcdv.state import migrate

    url = normalise_url(url)
    with _ENGINES_LOCK:
        eng = _ENGINES.get(url)
        if eng is None:
            if url.startswith("sqlite"):
                eng = _sqlite_engine(url)
            else:
                eng = create_engine(url, pool_pre_ping=True)
            migrate.upgrade(eng)
            _ENGINES[url] = eng
        return eng


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction for read-modify-write: BEGIN IMMEDIATE on SQLite, plain on PostgreSQL
    (callers lock rows with FOR UPDATE or use ``upsert_insert``)."""
    with engine.connect() as conn:
        conn.execution_options(**{WRITE_OPTION: True})
        with conn.begin():
            yield conn


def upsert_insert(conn: Connection, table: Table) -> Any:
    """The dialect's INSERT construct (it has ``on_conflict_do_nothing``/``_do_update``)."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    if conn.dialect.name == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"unsupported state-store database {conn.dialect.name!r}")


class StoreBase:
    """Connection handling shared by the parts of the state store.

    Args:
        url: SQLAlchemy URL; the schema is migrated to the newest revision on first use.
    """

    def __init__(self, url: str) -> None:
        self.url = normalise_url(url)
        self.engine = engine_for(self.url)

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with write_transaction(self.engine) as conn:
            yield conn

    def close(self) -> None:
        """Close pooled connections (the store reconnects if used again)."""
        self.engine.dispose()


def forget_engine(url: str) -> None:
    """Dispose and forget the process-wide engine of a URL (tests, shutdown); a later
    store on the URL opens a new one."""
    with _ENGINES_LOCK:
        eng = _ENGINES.pop(normalise_url(url), None)
    if eng is not None:
        eng.dispose()


def execute_many(conn: Connection, stmt: Any, rows: list[dict[str, Any]]) -> int:
    """``conn.execute(stmt, rows)`` for many rows of one shape (every dict has the same keys).

    On SQLite the statement is compiled once and the rows go to the driver's executemany
    with the column types' own conversions (SQLAlchemy's ``bind_processor``): SQLAlchemy's
    per-row parameter building took more time than SQLite's own work on a batch of stamps.
    PostgreSQL keeps SQLAlchemy's path, whose psycopg2 batching the driver's plain
    executemany (one round trip per row) would lose.

    Returns the rows the statement changed as the driver counts them (SQLite: the sum over
    the rows; PostgreSQL's batched executemany may not count: -1).
    """
    if not rows:
        return 0
    if conn.dialect.name != "sqlite":
        return int(conn.execute(stmt, rows).rowcount)
    keys = list(rows[0])
    compiled = stmt.compile(dialect=conn.dialect, column_keys=keys)
    names = list(compiled.positiontup or ())
    if sorted(names) != sorted(keys):  # a default or an expression the rows do not fill
        return int(conn.execute(stmt, rows).rowcount)
    procs = [(i, proc) for i, name in enumerate(names)
             if (proc := compiled.binds[name].type.bind_processor(conn.dialect)) is not None]
    # The row's values in statement order by one C call (itemgetter), then only the columns
    # with a conversion (dates, booleans) converted: the per-value generator cost more.
    getter = itemgetter(*names)
    params: list[Any] = ([(getter(row),) for row in rows] if len(names) == 1
                         else [getter(row) for row in rows])
    if procs:
        for n, values in enumerate(params):
            converted = list(values)
            for i, proc in procs:
                converted[i] = proc(converted[i])
            params[n] = tuple(converted)
    return int(conn.exec_driver_sql(compiled.string, params).rowcount)
