"""Batched writes: Dataverse multipart ``$batch`` and Business Central JSON ``$batch``.

Both produce one :class:`BatchResult` per operation, in the caller's order, whatever the
service sent back:

- ``ok``: the operation ran and was kept;
- ``failed``: the operation ran and the service rejected it (its status, code and message);
- ``rolled_back``: the operation ran but its change set (Dataverse) or its snapshot batch
  (Business Central ``Isolation: snapshot``) failed, so nothing of it was kept;
- ``not_executed``: the service stopped at an earlier failure (no continue-on-error), so the
  operation never ran; it is safe to send again;
- ``unknown``: the outcome cannot be told from the response (Dataverse without
  continue-on-error answers with the failing part only, which does not say which operation
  failed; the operations before it were applied). Read the records back before retrying.

Limits (reference A.11, B.11): at most 1000 parts per Dataverse batch and 100 operations per
Business Central batch; longer lists are split into several requests, never splitting a
Dataverse change set or a Business Central snapshot batch. Every POST goes through the one
retry layer (:meth:`ApiSession.request`); it is marked idempotent only when every operation in
it is (a GET, an upsert PATCH by key, a PATCH with If-Match), so a whole batch is repeated
after a lost response only when repeating cannot duplicate anything.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import requests

from bcdv import fastjson
from bcdv.clients.http import ApiSession, _error_from_response
from bcdv.errors import FatalApiError

DV_MAX_PARTS = 1000
BC_MAX_OPERATIONS = 100
CRLF = "\r\n"
_BOUNDARY_RE = re.compile(r'boundary="?([^";,\s]+)"?', re.I)
_GUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                      r"[0-9a-fA-F]{12}")
# Retried by the HTTP layer when the batch as a whole was refused; everything else that is
# >= 400 may be Dataverse's "stopped at this operation" answer and is parsed here.
_RETRIED_OUTER = frozenset({429, 502, 503, 504})
_PARSED_OUTER = tuple(s for s in range(400, 600) if s not in _RETRIED_OUTER)

OK, FAILED, ROLLED_BACK, NOT_EXECUTED, UNKNOWN = (
    "ok", "failed", "rolled_back", "not_executed", "unknown")


@dataclass(frozen=True)
class BatchOp:
    """One operation of a batch.

    Attributes:
        method: GET, POST, PATCH, PUT or DELETE.
        url: relative to the API root (``accounts(<id>)``, ``companies(<id>)/customers``),
            absolute, or a Dataverse Content-ID reference (``$1``).
        body: JSON-serialisable body, or None.
        headers: the operation's own headers (``If-Match``, ``Prefer``, ...).
        content_id: Dataverse Content-ID (change sets only; generated when omitted there).
        changeset: Dataverse: consecutive operations with the same non-empty value run in one
            change set (atomic); ignored by Business Central.
    """

    method: str
    url: str
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    content_id: str | None = None
    changeset: str | None = None


@dataclass
class BatchResult:
    """The outcome of one operation (see the module docstring for ``state``)."""

    index: int
    state: str
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    error_code: str = ""
    error_message: str = ""
    content_id: str | None = None

    @property
    def ok(self) -> bool:
        """True when the operation ran and its change was kept."""
        return self.state == OK

    @property
    def entity_id(self) -> str | None:
        """The record id: from OData-EntityId / Location, else the body's ``id``."""
        for name in ("odata-entityid", "location"):
            m = _GUID_RE.findall(self.headers.get(name, ""))
            if m:
                return m[-1].lower()
        if isinstance(self.body, dict) and isinstance(self.body.get("id"), str):
            return str(self.body["id"])
        return None


def batch_answer(result: BatchResult, what: str = "") -> dict[str, Any]:
    """The JSON body of a batched GET's answer; a refused one raises with the service's
    message, after ``what`` (the read it was) when given. Both clients' batched reads."""
    if not result.ok or not isinstance(result.body, dict):
        message = result.error_message or "batch GET failed"
        raise FatalApiError(result.status, result.error_code,
                            f"{what}: {message}" if what else message)
    return result.body


def op_is_idempotent(op: BatchOp) -> bool:
    """True when sending ``op`` twice has the effect of sending it once."""
    method = op.method.upper()
    if method == "GET":
        return True
    if method != "PATCH":
        return False
    hdrs = {k.lower() for k in op.headers}
    # A PATCH with If-Match, or an upsert addressed by key (the URL ends with a key segment).
    return "if-match" in hdrs or ("if-none-match" not in hdrs and op.url.rstrip().endswith(")"))


def _error_of(body: Any) -> tuple[str, str]:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        return str(err.get("code") or ""), str(err.get("message") or "")
    return "", ""


def _state_for(status: int) -> str:
    return OK if 0 < status < 400 else FAILED


# --------------------------------------------------------------------------- Dataverse


def _dv_items(ops: Sequence[BatchOp], atomic: bool) -> list[list[int] | int]:
    """Group operation indexes: an int is a top-level part, a list is one change set."""
    if atomic:
        if any(op.method.upper() == "GET" for op in ops):
            raise ValueError("a GET cannot be part of an atomic batch (change set)")
        return [list(range(len(ops)))] if ops else []
    items: list[list[int] | int] = []
    current: str | None = None
    for i, op in enumerate(ops):
        if op.changeset:
            if op.method.upper() == "GET":
                raise ValueError(f"operation {i}: a GET cannot be in a change set")
            if op.changeset == current and isinstance(items[-1], list):
                items[-1].append(i)
                continue
            items.append([i])
        else:
            items.append(i)
        current = op.changeset
    return items


def _dv_chunks(items: list[list[int] | int], max_parts: int) -> list[list[list[int] | int]]:
    chunks: list[list[list[int] | int]] = []
    size = 0
    for item in items:
        n = len(item) if isinstance(item, list) else 1
        if n > max_parts:
            raise ValueError(f"a change set of {n} operations exceeds the batch limit of "
                             f"{max_parts}")
        if not chunks or size + n > max_parts:
            chunks.append([])
            size = 0
        chunks[-1].append(item)
        size += n
    return chunks


def _dv_url(api_url: str, url: str) -> str:
    if url.startswith(("http://", "https://", "$")):
        return url
    return f"{api_url.rstrip('/')}/{url.lstrip('/')}"


def _dv_request_part(api_url: str, op: BatchOp, content_id: str | None) -> str:
    head = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    if content_id is not None:
        head.append(f"Content-ID: {content_id}")
    lines = [f"{op.method.upper()} {_dv_url(api_url, op.url)} HTTP/1.1"]
    hdrs = dict(op.headers)
    if op.body is not None and not any(k.lower() == "content-type" for k in hdrs):
        hdrs["Content-Type"] = "application/json; type=entry"
    lines += [f"{k}: {v}" for k, v in hdrs.items()]
    body = "" if op.body is None else fastjson.dumps(op.body)
    return CRLF.join(head) + CRLF + CRLF + CRLF.join(lines) + CRLF + CRLF + body


def build_dv_batch(
    api_url: str, ops: Sequence[BatchOp], chunk: list[list[int] | int],
    content_ids: dict[int, str],
) -> tuple[str, bytes]:
    """The multipart body of one Dataverse batch request (CRLF line ends)."""
    boundary = f"batch_{uuid.uuid4()}"
    out: list[str] = []
    for item in chunk:
        if isinstance(item, list):
            cs = f"changeset_{uuid.uuid4()}"
            inner = "".join(
                f"--{cs}{CRLF}{_dv_request_part(api_url, ops[i], content_ids[i])}{CRLF}"
                for i in item
            ) + f"--{cs}--"
            out.append(f"--{boundary}{CRLF}Content-Type: multipart/mixed; "
                       f'boundary="{cs}"{CRLF}{CRLF}{inner}{CRLF}')
        else:
            out.append(f"--{boundary}{CRLF}{_dv_request_part(api_url, ops[item], None)}{CRLF}")
    out.append(f"--{boundary}--{CRLF}")
    return boundary, "".join(out).encode("utf-8")


_BLANK_LINE = re.compile(rb"\r?\n\r?\n")
_AFTER_DELIMITER = (b"", b"\r", b"\n", b" ", b"\t", b"-")


def _split_multipart(data: bytes, boundary: str) -> Iterator[bytes]:
    """The parts of a ``multipart/mixed`` body (RFC 2046: a delimiter line ``--boundary``
    at the start of a line, the last one ``--boundary--``), each without its delimiter
    line and the line break that ends it. Works on the answer's bytes, one part copied at a
    time: a read of 10,000 rows by id is a ``$batch`` answer of several MB, which decoding,
    normalising line breaks and splitting into lines copied four times over, in every
    thread reading one at once."""
    delimiter = b"--" + boundary.encode("latin-1")
    pos = data.find(delimiter)
    while pos != -1 and not data.startswith(b"--", pos + len(delimiter)):
        start = data.find(b"\n", pos + len(delimiter))
        if start == -1:
            return
        nxt = data.find(b"\n" + delimiter, start)
        while nxt != -1 and data[nxt + 1 + len(delimiter):nxt + 2 + len(delimiter)] \
                not in _AFTER_DELIMITER:
            nxt = data.find(b"\n" + delimiter, nxt + 1)  # a longer boundary: not ours
        end = len(data) if nxt == -1 else nxt
        if end > start and data[end - 1:end] == b"\r":
            end -= 1
        yield data[start + 1:end]
        pos = -1 if nxt == -1 else nxt + 1


def _headers(block: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in block.decode("utf-8", "replace").splitlines():
        if ":" in line:
            k, _, v = line.partition(":")
            out[k.strip().lower()] = v.strip()
    return out


def _head_and_rest(raw: bytes) -> tuple[bytes, bytes]:
    """A block's header lines and what follows the blank line after them."""
    m = _BLANK_LINE.search(raw)
    return (raw, b"") if m is None else (raw[:m.start()], raw[m.end():])


@dataclass
class _Part:
    status: int
    headers: dict[str, str]
    body: Any
    content_id: str | None


def _parse_http_part(raw: bytes) -> _Part:
    mime_block, rest = _head_and_rest(raw)
    mime = _headers(mime_block)
    rest = rest.lstrip(b"\r\n")
    status_line, _, rest = rest.partition(b"\n")
    bits = status_line.decode("latin-1").split(" ", 2)
    status = int(bits[1]) if len(bits) > 1 and bits[1].isdigit() else 0
    head, body_bytes = _head_and_rest(rest)
    headers = _headers(head)
    body_bytes = body_bytes.strip()
    body: Any = None
    if body_bytes:
        try:
            body = fastjson.loads(body_bytes)
        except ValueError:
            body = body_bytes.decode("utf-8", "replace")
    cid = mime.get("content-id") or headers.get("content-id")
    return _Part(status, headers, body, cid)


def parse_dv_batch(data: bytes, content_type: str) -> list[_Part | list[_Part]]:
    """Parse a ``multipart/mixed`` batch response: a list of parts or change-set lists."""
    m = _BOUNDARY_RE.search(content_type)
    if not m:
        raise ValueError(f"batch response without a multipart boundary ({content_type!r})")
    out: list[_Part | list[_Part]] = []
    for raw in _split_multipart(data, m.group(1)):
        mime_block, rest = _head_and_rest(raw)
        ctype = _headers(mime_block).get("content-type", "")
        inner = _BOUNDARY_RE.search(ctype)
        if "multipart/mixed" in ctype.lower() and inner:
            out.append([_parse_http_part(p) for p in _split_multipart(rest, inner.group(1))])
        else:
            out.append(_parse_http_part(raw))
    return out


def _result(index: int, part: _Part, state: str | None = None) -> BatchResult:
    code, message = _error_of(part.body)
    return BatchResult(index, state or _state_for(part.status), part.status, part.headers,
                       part.body, code, message, part.content_id)


def _assign_dv(
    chunk: list[list[int] | int], parts: list[_Part | list[_Part]], stopped: bool,
    content_ids: dict[int, str], results: dict[int, BatchResult],
) -> None:
    """Turn the response parts of one chunk into per-operation results."""
    flat = [i for item in chunk for i in (item if isinstance(item, list) else [item])]
    if stopped and len(parts) == 1 and len(chunk) > 1 and isinstance(parts[0], _Part):
        failing = parts[0]
        by_cid = {v: k for k, v in content_ids.items() if k in flat}
        if failing.content_id and failing.content_id in by_cid:
            hit = by_cid[failing.content_id]
            pos = next(n for n, item in enumerate(chunk)
                       if hit == item or (isinstance(item, list) and hit in item))
            # The failing part named itself: everything before it ran, everything after didn't.
            for item in chunk[:pos]:
                for i in item if isinstance(item, list) else [item]:
                    results[i] = BatchResult(i, UNKNOWN, error_message="applied before the "
                                             "failure; the service did not return its response")
            _assign_item(chunk[pos], failing, content_ids, results)
            for item in chunk[pos + 1:]:
                for i in item if isinstance(item, list) else [item]:
                    results[i] = BatchResult(i, NOT_EXECUTED)
            return
        code, message = _error_of(failing.body)
        for i in flat:
            results[i] = BatchResult(
                i, UNKNOWN, failing.status, failing.headers, failing.body, code,
                message or "the batch stopped at a failing operation the service did not "
                           "identify; the operations before it were applied",
                content_ids.get(i))
        return
    for n, item in enumerate(chunk):
        if n < len(parts):
            _assign_item(item, parts[n], content_ids, results)
        else:
            state = NOT_EXECUTED if stopped else UNKNOWN
            for i in item if isinstance(item, list) else [item]:
                results[i] = BatchResult(i, state)


def _assign_item(item: list[int] | int, part: _Part | list[_Part],
                 content_ids: dict[int, str], results: dict[int, BatchResult]) -> None:
    if not isinstance(item, list):
        if isinstance(part, list):  # a lone request answered as a change set
            part = part[0]
        results[item] = _result(item, part)
        return
    if isinstance(part, list):  # the change set committed: match by Content-ID
        by_cid = {p.content_id: p for p in part if p.content_id}
        for n, i in enumerate(item):
            p = by_cid.get(content_ids[i]) or (part[n] if n < len(part) else None)
            results[i] = _result(i, p) if p else BatchResult(i, UNKNOWN)
        return
    # The change set failed as a whole: one error part, every operation rolled back.
    code, message = _error_of(part.body)
    for i in item:
        failed_here = part.content_id is None or part.content_id == content_ids[i]
        results[i] = BatchResult(i, FAILED if failed_here else ROLLED_BACK, part.status,
                                 part.headers, part.body, code, message, content_ids[i])


def dv_batch(
    http: ApiSession, api_url: str, ops: Sequence[BatchOp], *,
    continue_on_error: bool = True, atomic: bool = False, max_parts: int = DV_MAX_PARTS,
) -> list[BatchResult]:
    """Run operations through Dataverse ``$batch``; one result per operation, in order.

    ``atomic`` puts all operations of each request in one change set (so at most
    ``max_parts`` operations can be atomic together).
    """
    if not 1 <= max_parts <= DV_MAX_PARTS:
        raise ValueError(f"max_parts must be within 1..{DV_MAX_PARTS}")
    items = _dv_items(ops, atomic)
    # Content-IDs must be unique within a request: generated ones are the operation's
    # position + 1, so ``$1`` is the first operation of an atomic batch.
    content_ids = {i: ops[i].content_id or str(i + 1)
                   for item in items if isinstance(item, list) for i in item}
    results: dict[int, BatchResult] = {}
    stopped_before = False
    for chunk in _dv_chunks(items, max_parts):
        flat = [i for item in chunk for i in (item if isinstance(item, list) else [item])]
        if stopped_before:
            for i in flat:
                results[i] = BatchResult(i, NOT_EXECUTED)
            continue
        boundary, body = build_dv_batch(api_url, ops, chunk, content_ids)
        headers = {"Content-Type": f'multipart/mixed; boundary="{boundary}"'}
        if continue_on_error:
            headers["Prefer"] = "odata.continue-on-error"
        # An inner failure of status 429/502/503/504 without continue-on-error would become
        # the outer status and be retried like a throttled request; Dataverse counts a batch
        # as one request for service protection, so its inner requests are not throttled.
        resp = http.request(
            "POST", f"{api_url.rstrip('/')}/$batch", data=body, headers=headers,
            expected=_PARSED_OUTER, idempotent=all(op_is_idempotent(ops[i]) for i in flat),
        )
        ctype = resp.headers.get("Content-Type", "")
        if "multipart/mixed" not in ctype.lower():
            raise _error_from_response(resp, "POST", f"{api_url}/$batch")
        parts = parse_dv_batch(resp.content, ctype)
        stopped = resp.status_code >= 400 or (
            not continue_on_error and any(_failed(p) for p in parts))
        _assign_dv(chunk, parts, stopped, content_ids, results)
        stopped_before = stopped and not continue_on_error
    return [results[i] for i in range(len(ops))]


def _failed(part: _Part | list[_Part]) -> bool:
    return not isinstance(part, list) and part.status >= 400


# --------------------------------------------------------------------------- Business Central


def bc_batch(
    http: ApiSession, api_root: str, ops: Sequence[BatchOp], *,
    continue_on_error: bool = True, isolation_snapshot: bool = False,
    max_operations: int = BC_MAX_OPERATIONS,
) -> list[BatchResult]:
    """Run operations through Business Central's JSON ``$batch``; one result per operation.

    With ``isolation_snapshot`` a failure rolls back the whole request; such a batch cannot be
    split, so more than ``max_operations`` operations raise ValueError.
    """
    if not 1 <= max_operations <= BC_MAX_OPERATIONS:
        raise ValueError(f"max_operations must be within 1..{BC_MAX_OPERATIONS}")
    if isolation_snapshot and len(ops) > max_operations:
        raise ValueError(f"an Isolation: snapshot batch is atomic and cannot be split: "
                         f"{len(ops)} operations exceed the limit of {max_operations}")
    results: list[BatchResult] = []
    stopped = False
    for start in range(0, len(ops), max_operations):
        chunk = list(enumerate(ops[start:start + max_operations], start=start))
        if stopped:
            results += [BatchResult(i, NOT_EXECUTED) for i, _ in chunk]
            continue
        resp = _bc_post(http, api_root, chunk, continue_on_error, isolation_snapshot)
        by_id = {str(r.get("id")): r for r in resp.get("responses", []) if isinstance(r, dict)}
        out: list[BatchResult] = []
        for i, _ in chunk:
            r = by_id.get(str(i))
            if r is None:
                out.append(BatchResult(i, NOT_EXECUTED if not continue_on_error else UNKNOWN))
                continue
            status = int(r.get("status") or 0)
            code, message = _error_of(r.get("body"))
            out.append(BatchResult(i, _state_for(status), status,
                                   {str(k).lower(): str(v)
                                    for k, v in (r.get("headers") or {}).items()},
                                   r.get("body"), code, message))
        if any(res.state == FAILED for res in out):
            if isolation_snapshot:
                for res in out:
                    if res.state == OK:
                        res.state = ROLLED_BACK
            stopped = not continue_on_error
        results += out
    return results


def _bc_post(http: ApiSession, api_root: str, chunk: list[tuple[int, BatchOp]],
             continue_on_error: bool, isolation_snapshot: bool) -> dict[str, Any]:
    requests_json = []
    for i, op in chunk:
        item: dict[str, Any] = {"id": str(i), "method": op.method.upper(),
                                "url": op.url.lstrip("/") if not op.url.startswith("http")
                                else op.url}
        hdrs = dict(op.headers)
        if op.body is not None:
            hdrs.setdefault("Content-Type", "application/json")
            item["body"] = op.body
        if hdrs:
            item["headers"] = hdrs
        requests_json.append(item)
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    prefer = ["odata.continue-on-error"] if continue_on_error else []
    if prefer:
        headers["Prefer"] = ",".join(prefer)
    if isolation_snapshot:
        headers["Isolation"] = "snapshot"
    resp: requests.Response = http.request(
        "POST", f"{api_root.rstrip('/')}/$batch", json={"requests": requests_json},
        headers=headers, idempotent=all(op_is_idempotent(op) for _, op in chunk),
    )
    return fastjson.loads(resp.content)
