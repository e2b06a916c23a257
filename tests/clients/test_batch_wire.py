"""The batch wire format without a server: request bodies, response shapes, idempotency."""
from __future__ import annotations

import json
from typing import Any

import requests

from bcdv.clients.batch import BatchOp, bc_batch, dv_batch, op_is_idempotent

API = "https://org.example.com/api/data/v9.2"


class FakeHttp:
    """Records what would be sent and answers with canned responses."""

    def __init__(self, *answers: tuple[int, str, bytes]) -> None:
        self.answers = list(answers)
        self.calls: list[dict[str, Any]] = []

    def request(self, method: str, url: str, **kw: Any) -> requests.Response:
        self.calls.append({"method": method, "url": url, **kw})
        status, ctype, body = self.answers.pop(0)
        resp = requests.Response()
        resp.status_code, resp._content = status, body
        resp.headers["Content-Type"] = ctype
        return resp


def _part(status: str, body: str = "", cid: str | None = None, extra: str = "") -> str:
    head = "Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
    if cid:
        head += f"Content-ID: {cid}\r\n"
    return f"{head}\r\nHTTP/1.1 {status}\r\n{extra}Content-Type: application/json\r\n\r\n{body}"


def _multipart(*parts: str, boundary: str = "batchresponse_1") -> bytes:
    return ("".join(f"--{boundary}\r\n{p}\r\n" for p in parts) + f"--{boundary}--\r\n").encode()


ERR = json.dumps({"error": {"code": "0x80044331", "message": "too long"}})


def test_request_body_is_crlf_multipart_with_change_sets_and_content_ids() -> None:
    http = FakeHttp((200, "multipart/mixed; boundary=b", _multipart(
        "Content-Type: multipart/mixed; boundary=cs\r\n\r\n--cs\r\n"
        + _part("204 No Content", cid="1",
                extra=f"OData-EntityId: {API}/accounts(11111111-1111-1111-1111-111111111111)\r\n")
        + "\r\n--cs--", _part("200 OK", '{"value":[]}'), boundary="b")))
    res = dv_batch(http, API, [BatchOp("POST", "accounts", {"name": "a"}, changeset="x"),
                               BatchOp("GET", "accounts?$top=1")])
    call = http.calls[0]
    body = call["data"].decode()
    assert "\r\n" in body and "\n" not in body.replace("\r\n", "")
    assert f"POST {API}/accounts HTTP/1.1" in body and "Content-ID: 1" in body
    assert "Content-Type: application/json; type=entry" in body
    assert call["headers"]["Prefer"] == "odata.continue-on-error"
    assert call["idempotent"] is False  # a POST in it
    assert [r.state for r in res] == ["ok", "ok"]
    assert res[0].entity_id == "11111111-1111-1111-1111-111111111111"


def test_stop_response_with_the_earlier_parts_is_read_positionally() -> None:
    """The OData-standard shape (responses up to and including the failure) pins the failure."""
    http = FakeHttp((400, "multipart/mixed; boundary=batchresponse_1",
                     _multipart(_part("204 No Content"), _part("400 Bad Request", ERR))))
    ops = [BatchOp("PATCH", "accounts(1)", {"name": "a"}, {"If-Match": "*"})] * 3
    res = dv_batch(http, API, ops, continue_on_error=False)
    assert [r.state for r in res] == ["ok", "failed", "not_executed"]
    assert res[1].error_code == "0x80044331" and res[1].error_message == "too long"
    assert "Prefer" not in http.calls[0]["headers"] and http.calls[0]["idempotent"] is True


def test_a_lone_failing_part_that_names_its_content_id_is_pinned() -> None:
    http = FakeHttp((400, "multipart/mixed; boundary=batchresponse_1",
                     _multipart(_part("400 Bad Request", ERR, cid="2"))))
    ops = [BatchOp("POST", "accounts", {"name": "a"}, changeset="a"),
           BatchOp("POST", "accounts", {"name": "b"}, changeset="b"),
           BatchOp("POST", "accounts", {"name": "c"})]
    res = dv_batch(http, API, ops, continue_on_error=False)
    # Generated Content-IDs are the operation's position + 1: "2" names the second one.
    assert [r.state for r in res] == ["unknown", "failed", "not_executed"]
    assert res[0].error_message.startswith("applied before the failure")
    http.answers.append((400, "multipart/mixed; boundary=batchresponse_1",
                         _multipart(_part("400 Bad Request", ERR))))
    res = dv_batch(http, API, ops, continue_on_error=False)
    assert [r.state for r in res] == ["unknown"] * 3  # nothing names the failure
    assert all(r.error_code == "0x80044331" for r in res)


def test_idempotency_rules() -> None:
    assert op_is_idempotent(BatchOp("GET", "accounts"))
    assert op_is_idempotent(BatchOp("PATCH", "accounts(1)", {}))            # upsert by key
    assert op_is_idempotent(BatchOp("PATCH", "x", {}, {"If-Match": "*"}))
    assert not op_is_idempotent(BatchOp("PATCH", "accounts(1)", {}, {"If-None-Match": "*"}))
    assert not op_is_idempotent(BatchOp("POST", "accounts", {}))
    assert not op_is_idempotent(BatchOp("DELETE", "accounts(1)"))


def test_bc_request_shape_and_headers() -> None:
    body = json.dumps({"responses": [{"id": "0", "status": 204, "headers": {}}]}).encode()
    http = FakeHttp((200, "application/json", body))
    res = bc_batch(http, "https://bc/api/v2.0", [
        BatchOp("DELETE", "companies(c)/customers(1)", headers={"If-Match": "*"})],
        continue_on_error=False, isolation_snapshot=True)
    call = http.calls[0]
    assert call["url"] == "https://bc/api/v2.0/$batch"
    assert call["json"] == {"requests": [{"id": "0", "method": "DELETE",
                                          "url": "companies(c)/customers(1)",
                                          "headers": {"If-Match": "*"}}]}
    assert call["headers"]["Isolation"] == "snapshot" and "Prefer" not in call["headers"]
    assert call["headers"]["Accept"] == "application/json"
    assert res[0].ok and res[0].status == 204


def test_a_batch_answer_is_read_from_its_bytes_with_either_line_break() -> None:
    """The answer's parts are found in its bytes (RFC 2046: a delimiter line ``--boundary``
    at a line's start, the last ``--boundary--``), with CRLF as Dataverse sends
    (Learn: execute-batch-operations-using-web-api, "Batch responses") or bare LF; a line
    that only begins with the boundary belongs to the body it is in; a body that is not
    JSON stays text."""
    from bcdv.clients.batch import parse_dv_batch

    rows = json.dumps({"value": [{"name": "Ünïcode", "accountid": "1"}]})
    crlf = _multipart(
        _part("200 OK", rows, cid="1"),
        "Content-Type: multipart/mixed; boundary=cs_1\r\n\r\n--cs_1\r\n"
        + _part("204 No Content", cid="2") + "\r\n--cs_1--",
        _part("500 Internal Server Error", "oops\r\n--b_longer line of text"),
        boundary="b")
    for answer in (crlf, crlf.replace(b"\r\n", b"\n")):
        first, change_set, text = parse_dv_batch(answer, "multipart/mixed; boundary=b")
        assert not isinstance(first, list) and isinstance(change_set, list)
        assert not isinstance(text, list)
        assert (first.status, first.content_id, first.body) == (200, "1", json.loads(rows))
        assert [(p.status, p.content_id, p.body) for p in change_set] == [(204, "2", None)]
        assert text.status == 500 and text.body.splitlines() == ["oops",
                                                                 "--b_longer line of text"]
