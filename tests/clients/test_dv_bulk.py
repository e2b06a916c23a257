"""Dataverse bulk messages and the per-row fallback (reference B.12, D.24)."""
from __future__ import annotations

import uuid
from typing import Any

import pytest

from bcdv.clients import DataverseClient
from bcdv.errors import FatalApiError

from .test_dv_batch import LENGTH_MESSAGE, TOO_LONG, _names, _tag


def test_create_multiple_round_trip_in_chunks(dv: DataverseClient) -> None:
    tag = _tag()
    rows = [{"name": f"{tag}-{i}", "telephone1": f"555-{i}"} for i in range(5)]
    before = dv.http.request_count
    ids = dv.create_multiple("accounts", "account", rows, chunk_size=2)
    assert dv.http.request_count - before == 3
    assert len(ids) == 5 and len(set(ids)) == 5
    got = {r["accountid"]: r for r in dv.get_many("accounts", "accountid", ids,
                                                  select=["name", "telephone1"])}
    assert [got[i]["name"] for i in ids] == [r["name"] for r in rows]


def test_create_multiple_is_all_or_nothing(dv: DataverseClient) -> None:
    tag = _tag()
    with pytest.raises(FatalApiError) as info:
        dv.create_multiple("accounts", "account", [{"name": f"{tag}-1"}, {"name": TOO_LONG}])
    assert info.value.code == "0x80044331"
    assert _names(dv, tag) == []


def test_upsert_and_update_multiple_round_trip(dv: DataverseClient) -> None:
    tag = _tag()
    existing = dv.create_multiple("accounts", "account", [{"name": f"{tag}-old"}])[0]
    new_id = str(uuid.uuid4())
    ids = dv.upsert_multiple("accounts", "account", [
        {"accountid": existing, "name": f"{tag}-old-upserted"},
        {"accountid": new_id, "name": f"{tag}-new"},
    ])
    # The service answers 204 without a body; the ids are the ones the rows addressed.
    assert ids == [existing, new_id]
    dv.update_multiple("accounts", "account", [{"accountid": new_id, "telephone1": "42"}])
    row = dv.get("accounts", new_id, select=["name", "telephone1"])
    assert row and row["name"] == f"{tag}-new" and row["telephone1"] == "42"
    assert _names(dv, tag) == [f"{tag}-new", f"{tag}-old-upserted"]


def _summary(results: list[Any]) -> list[tuple[bool, str]]:
    return [(r.ok, r.via) for r in results]


def test_write_rows_create_falls_back_to_per_record_results(dv: DataverseClient) -> None:
    tag = _tag()
    rows = [{"name": f"{tag}-0"}, {"name": f"{tag}-1"},      # chunk 1: bulk succeeds
            {"name": f"{tag}-2"}, {"name": TOO_LONG}]          # chunk 2: rejected -> $batch
    res = dv.write_rows("create", "accounts", "account", rows, chunk_size=2)
    assert _summary(res) == [(True, "bulk"), (True, "bulk"), (True, "batch"), (False, "batch")]
    assert [r.index for r in res] == [0, 1, 2, 3]
    assert res[3].status == 400 and res[3].error_code == "0x80044331"
    assert res[3].error_message == LENGTH_MESSAGE and res[3].id is None
    assert all(r.id for r in res[:3])
    assert _names(dv, tag) == [f"{tag}-0", f"{tag}-1", f"{tag}-2"]


def test_write_rows_upsert_and_update_isolate_bad_rows(dv: DataverseClient) -> None:
    tag = _tag()
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    res = dv.write_rows("upsert", "accounts", "account", [
        {"accountid": a, "name": f"{tag}-a"},
        {"accountid": b, "name": TOO_LONG},
    ])
    assert _summary(res) == [(True, "batch"), (False, "batch")]
    assert res[0].id == a and res[1].error_message == LENGTH_MESSAGE
    missing = str(uuid.uuid4())
    res = dv.write_rows("update", "accounts", "account", [
        {"accountid": a, "telephone1": "7"},
        {"accountid": missing, "telephone1": "8"},   # update-only: never creates
    ])
    assert _summary(res) == [(True, "batch"), (False, "batch")]
    assert res[1].status == 404 and res[1].error_code == "0x80040217"
    assert dv.get("accounts", missing) is None
    row = dv.get("accounts", a, select=["telephone1"])
    assert row and row["telephone1"] == "7"
    ok = dv.write_rows("update", "accounts", "account", [{"accountid": a, "telephone1": "9"}])
    assert _summary(ok) == [(True, "bulk")]


def test_write_rows_rejects_unknown_messages(dv: DataverseClient) -> None:
    with pytest.raises(ValueError):
        dv.write_rows("delete", "accounts", "account", [{"accountid": str(uuid.uuid4())}])


def test_write_rows_all_good_goes_through_the_bulk_message_once(dv: DataverseClient) -> None:
    tag = _tag()
    ids = [str(uuid.uuid4()) for _ in range(3)]
    before = dv.http.request_count
    res = dv.write_rows("upsert", "accounts", "account",
                        [{"accountid": i, "name": f"{tag}-{n}"} for n, i in enumerate(ids)])
    assert dv.http.request_count - before == 1
    assert _summary(res) == [(True, "bulk")] * 3 and [r.id for r in res] == ids
    chosen = str(uuid.uuid4())  # client-chosen id on create (exactly-once creates)
    made = dv.write_rows("create", "accounts", "account",
                         [{"accountid": chosen, "name": f"{tag}-c"}])
    assert made[0].ok and made[0].id == chosen


def test_upsert_by_odata_id_reports_the_addressed_ids(dv: DataverseClient) -> None:
    """UpsertMultiple answers 204 No Content (Learn: webapi/reference/upsertmultiple): the
    row ids come from what was sent (``@odata.id``), not from a response body."""
    tag = _tag()
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    rows = [{"@odata.id": f"accounts({a})", "name": f"{tag}-a"},
            {"@odata.id": f"/accounts(accountid={b.upper()})", "name": f"{tag}-b"}]
    assert dv.upsert_multiple("accounts", "account", rows) == [a, b]
    res = dv.write_rows("upsert", "accounts", "account", rows)
    assert _summary(res) == [(True, "bulk")] * 2 and [r.id for r in res] == [a, b]
    assert _names(dv, tag) == [f"{tag}-a", f"{tag}-b"]
