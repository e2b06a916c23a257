"""Set-based state writes (issue 14): ``stamp_many`` and ``record_intents`` write a whole
batch in a few statements, and leave every row exactly as the row-by-row writes
(``stamp_success``, ``record_intent``) leave it: baselines only move forward (MAX), a
pending intent becomes the coupling, intents that claimed one of the ids are void, a
resent Business Central create keeps the time it was first sent. On SQLite and
PostgreSQL (``backend_url``)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

from bcdv.state import Stamp, StateStore
from bcdv.state.store import intent_attempts, intent_of

T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)
TO_DV, TO_BC = "to_dataverse", "to_business_central"
KEEP = ("bc_id", "dv_id", "bc_modified", "dv_modified", "bc_hash", "dv_hash", "synced",
        "to_dv_result", "to_bc_result", "to_dv_job", "to_bc_job", "skipped", "pending")


def _stamp(bc_id: str, dv_id: str, at: datetime) -> Stamp:
    return Stamp(bc_id=bc_id, dv_id=dv_id, bc_modified=at, dv_modified=at,
                 bc_hash=f"h-{bc_id}", dv_hash=f"h-{dv_id}", synced=json.dumps({"n": bc_id}))


def _prepare(store: StateStore, m: str) -> None:
    """Every kind of row a batch of stamps meets."""
    store.couple(m, "b1", "d1")
    store.stamp_success(m, TO_DV, "old", _stamp("b1", "d1", T0 + timedelta(hours=1)))
    store.couple(m, "b2", "d2")
    store.stamp_success(m, TO_DV, "old", _stamp("b2", "d2", T0 - timedelta(hours=1)))
    store.record_intent(m, bc_id="b3", dv_id="d3")       # a Dataverse create's intent
    store.record_intent(m, bc_id=None, dv_id="d4")       # a Business Central create's intent
    store.record_intent(m, bc_id="b5", dv_id="d5x")      # resumed under another id ...
    store.record_intent(m, bc_id=None, dv_id="d5")       # ... both intents claim the pair
    store.couple(m, "b6", "d6")
    store.record_intent(m, bc_id=None, dv_id="d6x")


def _rows(store: StateStore, m: str) -> list[dict[str, Any]]:
    frame = store.couplings(m).sort_values(["bc_id", "dv_id"], na_position="last")
    return [{k: (None if v != v else v) for k, v in row.items() if k in KEEP}  # NaN -> None
            for row in frame.to_dict("records")]


def test_stamp_many_leaves_the_rows_the_row_by_row_stamps_leave(store: StateStore) -> None:
    stamps = [_stamp("b1", "d1", T0), _stamp("b2", "d2", T0), _stamp("b3", "d3", T0),
              _stamp("b4", "d4", T0), _stamp("b5", "d5", T0), _stamp("b6", "d6", T0),
              _stamp("b7", "d7", T0)]
    for m in ("ONE", "MANY"):
        _prepare(store, m)
    for s in stamps:
        store.stamp_success("ONE", TO_DV, "job", s)
    store.stamp_many("MANY", TO_DV, "job", stamps)
    many = _rows(store, "MANY")
    assert many == _rows(store, "ONE")
    by_bc = {r["bc_id"]: r for r in many}
    assert by_bc["b1"]["bc_modified"] == T0 + timedelta(hours=1)   # never backwards
    assert by_bc["b2"]["bc_modified"] == T0                        # forwards
    assert by_bc["b7"]["to_dv_result"] == "success" and by_bc["b7"]["to_bc_result"] == ""
    assert store.coupling("MANY", dv_id="d5x") is None              # the void intent
    assert store.coupling("MANY", dv_id="d6x")["pending"] is True   # not claimed: kept
    assert not any(r["pending"] for r in many if r["bc_id"])


def test_a_batch_naming_one_record_twice_is_stamped_in_order(store: StateStore) -> None:
    later = T0 + timedelta(minutes=5)
    stamps = [_stamp("b1", "d1", later), _stamp("b1", "d1", T0), _stamp("b9", "d9", T0)]
    for s in stamps:
        store.stamp_success("ONE", TO_BC, "job", s)
    store.stamp_many("MANY", TO_BC, "job", stamps)
    assert _rows(store, "MANY") == _rows(store, "ONE")
    assert store.coupling("MANY", bc_id="b1")["dv_modified"] == later


def test_record_intents_in_one_batch_keep_the_first_send_time(store: StateStore) -> None:
    store.record_intents("CUSTOMER", [(None, "d1", {"displayName": "A"})])
    first = intent_of(store.coupling("CUSTOMER", dv_id="d1")["synced"])["since"]
    store.couple("CUSTOMER", "b3", "d3")
    store.record_intents("CUSTOMER", [(None, "d1", {"displayName": "A2"}),
                                      (None, "d2", {"displayName": "B"})])
    intent = intent_of(store.coupling("CUSTOMER", dv_id="d1")["synced"])
    assert intent["sent"] == {"displayName": "A2"} and intent["since"] == first
    # Both attempts are kept: the lost create may be the first, made from older values.
    assert [a["sent"] for a in intent_attempts(intent)] == [{"displayName": "A"},
                                                       {"displayName": "A2"}]
    assert intent_of(store.coupling("CUSTOMER", dv_id="d2")["synced"])["sent"] == {
        "displayName": "B"}
    # Dataverse creates (our ids): keyed by the BC id, as record_intent does.
    pairs = [("b1", "x1"), ("b2", "x2"), ("b3", "x3")]
    store.record_intents("CUSTOMER", pairs)
    for bc_id, dv_id in pairs:
        row = store.coupling("CUSTOMER", bc_id=bc_id)
        assert row["dv_id"] == dv_id and row["pending"] is True
    assert store.coupling_count("CUSTOMER") == 0 and len(store.couplings("CUSTOMER")) == 5


def test_stamps_of_fresh_intents_leave_the_rows_the_usual_stamps_leave(
        store: StateStore) -> None:
    # A full sync's Dataverse creates: record_intents names the intents it made as new rows
    # (both ids ours), and stamp_many confirms those by their ids without a SELECT (on
    # SQLite); the rows end as the usual stamps leave them, on every backend.
    pairs = [("b1", "x1", {"name": "A"}), ("b2", "x2", {"name": "B"})]
    for m in ("ONE", "MANY"):
        store.couple(m, "b3", "x3")                       # a coupling: not fresh
        store.record_intent(m, bc_id="b4", dv_id="x4")    # an earlier run's intent: not fresh
    fresh = store.record_intents("MANY", [*pairs, ("b3", "x3"), ("b4", "x4")])
    store.record_intents("ONE", [*pairs, ("b3", "x3"), ("b4", "x4")])
    assert fresh == {("b1", "x1"), ("b2", "x2")}
    stamps = [_stamp(b, d, T0) for b, d in (("b1", "x1"), ("b2", "x2"), ("b3", "x3"),
                                             ("b4", "x4"))]
    for s in stamps:
        store.stamp_success("ONE", TO_DV, "job", s)
    store.stamp_many("MANY", TO_DV, "job", stamps, fresh=fresh)
    assert _rows(store, "MANY") == _rows(store, "ONE")
    assert not any(r["pending"] for r in _rows(store, "MANY"))
    assert store.coupling("MANY", bc_id="b1")["bc_modified"] == T0


def test_a_fresh_intent_that_is_not_where_it_was_is_stamped_the_usual_way(
        store: StateStore) -> None:
    # Between intent and stamp the row of one fresh intent was confirmed already (a stamp
    # applied twice) and another's was removed: the fast UPDATE does not find them all, and
    # every stamp goes the usual way, as stamp_success would leave the rows.
    fresh = store.record_intents("MANY", [("b1", "x1"), ("b2", "x2"), ("b3", "x3")])
    store.record_intents("ONE", [("b1", "x1"), ("b2", "x2"), ("b3", "x3")])
    for m in ("ONE", "MANY"):
        store.stamp_success(m, TO_DV, "earlier", _stamp("b1", "x1", T0 + timedelta(hours=1)))
        store.remove_coupling(m, bc_id="b2")
    stamps = [_stamp(b, d, T0) for b, d in (("b1", "x1"), ("b2", "x2"), ("b3", "x3"))]
    for s in stamps:
        store.stamp_success("ONE", TO_DV, "job", s)
    store.stamp_many("MANY", TO_DV, "job", stamps, fresh=fresh)
    assert _rows(store, "MANY") == _rows(store, "ONE")
    # The baseline a stamp set before is kept by MAX, not overwritten by the fast path.
    assert store.coupling("MANY", bc_id="b1")["bc_modified"] == T0 + timedelta(hours=1)
    assert store.coupling("MANY", bc_id="b2")["pending"] is False


def test_an_intent_stores_its_payload_once_and_reads_those_stored_before() -> None:
    from types import SimpleNamespace

    from bcdv.state.store import intent_doc

    sent, source = {"name": "A2"}, {"values": {"name": "A2"}, "modified": None, "hash": "h"}
    # An intent as stored before 'earlier' (every attempt in 'attempts', the last one too).
    old = json.dumps({"intent": {"sent": {"name": "A"}, "source": None, "since": "T0",
                                 "attempts": [{"sent": {"name": "A"}, "source": None}]}})
    doc = intent_doc(SimpleNamespace(synced=old, pending=True), sent, source, T0)
    intent = intent_of(doc)
    assert intent_attempts(intent) == [{"sent": {"name": "A"}, "source": None},
                                       {"sent": sent, "source": source}]
    assert intent["since"] == "T0" and doc.count('"A2"') == 2  # sent and source, once each
    # A resend of the same payload is one attempt; at most five are kept, oldest dropped.
    for i in range(7):
        doc = intent_doc(SimpleNamespace(synced=doc, pending=True), {"name": f"v{i}"},
                         None, T0)
    doc = intent_doc(SimpleNamespace(synced=doc, pending=True), {"name": "v6"}, None, T0)
    assert [a["sent"]["name"] for a in intent_attempts(intent_of(doc))] == [
        "v2", "v3", "v4", "v5", "v6"]
