"""Dataverse ``$batch``: multipart/mixed with change sets, Content-ID references.

- Parts run in order; a change set runs in one transaction (any failure rolls it back) and
  may not contain GET; ``$n`` refers to the entity created by the part with Content-ID n
  (in URLs and in ``@odata.bind`` values) within the same change set.
- Without ``Prefer: odata.continue-on-error`` processing stops at the first failure and the
  response is that failure alone, with its status as the outer status; with it the outer
  status is 200 and failures are inline.
- More than 1000 requests -> 400 (text unverified, reference E).
"""
from __future__ import annotations

import re
import uuid
from collections import Counter
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from bcdv_emulators.base import Req, Resp, rows_of
from bcdv_emulators.dv.values import DVError, error_resp

if TYPE_CHECKING:
    from bcdv_emulators.dv.service import DVService

MAX_PARTS = 1000
BOUNDARY_RE = re.compile(r'boundary="?([^";]+)"?', re.I)


class _Tally:
    """Operations run (by method) and rows read/written, for the statistics."""

    def __init__(self) -> None:
        self.ops: Counter[str] = Counter()
        self.read = self.written = 0

    def add(self, method: str, resp: Resp) -> Resp:
        """Count one operation; returns ``resp``."""
        self.ops[method] += 1
        read, written = rows_of(method, resp)
        self.read += read
        self.written += written
        return resp

    def stamp(self, resp: Resp) -> Resp:
        """Put the totals on the outer response."""
        resp.read_rows, resp.write_rows, resp.ops = self.read, self.written, self.ops
        return resp


class _Rollback(Exception):
    def __init__(self, resp: Resp) -> None:
        super().__init__("rollback")
        self.resp = resp


def _split(body: bytes, boundary: str) -> list[bytes]:
    delim = b"--" + boundary.encode()
    if delim + b"--" not in body:
        raise DVError(400, "0x80040203", "The batch request body is malformed: missing the "
                                         "closing boundary.")
    chunks = body.split(delim)
    parts = []
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            break
        parts.append(chunk.strip(b"\r\n"))
    return parts


def _headers_and_body(blob: bytes) -> tuple[dict[str, str], bytes]:
    text = blob.replace(b"\r\n", b"\n")
    head, _, rest = text.partition(b"\n\n")
    headers: dict[str, str] = {}
    for line in head.decode("utf-8", "replace").split("\n"):
        if ":" in line:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
    return headers, rest


def _parse_request(blob: bytes) -> tuple[str, str, dict[str, str], bytes]:
    mime, inner = _headers_and_body(blob)
    if "application/http" not in mime.get("content-type", "").lower():
        raise DVError(400, "0x80040203", "Each batch part must have Content-Type "
                                         "application/http.")
    inner = inner.replace(b"\r\n", b"\n")
    line, _, rest = inner.partition(b"\n")
    text = line.decode("utf-8", "replace").strip()
    method, _, target = text.partition(" ")
    target = re.sub(r"\s+HTTP/\d\.\d$", "", target).strip()
    bits = [method, target] if target else [method]
    if len(bits) < 2 or bits[0].upper() not in ("GET", "POST", "PATCH", "PUT", "DELETE"):
        raise DVError(400, "0x80040203", "The batch part does not contain a valid HTTP request "
                                         "line.")
    headers, body = _headers_and_body(rest if b"\n\n" in rest or not rest else rest + b"\n\n")
    if "content-id" in mime and "content-id" not in headers:
        headers["content-id"] = mime["content-id"]
    return bits[0].upper(), bits[1], headers, body.strip(b"\n")


def _http_part(resp: Resp, content_id: str | None = None) -> str:
    lines = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    if content_id is not None:
        lines.append(f"Content-ID: {content_id}")
    reason = HTTPStatus(resp.status).phrase if resp.status in HTTPStatus._value2member_map_ \
        else ""
    lines += ["", f"HTTP/1.1 {resp.status} {reason}"]
    for k, v in resp.headers:
        lines.append(f"{k}: {v}")
    eid = resp.header("OData-EntityId")
    if eid and not resp.header("Location"):
        lines.append(f"Location: {eid}")
    lines += ["", resp.body.decode("utf-8")]
    return "\r\n".join(lines)


def run_batch(svc: DVService, req: Req, api: str) -> Resp:
    """Execute a multipart batch."""
    if req.method != "POST":
        raise DVError(405, "0x80060888", "The $batch endpoint only accepts POST.")
    m = BOUNDARY_RE.search(req.header("content-type") or "")
    if not m or "multipart/mixed" not in (req.header("content-type") or "").lower():
        raise DVError(400, "0x80040203", "The batch request must have a multipart/mixed "
                                         "Content-Type with a boundary.")
    parts = _split(req.body, m.group(1))
    total = 0
    plan: list[Any] = []
    for part in parts:
        mime, inner = _headers_and_body(part)
        cm = BOUNDARY_RE.search(mime.get("content-type", ""))
        if "multipart/mixed" in mime.get("content-type", "").lower() and cm:
            reqs = [_parse_request(p) for p in _split(inner.replace(b"\n", b"\r\n"),
                                                      cm.group(1))]
            total += len(reqs)
            plan.append(reqs)
        else:
            plan.append(_parse_request(part))
            total += 1
    if total > MAX_PARTS:
        raise DVError(400, "0x80040203", f"The number of requests in the batch ({total}) "
                                         f"exceeds the limit of {MAX_PARTS}.")
    continue_on_error = "odata.continue-on-error" in req.prefer()
    out: list[str] = []
    boundary = f"batchresponse_{uuid.uuid4()}"
    tally = _Tally()
    for item in plan:
        if isinstance(item, list):
            resp, body = _changeset(svc, req, api, item, tally)
        else:
            resp = tally.add(item[0], _execute(svc, req, api, *item, ids={}))
            body = _http_part(resp)
        if resp.status >= 400 and not continue_on_error:
            return tally.stamp(_multipart(resp.status, boundary, [body]))
        out.append(body)
    return tally.stamp(_multipart(200, boundary, out))


def _multipart(status: int, boundary: str, parts: list[str]) -> Resp:
    text = "".join(f"--{boundary}\r\n{p}\r\n" for p in parts) + f"--{boundary}--\r\n"
    return Resp(status, text.encode(), [("Content-Type",
                                         f"multipart/mixed; boundary={boundary}")], "$batch")


def _changeset(svc: DVService, req: Req, api: str,
               reqs: list[tuple[str, str, dict[str, str], bytes]],
               tally: _Tally) -> tuple[Resp, str]:
    ids: dict[str, str] = {}
    results: list[tuple[Resp, str | None]] = []
    try:
        with svc.db.tx():
            for method, url, headers, body in reqs:
                cid = headers.get("content-id")
                if method == "GET":
                    raise _Rollback(error_resp(400, "0x80040203", "GET requests are not "
                                                                  "allowed inside a change "
                                                                  "set."))
                resp = tally.add(method, _execute(svc, req, api, method, url, headers, body,
                                                  ids))
                if resp.status >= 400:
                    raise _Rollback(resp)
                eid = resp.header("OData-EntityId")
                if cid and eid:
                    ids[f"${cid}"] = eid
                elif cid and resp.status in (200, 201):
                    loc = resp.header("OData-EntityId")
                    if loc:
                        ids[f"${cid}"] = loc
                results.append((resp, cid))
    except _Rollback as rb:
        return rb.resp, _http_part(rb.resp)
    inner = f"changesetresponse_{uuid.uuid4()}"
    text = "".join(f"--{inner}\r\n{_http_part(r, cid)}\r\n" for r, cid in results)
    text += f"--{inner}--"
    return Resp(200), f"Content-Type: multipart/mixed; boundary={inner}\r\n\r\n{text}"


def _execute(svc: DVService, outer: Req, api: str, method: str, url: str,
             headers: dict[str, str], body: bytes, ids: dict[str, str]) -> Resp:
    """Run one inner request through the normal dispatcher."""
    for ref, target in ids.items():
        if url.startswith(ref):
            url = target + url[len(ref):]
        body = body.replace(f'"{ref}"'.encode(), f'"{target}"'.encode())
    if url.startswith("$") and url.split("/")[0] not in ids:
        return error_resp(400, "0x80040203", f"Content-ID reference '{url.split('/')[0]}' was "
                                             "not found in the change set.")
    parts = urlsplit(url)
    path = parts.path
    api_path = urlsplit(api).path
    if path.startswith(api_path):
        rest = path[len(api_path):].lstrip("/")
    elif path.startswith("/"):
        return error_resp(404, "0x8006088a", f"Resource not found for the segment '{path}'.")
    else:
        rest = path
    if rest == "$batch":
        return error_resp(400, "0x80040203", "Nested batch requests are not supported.")
    hdrs = {k: v for k, v in outer.headers.items() if k in ("authorization",)}
    hdrs.update(headers)
    inner = Req(method, path, parts.query, hdrs, body, outer.base_url)
    inner.claims = outer.claims
    svc.writer.content_ids = dict(ids)
    try:
        return svc.dispatch(inner, api, rest)
    except DVError as exc:
        return error_resp(exc.status, exc.code, exc.message, exc.headers)
    finally:
        svc.writer.content_ids = {}
