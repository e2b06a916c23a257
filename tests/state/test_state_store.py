"""The state store on SQLite and PostgreSQL: watermarks, stamps, skips, couplings, job log,
operator views. Behaviour numbers refer to bc-integration-engine.md section 6."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from bcdv.state import Stamp, StateStore
from bcdv.state.db import normalise_url

M = "CUSTOMER"
TO_DV, TO_BC = "to_dataverse", "to_business_central"
T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)


def _fail(store: StateStore, direction: str, job: str, message: str, *,
          bc_id: str = "b1", dv_id: str = "d1") -> bool:
    """What the engine does for a failed update: prior error and result, BC's rule
    (engine/outcome.py), error row, failure stamp."""
    from bcdv.engine.outcome import failure_result

    source = bc_id if direction == TO_DV else dv_id
    prior = store.last_errors(M, direction, [source]).get(source)
    row = store.coupling(M, bc_id=bc_id)
    result_col = "to_dv_result" if direction == TO_DV else "to_bc_result"
    failed_before = bool(row) and not row["pending"] and row[result_col] == "failure"
    store.record_error(M, direction, job, source_id=source, bc_id=bc_id, dv_id=dv_id,
                       message=message)
    skip = failure_result(failed_before, prior, message) == "skipped"
    return store.stamp_failure(M, direction, job, bc_id=bc_id, dv_id=dv_id, skip=skip)


def _stamp(bc_id: str = "b1", dv_id: str = "d1", bc: datetime | None = T0,
           dv: datetime | None = T0) -> Stamp:
    return Stamp(bc_id=bc_id, dv_id=dv_id, bc_modified=bc, dv_modified=dv, bc_hash="hb",
                 dv_hash="hd")


def test_normalise_url_accepts_libpq_and_heroku_forms() -> None:
    assert normalise_url("postgres://u:p@h:5432/db") == "postgresql+psycopg2://u:p@h:5432/db"
    assert normalise_url("postgresql://u@h/db") == "postgresql+psycopg2://u@h/db"
    assert normalise_url("postgresql+psycopg2://u@h/db") == "postgresql+psycopg2://u@h/db"
    assert normalise_url("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"


def test_short_postgres_url_opens_the_same_store(store: StateStore) -> None:
    short = store.url.replace("postgresql+psycopg2://", "postgres://")
    store.advance_watermark(M, TO_DV, T0)
    assert StateStore(short).get_watermark(M, TO_DV) == T0


def test_watermarks_only_move_forward_and_keep_microseconds(store: StateStore) -> None:
    assert store.get_watermark(M, TO_DV) is None
    store.advance_watermark(M, TO_DV, None)
    assert store.get_watermark(M, TO_DV) is None
    store.advance_watermark(M, TO_DV, T0)
    store.advance_watermark(M, TO_DV, T0 - timedelta(microseconds=1))
    got = store.get_watermark(M, TO_DV)
    assert got == T0 and got.tzinfo is not None and got.microsecond == 123456
    later = (T0 + timedelta(seconds=1)).astimezone(timezone(timedelta(hours=2)))
    store.advance_watermark(M, TO_DV, later)
    assert store.get_watermark(M, TO_DV) == later
    assert store.get_watermark(M, TO_DV).utcoffset() == timedelta(0)
    assert store.get_watermark(M, TO_BC) is None
    store.reset_watermarks(M)
    assert store.get_watermark(M, TO_DV) is None
    store.advance_watermark(M, TO_DV, T0)
    assert store.get_watermark(M, TO_DV) == T0


def test_naive_datetimes_are_taken_as_utc(store: StateStore) -> None:
    store.advance_watermark(M, TO_DV, T0.replace(tzinfo=None))
    assert store.get_watermark(M, TO_DV) == T0


def test_stamp_success_keeps_baselines_monotonic(store: StateStore) -> None:
    store.stamp_success(M, TO_DV, "j1", _stamp(bc=T0, dv=T0 + timedelta(seconds=5)))
    store.stamp_success(M, TO_BC, "j2", _stamp(bc=T0 - timedelta(days=1),
                                                dv=T0 + timedelta(seconds=1)))
    row = store.coupling(M, bc_id="b1")
    assert row is not None
    assert row["bc_modified"] == T0 and row["dv_modified"] == T0 + timedelta(seconds=5)
    assert (row["to_dv_result"], row["to_dv_job"]) == ("success", "j1")
    assert (row["to_bc_result"], row["to_bc_job"]) == ("success", "j2")
    store.stamp_success(M, TO_DV, "j3", _stamp(bc=T0 + timedelta(microseconds=7), dv=None))
    row = store.coupling(M, dv_id="d1")
    assert row["bc_modified"] == T0 + timedelta(microseconds=7)
    assert row["dv_modified"] == T0 + timedelta(seconds=5)
    frame = store.couplings(M)
    assert len(frame) == 1 and str(frame["bc_modified"].dt.tz) == "UTC"
    assert frame.at[0, "bc_modified"] == T0 + timedelta(microseconds=7)


def test_empty_coupling_frames_have_the_columns(store: StateStore) -> None:
    for frame in (store.couplings(M), store.couplings(M, bc_ids=["x"], dv_ids=["y"])):
        assert frame.empty and "bc_modified" in frame.columns
        assert str(frame["bc_modified"].dt.tz) == "UTC"
    assert store.counts(M) == {"couplings": 0, "skipped": 0, "failed": 0, "pending": 0,
                               "errors": 0}


def test_intent_becomes_a_coupling_on_success(store: StateStore) -> None:
    store.record_intent(M, bc_id="b1", dv_id="d1")
    assert store.coupling_count(M) == 0
    assert store.coupling(M, bc_id="b1")["pending"] is True
    store.record_intent(M, bc_id="b1", dv_id="d1")  # a rerun records the same intent
    store.stamp_success(M, TO_DV, "j1", _stamp())
    assert store.coupling_count(M) == 1
    row = store.coupling(M, dv_id="d1")
    assert row["pending"] is False and row["bc_id"] == "b1"
    assert row["to_dv_result"] == "success"
    # A Dataverse -> BC create: the BC id is known only after the write.
    store.record_intent(M, bc_id=None, dv_id="d2")
    store.stamp_success(M, TO_BC, "j2", _stamp(bc_id="b2", dv_id="d2"))
    assert store.coupling_count(M) == 2 and len(store.couplings(M)) == 2
    assert store.coupling(M, bc_id="b2")["dv_id"] == "d2"
    # A resumed BC create found the record under another id: the old intent gives way.
    store.record_intent(M, bc_id="b3", dv_id="d3")
    store.record_intent(M, bc_id=None, dv_id="d4")
    store.stamp_success(M, TO_DV, "j3", _stamp(bc_id="b3", dv_id="d4"))
    assert store.coupling(M, bc_id="b3")["dv_id"] == "d4"
    assert store.coupling(M, dv_id="d3") is None and store.coupling_count(M) == 3


def test_45_same_failure_twice_skips_a_different_one_does_not(store: StateStore) -> None:
    store.couple(M, "b1", "d1")
    assert _fail(store, TO_DV, "j1", "A") is False          # first failure: Failed
    assert _fail(store, TO_DV, "j2", "B") is False          # a different one: Failed
    assert store.coupling(M, bc_id="b1")["skipped"] is False
    assert _fail(store, TO_DV, "j3", "B") is True           # the same twice: Skipped
    row = store.coupling(M, bc_id="b1")
    assert row["skipped"] is True and row["to_dv_result"] == "failure"
    assert row["to_dv_job"] == "j3"


def test_45_success_in_between_keeps_the_record_unskipped(store: StateStore) -> None:
    store.couple(M, "b1", "d1")
    assert _fail(store, TO_DV, "j1", "A") is False
    store.stamp_success(M, TO_DV, "j2", _stamp())
    store.resolve_errors(M, TO_DV, ["b1"])
    assert _fail(store, TO_DV, "j3", "A") is False
    assert store.coupling(M, bc_id="b1")["skipped"] is False


def test_47_a_failure_in_one_direction_neither_skips_nor_resets_the_other(
        store: StateStore) -> None:
    store.couple(M, "b1", "d1")
    assert _fail(store, TO_DV, "j1", "X") is False
    assert _fail(store, TO_BC, "j2", "X") is False  # same text, other direction: no skip
    row = store.coupling(M, bc_id="b1")
    assert row["skipped"] is False
    assert (row["to_dv_result"], row["to_bc_result"]) == ("failure", "failure")
    assert _fail(store, TO_DV, "j3", "X") is True
    assert _fail(store, TO_BC, "j4", "Y") is False  # a new failure does not un-skip
    assert store.coupling(M, bc_id="b1")["skipped"] is True
    assert store.coupling(M, bc_id="b1")["to_dv_job"] == "j3"


def test_stamp_failure_ignores_uncoupled_and_pending_records(store: StateStore) -> None:
    assert _fail(store, TO_DV, "j1", "A", bc_id="nobody", dv_id="none") is False
    store.record_intent(M, bc_id="b9", dv_id="d9")
    assert _fail(store, TO_DV, "j1", "A", bc_id="b9", dv_id="d9") is False
    assert store.coupling(M, bc_id="b9")["to_dv_result"] == ""


def test_33_couple_refuses_either_id_twice_but_allows_recoupling(store: StateStore) -> None:
    assert store.couple(M, "b1", "d1") is True
    assert store.couple(M, "b1", "d2") is False
    assert store.couple(M, "b2", "d1") is False
    assert store.couple("OTHER", "b1", "d1") is True        # couplings are per mapping
    assert store.remove_coupling(M, bc_id="b1") == 1
    assert store.couple(M, "b2", "d1") is True              # d1 is free again
    assert store.couple(M, "b1", "d3") is True              # and so is b1
    assert store.coupling_count(M) == 2
    store.record_intent(M, bc_id="b4", dv_id="d4")          # an unconfirmed intent
    assert store.couple(M, "b4", "d5") is True              # gives way to a coupling
    assert store.coupling(M, dv_id="d4") is None


def _skip(store: StateStore, bc_id: str, dv_id: str, message: str = "boom") -> None:
    store.couple(M, bc_id, dv_id)
    _fail(store, TO_DV, "j-old", message, bc_id=bc_id, dv_id=dv_id)
    assert _fail(store, TO_DV, "j-new", message, bc_id=bc_id, dv_id=dv_id) is True


def test_48_restore_and_restore_all(store: StateStore) -> None:
    _skip(store, "b1", "d1")
    _skip(store, "b2", "d2", "other")
    store.couple(M, "b3", "d3")
    frame = store.couplings(M)
    assert set(frame[frame["skipped"].astype(bool)]["bc_id"]) == {"b1", "b2"}
    assert store.counts(M) == {"couplings": 3, "skipped": 2, "failed": 0, "pending": 0,
                               "errors": 2}
    assert store.restore(M, bc_id="b3") == 0                # not skipped: nothing to do
    assert store.restore(M, dv_id="d1") == 1
    row = store.coupling(M, bc_id="b1")
    # The next run retries it (failed, not skipped) and one more failure does not skip it.
    assert row["skipped"] is False and row["to_dv_result"] == "failure"
    assert store.counts(M)["failed"] == 1 and store.counts(M)["errors"] == 1
    assert _fail(store, TO_DV, "j5", "boom", bc_id="b1", dv_id="d1") is False
    assert _fail(store, TO_DV, "j6", "boom", bc_id="b1", dv_id="d1") is True
    assert store.restore(M, all=True) == 2
    assert not store.couplings(M)["skipped"].astype(bool).any()
    assert store.counts(M)["skipped"] == 0
    with pytest.raises(ValueError):
        store.restore(M)


def test_coupling_lookup_and_search(store: StateStore) -> None:
    store.couple(M, "ABCDEF-1", "1234-x")
    store.couple(M, "abzzzz-2", "5678-y")
    store.couple(M, "q_1", "q%2")
    assert store.coupling(M, bc_id="ABCDEF-1")["dv_id"] == "1234-x"
    assert store.coupling(M, bc_id="nope") is None
    assert {r["bc_id"] for r in store.search_couplings(M, "ab", 10)} == {"ABCDEF-1", "abzzzz-2"}
    assert [r["bc_id"] for r in store.search_couplings(M, "5678", 10)] == ["abzzzz-2"]
    assert [r["bc_id"] for r in store.search_couplings(M, "q%", 10)] == ["q_1"]
    assert store.search_couplings(M, "%", 10) == []
    assert len(store.search_couplings(M, "", 2)) == 2
    assert store.search_couplings("OTHER", "ab", 10) == []
    found = store.search_couplings(M, "abc", 10)[0]
    assert found["created_at"].tzinfo is not None


def test_job_log_round_trip(store: StateStore) -> None:
    job = store.start_job(M, TO_DV, mode="modified", run_id="manual__1")
    store.update_job(job, inserted=2, failed=1, signpost=T0)
    store.finish_job(job, status="success", message="ok")
    row = store.job(job)
    assert row is not None
    assert (row["inserted"], row["failed"], row["status"]) == (2, 1, "success")
    assert row["signpost"] == T0 and row["started_at"].tzinfo is not None
    assert row["finished_at"] >= row["started_at"]
    assert [j["id"] for j in store.jobs(M)] == [job] and store.jobs("OTHER") == []


def test_errors_are_counted_and_resolved(store: StateStore) -> None:
    for job in ("j1", "j2"):
        store.record_error(M, TO_DV, job, source_id="b1", bc_id="b1", dv_id=None, message="A")
    errors = store.errors(M)
    assert len(errors) == 1 and errors[0]["attempts"] == 2 and errors[0]["job_id"] == "j2"
    assert errors[0]["first_seen"] <= errors[0]["last_seen"]
    assert store.last_errors(M, TO_DV, ["b1", "b2"]) == {"b1": "A"}
    store.resolve_errors(M, TO_DV, ["b1"])
    assert store.errors(M) == [] and len(store.errors(M, include_resolved=True)) == 1


def test_delete_jobs_older_than_keeps_jobs_of_skipped_couplings(store: StateStore) -> None:
    old = T0 - timedelta(days=400)
    referenced = store.start_job(M, TO_DV, mode="modified")
    stale = store.start_job(M, TO_DV, mode="modified")
    recent = store.start_job(M, TO_DV, mode="modified")
    for job in (referenced, stale):
        store.update_job(job, started_at=old)
    store.couple(M, "b1", "d1")
    _fail(store, TO_DV, stale, "A")  # error rows of the stale job go with it
    _fail(store, TO_DV, referenced, "A")
    assert store.coupling(M, bc_id="b1")["skipped"] is True
    store.record_error(M, TO_BC, stale, source_id="d7", bc_id=None, dv_id="d7", message="Z")
    assert store.delete_jobs_older_than(30) == 1
    assert {j["id"] for j in store.jobs(M)} == {referenced, recent}
    assert [e["job_id"] for e in store.errors(M, include_resolved=True)] == [referenced]
    store.restore(M, all=True)   # no longer referenced by a skipped coupling
    assert store.delete_jobs_older_than(30) == 1
    assert [j["id"] for j in store.jobs(M)] == [recent]


def test_retry_source_ids_in_sql(store: StateStore) -> None:
    """Failed (not skipped), pending, unknown-values couplings, and failed creates."""
    from bcdv.engine.retry_set import retry_source_ids
    from bcdv.state.store import Stamp

    ok = Stamp("bc-ok", "dv-ok", None, None, "h1", "h2")
    store.stamp_success("M", "to_dataverse", "job", ok)
    store.stamp_success("M", "to_dataverse", "job", Stamp("bc-f", "dv-f", None, None, "a", "b"))
    store.stamp_failure("M", "to_dataverse", "job", bc_id="bc-f", dv_id="dv-f")
    store.record_intent("M", bc_id="bc-p", dv_id="dv-p")
    store.couple("M", "bc-new", "dv-new")  # no hashes yet
    store.record_error("M", "to_dataverse", "job", source_id="bc-create", bc_id="bc-create",
                       dv_id=None, message="refused")
    assert retry_source_ids(store, "M", "to_dataverse", failed_creates=False) == {
        "bc-f", "bc-p", "bc-new"}
    assert retry_source_ids(store, "M", "to_dataverse", failed_creates=True) == {
        "bc-f", "bc-p", "bc-new", "bc-create"}
    # The other direction: nothing failed there; the fresh coupling's Dataverse side is unknown.
    assert retry_source_ids(store, "M", "to_business_central", failed_creates=True) == {
        "dv-p", "dv-new"}
