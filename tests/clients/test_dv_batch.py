"""Dataverse $batch through DataverseClient.batch against the emulator (reference B.11, D.23)."""
from __future__ import annotations

import uuid
from typing import Any

import pytest

from bcdv.clients import DataverseClient
from bcdv.clients.batch import BatchOp
from bcdv.errors import FatalApiError

from .conftest import faults

TOO_LONG = "x" * 161  # account.name holds 160
LENGTH_MESSAGE = ("A validation error occurred.  The length of the 'name' attribute of the "
                  "'account' entity exceeded the maximum allowed length of '160'.")


def _names(dv: DataverseClient, prefix: str) -> list[str]:
    rows = dv.list("accounts", filter=f"startswith(name,'{prefix}')", select=["name"])
    return sorted(r["name"] for r in rows)


def _tag() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


def test_change_set_rolls_back_when_one_operation_fails(dv: DataverseClient) -> None:
    tag = _tag()
    ops = [BatchOp("POST", "accounts", {"name": f"{tag}-a"}, changeset="cs1"),
           BatchOp("POST", "accounts", {"name": TOO_LONG}, changeset="cs1"),
           BatchOp("POST", "accounts", {"name": f"{tag}-after"})]
    res = dv.batch(ops)
    assert [r.index for r in res] == [0, 1, 2]
    assert not res[0].ok and not res[1].ok
    assert {res[0].state, res[1].state} <= {"failed", "rolled_back"}
    assert res[1].error_code == "0x80044331" and res[1].error_message == LENGTH_MESSAGE
    assert res[2].ok and res[2].status == 204 and res[2].entity_id
    assert _names(dv, tag) == [f"{tag}-after"]  # the change set left nothing behind


def test_committed_change_set_reports_each_operation_and_resolves_content_ids(
        dv: DataverseClient) -> None:
    tag = _tag()
    ops = [BatchOp("POST", "accounts", {"name": f"{tag}-parent"}, content_id="1"),
           BatchOp("POST", "contacts", {"lastname": f"{tag}-child",
                                        "parentcustomerid_account@odata.bind": "$1"},
                   content_id="2")]
    res = dv.batch(ops, atomic=True)
    assert all(r.ok and r.status == 204 for r in res)
    assert [r.content_id for r in res] == ["1", "2"]
    contact = dv.get("contacts", res[1].entity_id or "",
                     select=["_parentcustomerid_value"])
    assert contact and contact["_parentcustomerid_value"] == res[0].entity_id


def test_continue_on_error_isolates_the_bad_row_with_the_api_message(
        dv: DataverseClient) -> None:
    tag = _tag()
    ops = [BatchOp("POST", "accounts", {"name": f"{tag}-1"}),
           BatchOp("POST", "accounts", {"name": TOO_LONG}),
           BatchOp("POST", "accounts", {"name": f"{tag}-3"},
                   {"Prefer": "return=representation"}),
           BatchOp("GET", f"accounts({uuid.uuid4()})")]
    res = dv.batch(ops, continue_on_error=True)
    assert [r.state for r in res] == ["ok", "failed", "ok", "failed"]
    assert res[1].status == 400 and res[1].error_code == "0x80044331"
    assert res[1].error_message == LENGTH_MESSAGE
    assert res[2].status == 201 and isinstance(res[2].body, dict)
    assert res[2].body["name"] == f"{tag}-3" and res[2].body["accountid"]
    assert res[3].status == 404 and res[3].error_code == "0x80040217"
    assert _names(dv, tag) == [f"{tag}-1", f"{tag}-3"]


def test_stop_on_first_error_reports_later_operations_not_executed(
        dv: DataverseClient) -> None:
    tag = _tag()
    ops = [BatchOp("POST", "accounts", {"name": f"{tag}-1"}),
           BatchOp("POST", "accounts", {"name": TOO_LONG}),
           BatchOp("POST", "accounts", {"name": f"{tag}-3"}),
           BatchOp("POST", "accounts", {"name": f"{tag}-4"})]
    # One operation per request: each answer is unambiguous.
    res = dv.batch(ops, continue_on_error=False, max_parts=1)
    assert [r.state for r in res] == ["ok", "failed", "not_executed", "not_executed"]
    assert res[1].error_message == LENGTH_MESSAGE and res[3].status == 0
    assert _names(dv, tag) == [f"{tag}-1"]


def test_stop_on_first_error_in_one_request_never_claims_success(dv: DataverseClient) -> None:
    """Documented shape: the outer status is the failure's and only the failing part comes
    back, so the client cannot tell which operation failed: nothing is reported ok, nothing
    is reported safe to resend, and the service's message is kept."""
    tag = _tag()
    ops = [BatchOp("POST", "accounts", {"name": f"{tag}-1"}),
           BatchOp("POST", "accounts", {"name": TOO_LONG}),
           BatchOp("POST", "accounts", {"name": f"{tag}-3"})]
    res = dv.batch(ops, continue_on_error=False)
    assert [r.state for r in res] == ["unknown", "unknown", "unknown"]
    assert all(r.error_code == "0x80044331" for r in res)
    assert _names(dv, tag) == [f"{tag}-1"]  # the service ran the first, stopped at the second


def test_stop_on_first_error_later_requests_are_not_sent(dv: DataverseClient) -> None:
    tag = _tag()
    ops = [BatchOp("POST", "accounts", {"name": TOO_LONG})] + [
        BatchOp("POST", "accounts", {"name": f"{tag}-{i}"}) for i in range(4)]
    before = dv.http.request_count
    res = dv.batch(ops, continue_on_error=False, max_parts=2)
    assert dv.http.request_count - before == 1
    assert [r.state for r in res[2:]] == ["not_executed"] * 3
    assert _names(dv, tag) == []


def test_more_than_1000_operations_are_split(dv: DataverseClient) -> None:
    tag = _tag()
    ops = [BatchOp("POST", "accounts", {"name": f"{tag}-{i:04d}"}) for i in range(1001)]
    before = dv.http.request_count
    res = dv.batch(ops)
    assert dv.http.request_count - before == 2
    assert len(res) == 1001 and all(r.ok for r in res)
    assert len({r.entity_id for r in res}) == 1001
    assert len(_names(dv, tag)) == 1001


def test_a_change_set_is_never_split_across_requests(dv: DataverseClient) -> None:
    tag = _tag()
    ops = [BatchOp("POST", "accounts", {"name": f"{tag}-0"})] + [
        BatchOp("POST", "accounts", {"name": f"{tag}-cs{i}"}, changeset="a") for i in range(3)]
    before = dv.http.request_count
    res = dv.batch(ops, max_parts=3)
    assert dv.http.request_count - before == 2 and all(r.ok for r in res)
    with pytest.raises(ValueError, match="change set"):
        dv.batch(ops[1:], max_parts=2)
    with pytest.raises(ValueError, match="GET"):
        dv.batch([BatchOp("GET", "accounts")], atomic=True)


def test_throttled_batch_is_retried_by_the_one_retry_layer(
        dv: DataverseClient, ep: dict[str, Any]) -> None:
    tag = _tag()
    faults(ep, "dataverse", {"next": [429], "retry_after": 1})
    try:
        before = dv.http.request_count
        res = dv.batch([BatchOp("POST", "accounts", {"name": f"{tag}-1"})])
        assert dv.http.request_count - before == 2 and res[0].ok
    finally:
        faults(ep, "dataverse", None)
    assert _names(dv, tag) == [f"{tag}-1"]


def test_a_rejected_batch_raises_the_service_error(dv: DataverseClient) -> None:
    with pytest.raises(FatalApiError) as info:
        dv.http.request("POST", f"{dv.settings.api_url}/$batch", data=b"--x--",
                        headers={"Content-Type": "multipart/mixed; boundary=y"})
    assert info.value.status == 400


def test_whoami_and_tables_come_in_one_batch_with_further_pages_by_their_links(
        dv: DataverseClient) -> None:
    """``whoami_and_tables``: WhoAmI and the first page of each table in one ``$batch``
    (Learn: execute-batch-operations-using-web-api: GET requests go outside change sets;
    ``Prefer: odata.maxpagesize`` on each), the pages after it by ``@odata.nextLink``; the
    same rows as ``list`` and the same user as ``whoami``, and the answer's clock."""
    reads = [("transactioncurrencies", ["transactioncurrencyid", "isocurrencycode"]),
             ("accounts", ["accountid", "name"])]
    alone = [dv.list(entity_set, select=select) for entity_set, select in reads]
    assert len(alone[1]) > 3  # the demo data has accounts enough for several pages of 3
    who, together, answered = dv.whoami_and_tables(reads, page_size=3)
    assert who["UserId"] == dv.whoami()["UserId"]
    assert together == alone
    assert answered is not None and answered.tzinfo is not None


def test_a_table_the_signpost_batch_cannot_read_names_itself(dv: DataverseClient) -> None:
    with pytest.raises(FatalApiError) as caught:
        dv.whoami_and_tables([("transactioncurrencies", None), ("nosuchtables", None)])
    assert caught.value.status == 404 and "reading nosuchtables" in str(caught.value)
