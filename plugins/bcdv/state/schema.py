"""Tables of the state store (SQLAlchemy Core). Changes go through Alembic migrations."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    text,
)

metadata = MetaData()

# One row per coupled pair (BC: table 5331 "CRM Integration Record"), scoped by mapping.
# Both baselines (the modified-on of each side as of the last successful sync) drive
# "changed?"; the hashes of the mapped values per side stop the engine's own writes from
# echoing back as changes. ``pending`` marks an intent recorded before a create was sent.
couplings = Table(
    "bcdv_couplings",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("mapping", String(20), nullable=False),
    Column("bc_id", String(36), nullable=True),
    Column("dv_id", String(36), nullable=True),
    Column("bc_modified", DateTime, nullable=True),
    Column("dv_modified", DateTime, nullable=True),
    Column("bc_hash", String(64), nullable=True),
    Column("dv_hash", String(64), nullable=True),
    # Canonical mapped values of both sides after the last sync (JSON), for field-level merge.
    Column("synced", Text, nullable=True),
    Column("to_dv_result", String(10), nullable=False, default=""),
    Column("to_bc_result", String(10), nullable=False, default=""),
    Column("to_dv_job", String(36), nullable=True),
    Column("to_bc_job", String(36), nullable=True),
    Column("skipped", Boolean, nullable=False, default=False),
    Column("pending", Boolean, nullable=False, default=False),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    # Revision 0006: an update in flight (JSON: what it sends, the source it came from) from
    # before the batch is sent until its stamp (engine/updates.py); null otherwise.
    Column("update_intent", Text, nullable=True),
    UniqueConstraint("mapping", "bc_id", name="uq_bcdv_couplings_bc"),
    UniqueConstraint("mapping", "dv_id", name="uq_bcdv_couplings_dv"),
)
# Revision 0007: the couplings a pass's retry set is drawn from (its last sync in that
# direction failed, a create unconfirmed, or the source side's values unknown), found
# without reading every coupling: one partial index per direction, whose condition
# engine/retry_set.py repeats word for word (SQLite uses a partial index only for a query
# that states its condition).
RETRY_CANDIDATES = {
    "to_dataverse": "(to_dv_result = 'failure' OR pending OR bc_hash IS NULL)",
    "to_business_central": "(to_bc_result = 'failure' OR pending OR dv_hash IS NULL)",
}
RETRY_INDEXES = [Index(f"ix_bcdv_couplings_retry_{short}", couplings.c.mapping,
                       sqlite_where=text(RETRY_CANDIDATES[direction]),
                       postgresql_where=text(RETRY_CANDIDATES[direction]))
                 for direction, short in (("to_dataverse", "dv"),
                                          ("to_business_central", "bc"))]
# The few couplings with an update in flight, found without reading the others.
UPDATE_INTENT_INDEX = Index("ix_bcdv_couplings_update_intent", couplings.c.mapping,
                            sqlite_where=couplings.c.update_intent.is_not(None),
                            postgresql_where=couplings.c.update_intent.is_not(None))

# Watermark per mapping and pass direction: records modified at or after it are candidates.
watermarks = Table(
    "bcdv_watermarks",
    metadata,
    Column("mapping", String(20), primary_key=True),
    Column("direction", String(24), primary_key=True),
    Column("value", DateTime, nullable=True),
    Column("updated_at", DateTime, nullable=False),
)

# One row per pass (BC: table 5338 "Integration Synch. Job"), with BC's counters.
jobs = Table(
    "bcdv_jobs",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("mapping", String(20), nullable=False),
    Column("direction", String(24), nullable=False),
    Column("type", String(20), nullable=False, default="synchronization"),
    Column("mode", String(20), nullable=False, default="modified"),
    Column("run_id", String(250), nullable=True),
    Column("status", String(20), nullable=False, default="running"),
    Column("dry_run", Boolean, nullable=False, default=False),
    Column("started_at", DateTime, nullable=False),
    Column("finished_at", DateTime, nullable=True),
    Column("signpost", DateTime, nullable=True),
    Column("latest_modified", DateTime, nullable=True),
    Column("inserted", Integer, nullable=False, default=0),
    Column("modified", Integer, nullable=False, default=0),
    Column("deleted", Integer, nullable=False, default=0),
    Column("unchanged", Integer, nullable=False, default=0),
    Column("skipped", Integer, nullable=False, default=0),
    Column("failed", Integer, nullable=False, default=0),
    Column("conflicts", Integer, nullable=False, default=0),
    Column("coupled", Integer, nullable=False, default=0),
    Column("uncoupled", Integer, nullable=False, default=0),
    Column("message", Text, nullable=True),
    Index("ix_bcdv_jobs_mapping_started", "mapping", "started_at"),
)

# One row per failing record and direction (BC: "Integration Synch. Job Errors"), kept up
# to date across attempts.
record_errors = Table(
    "bcdv_record_errors",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("mapping", String(20), nullable=False),
    Column("direction", String(24), nullable=False),
    Column("bc_id", String(36), nullable=True),
    Column("dv_id", String(36), nullable=True),
    Column("source_id", String(36), nullable=False),
    Column("job_id", String(36), nullable=False),
    Column("message", Text, nullable=False),
    Column("attempts", Integer, nullable=False, default=1),
    Column("first_seen", DateTime, nullable=False),
    Column("last_seen", DateTime, nullable=False),
    Column("resolved", Boolean, nullable=False, default=False),
    # Revision 0005: what the error is about. ``name`` is the record's name (the mapping's
    # name_field); ``code``, ``field`` and ``value`` are the API's code and the field and
    # value it rejected (bcdv.engine.api_errors); ``caused_by`` is the error of another
    # mapping's record that made this one fail (a lookup to a record that failed).
    Column("name", String(250), nullable=True),
    Column("code", String(100), nullable=True),
    Column("field", String(250), nullable=True),
    Column("value", Text, nullable=True),
    Column("caused_by", Integer, nullable=True),
    Index("ix_bcdv_record_errors_source", "mapping", "direction", "source_id"),
)

# Revision 0005: what a job did to each record (BC's job log drill-down): the action, the
# record's name and ids, and for an update the field-level diff (JSON ``{field: [old,
# new]}``), for dry runs as for real runs. Unchanged and not-coupled (ignored) records are
# only counted on the job row: listing them would grow the table by the whole source table
# on every run. Rows go with their job (``delete_jobs_older_than``).
job_records = Table(
    "bcdv_job_records",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job_id", String(36), nullable=False),
    Column("mapping", String(20), nullable=False),
    Column("direction", String(24), nullable=False),
    Column("source_id", String(36), nullable=False),
    Column("target_id", String(36), nullable=True),
    Column("name", String(250), nullable=True),
    Column("action", String(20), nullable=False),
    Column("result", String(20), nullable=True),
    Column("message", Text, nullable=True),
    Column("changes", Text, nullable=True),
    Column("conflict", Boolean, nullable=False, default=False),
    Index("ix_bcdv_job_records_job", "job_id"),
)

# One row per mapping whose runs are locked (revision 0002). A DAG run holds it from its
# first task to its last, across task processes, so two runs of one mapping never both
# write. ``renewed_at`` is the holder's last heartbeat: a lock not renewed for longer than
# the caller's stale limit may be taken over (a run that died without releasing).
# Revision 0004: ``bound`` marks a lock that lives only as long as the process that took it
# (``bcdv sync``); with ``process_start`` (that process's start time, so a reused pid is not
# mistaken for it) a contender on the same host takes it over as soon as the process is gone.
locks = Table(
    "bcdv_locks",
    metadata,
    Column("mapping", String(100), primary_key=True),
    Column("owner", String(250), nullable=False),
    Column("acquired_at", DateTime, nullable=False),
    Column("renewed_at", DateTime, nullable=False),
    Column("host", String(250), nullable=True),
    Column("pid", Integer, nullable=True),
    Column("process_start", Float, nullable=True),
    Column("bound", Boolean, nullable=False, default=False, server_default=false()),
)

# What the engine learned about a service, kept between runs (revision 0008): one row per
# service (its API URL). ``op_seconds`` is how long one write operation of a Dataverse
# ``$batch`` took (a moving average): a run that knows it sizes its parallel update requests
# at once, without first sending a probe of operations alone (engine/adapters.py).
service_facts = Table(
    "bcdv_service_facts",
    metadata,
    Column("service", String(500), primary_key=True),
    Column("op_seconds", Float, nullable=True),
    Column("updated_at", DateTime, nullable=False),
)
