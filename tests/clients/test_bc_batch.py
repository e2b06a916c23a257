"""Business Central JSON $batch through BusinessCentralClient.batch (reference A.11, D.13):
the creates and updates the engine sends, and the batch options."""
from __future__ import annotations

import uuid
from typing import Any

import pytest

from bcdv.clients import BusinessCentralClient
from bcdv.clients.batch import BatchOp, BatchResult
from bcdv.errors import FatalApiError

from .conftest import faults

TOO_LONG = "y" * 101  # customer.displayName holds 100
LENGTH_MESSAGE = ("The length of the string is 101, but it must be less than or equal to 100 "
                  f"characters. Value: {TOO_LONG}")


def _tag() -> str:
    return f"B{uuid.uuid4().hex[:10]}"


def _posts(bc: BusinessCentralClient, bodies: list[dict[str, Any]],
           **options: Any) -> list[BatchResult]:
    """POST each body as a new customer through one call of ``batch``."""
    return bc.batch([BatchOp("POST", bc.batch_url("customers"), b) for b in bodies], **options)


def _names(bc: BusinessCentralClient, tag: str) -> list[str]:
    rows = bc.list("customers", filter=f"startswith(displayName,'{tag}')",
                   select=["displayName"])
    return sorted(r["displayName"] for r in rows)


def test_continue_on_error_runs_everything_and_reports_each_failure(
        bc: BusinessCentralClient) -> None:
    tag = _tag()
    res = _posts(bc, [{"displayName": f"{tag}-1"},
                      {"displayName": TOO_LONG},
                      {"displayName": f"{tag}-3"}])
    assert [r.state for r in res] == ["ok", "failed", "ok"]
    assert res[0].status == 201 and res[0].body["displayName"] == f"{tag}-1"
    assert res[0].entity_id == res[0].body["id"]
    assert res[1].status == 400 and res[1].error_code == "Application_StringExceededLength"
    assert res[1].error_message.startswith(LENGTH_MESSAGE)
    assert _names(bc, tag) == [f"{tag}-1", f"{tag}-3"]


def test_stop_on_first_error_reports_the_rest_not_executed(bc: BusinessCentralClient) -> None:
    tag = _tag()
    res = _posts(bc, [{"displayName": f"{tag}-1"},
                      {"displayName": TOO_LONG},
                      {"displayName": f"{tag}-3"}],
                 continue_on_error=False)
    assert [r.state for r in res] == ["ok", "failed", "not_executed"]
    assert res[2].status == 0 and res[2].body is None
    assert _names(bc, tag) == [f"{tag}-1"]  # earlier successes are committed


def test_isolation_snapshot_rolls_back_the_whole_batch(bc: BusinessCentralClient) -> None:
    tag = _tag()
    res = _posts(bc, [{"displayName": f"{tag}-1"},
                      {"displayName": f"{tag}-2"},
                      {"displayName": TOO_LONG}],
                 isolation_snapshot=True)
    assert [r.state for r in res] == ["rolled_back", "rolled_back", "failed"]
    assert res[0].status == 201 and not res[0].ok
    assert _names(bc, tag) == []
    ok = _posts(bc, [{"displayName": f"{tag}-4"}], isolation_snapshot=True)
    assert ok[0].ok and _names(bc, tag) == [f"{tag}-4"]


def test_more_than_100_operations_are_split(bc: BusinessCentralClient) -> None:
    tag = _tag()
    before = bc.http.request_count
    res = _posts(bc, [{"displayName": f"{tag}-{i:03d}"} for i in range(150)])
    assert bc.http.request_count - before == 2
    assert len(res) == 150 and all(r.ok for r in res)
    assert [r.index for r in res] == list(range(150))
    assert len(_names(bc, tag)) == 150
    with pytest.raises(ValueError, match="snapshot"):
        _posts(bc, [{"displayName": "x"}] * 101, isolation_snapshot=True)


def test_stop_in_the_first_request_leaves_later_requests_unsent(
        bc: BusinessCentralClient) -> None:
    tag = _tag()
    ops = [BatchOp("POST", bc.batch_url("customers"), {"displayName": TOO_LONG})] + [
        BatchOp("POST", bc.batch_url("customers"), {"displayName": f"{tag}-{i}"})
        for i in range(3)]
    before = bc.http.request_count
    res = bc.batch(ops, continue_on_error=False, max_operations=2)
    assert bc.http.request_count - before == 1
    assert [r.state for r in res] == ["failed", "not_executed", "not_executed", "not_executed"]
    assert _names(bc, tag) == []


def test_patches_with_if_match_report_stale_etags(bc: BusinessCentralClient) -> None:
    tag = _tag()
    created = _posts(bc, [{"displayName": f"{tag}-1"},
                          {"displayName": f"{tag}-2"}])
    first, second = (r.body for r in created)
    bc.update("customers", second["id"], {"phoneNumber": "1"}, etag=second["@odata.etag"])
    res = bc.batch([
        BatchOp("PATCH", bc.batch_url("customers", first["id"]), {"phoneNumber": "10"},
                {"If-Match": first["@odata.etag"]}),
        BatchOp("PATCH", bc.batch_url("customers", second["id"]), {"phoneNumber": "20"},
                {"If-Match": second["@odata.etag"]}),   # stale now
    ])
    assert [r.state for r in res] == ["ok", "failed"]
    assert res[0].body["phoneNumber"] == "10"
    assert res[1].status == 409 and res[1].error_code == "Request_EntityChanged"
    missing = bc.batch([BatchOp("PATCH", bc.batch_url("customers", first["id"]),
                                {"phoneNumber": "3"})])
    assert missing[0].error_code == "BadRequest_InvalidToken"  # no If-Match: BC refuses


def test_reads_and_absolute_urls_in_a_batch(bc: BusinessCentralClient) -> None:
    tag = _tag()
    made = _posts(bc, [{"displayName": f"{tag}-1"}])[0]
    res = bc.batch([
        BatchOp("GET", bc.batch_url("customers", made.entity_id)),
        BatchOp("GET", bc.url("customers", str(uuid.uuid4()))),
    ])
    assert res[0].ok and res[0].body["displayName"] == f"{tag}-1"
    assert res[1].status == 404 and res[1].error_code == "BadRequest_ResourceNotFound"


def test_throttled_batch_is_retried_by_the_one_retry_layer(
        bc: BusinessCentralClient, ep: dict[str, Any]) -> None:
    tag = _tag()
    faults(ep, "business_central", {"next": [503], "retry_after": 1})
    try:
        before = bc.http.request_count
        res = _posts(bc, [{"displayName": f"{tag}-1"}])
        assert bc.http.request_count - before == 2 and res[0].ok
    finally:
        faults(ep, "business_central", None)
    assert _names(bc, tag) == [f"{tag}-1"]


def _stats(ep: dict[str, Any], method: str = "GET") -> dict[str, Any]:
    import requests

    from bcdv_emulators.cli import service_urls

    resp = requests.request(method, f"{service_urls(ep)['business_central']}/_emulator/stats",
                            verify=ep["ca_bundle"], timeout=30)
    resp.raise_for_status()
    return resp.json() if method == "GET" else {}


def test_several_tables_are_read_in_one_batch_and_further_pages_follow_their_links(
        bc: BusinessCentralClient, ep: dict[str, Any]) -> None:
    """``list_batched``: the first page of each table in one JSON $batch of GETs (Learn:
    business-central dynamics-batch-requests: a batch holds GET operations, up to 100), the
    pages after it through the answer's ``@odata.nextLink``, as ``list`` reads them."""
    reads = [("currencies", ["id", "code"]), ("paymentTerms", None), ("customers", ["id"])]
    alone = [bc.list(entity_set, select=select) for entity_set, select in reads]
    assert len(alone[2]) > 3  # the demo data has customers enough for several pages of 3
    _stats(ep, "DELETE")
    together = bc.list_batched(reads, page_size=3)
    kinds = _stats(ep)["by_kind"]
    assert together == alone
    pages = -(-len(alone[2]) // 3) - 1 + sum(-(-len(t) // 3) - 1 for t in alone[:2])
    assert kinds["batch"]["requests"] == 1, kinds
    assert kinds["get_page"]["requests"] == pages, kinds


def test_a_table_the_batch_cannot_read_names_itself(bc: BusinessCentralClient) -> None:
    with pytest.raises(FatalApiError) as caught:
        bc.list_batched([("currencies", None), ("nosuchtables", None)])
    assert caught.value.status == 404 and "nosuchtables" in str(caught.value)
