"""Business Central JSON ``$batch`` (OData JSON batch format).

- Requests run sequentially; processing stops after the first failure unless
  ``Prefer: odata.continue-on-error``; the outer status is 200 whenever the batch parsed.
- ``Isolation: snapshot`` runs the batch in one transaction: a failure rolls back every
  change of the batch (the responses still show what ran).
- More than 100 operations -> 400.
- Option ``bc_batch_atomicity_group``: ``"reject"`` (default, 400) or ``"ignore"`` for
  OData 4.01 ``atomicityGroup`` members (undocumented for BC, reference E).
- Only the JSON format is implemented: a non-JSON Content-Type answers 400.
"""
from __future__ import annotations

import json
from collections import Counter
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from bcdv_emulators.base import Req, Resp, rows_of, strict_json
from bcdv_emulators.bc.values import SUCCESS_CT, BCError, error_resp

if TYPE_CHECKING:
    from bcdv_emulators.bc.service import BCService

MAX_OPERATIONS = 100
KEEP_HEADERS = ("location", "content-type", "odata-version", "etag")


class _Rollback(Exception):
    pass


def _parse(req: Req) -> list[dict[str, Any]]:
    if req.method != "POST":
        raise BCError(405, "BadRequest_MethodNotAllowed", f"'{req.method}' requests for "
                                                          "'$batch' are not allowed.")
    if "json" not in (req.header("content-type") or "").lower():
        raise BCError(400, "BadRequest", "Only JSON batch requests (Content-Type: "
                                         "application/json) are supported.")
    try:
        doc = strict_json(req.body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise BCError(400, "BadRequest", "Invalid Request Body") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("requests"), list):
        raise BCError(400, "BadRequest", "Invalid Request Body")
    ops = doc["requests"]
    if len(ops) > MAX_OPERATIONS:
        raise BCError(400, "BadRequest", f"The number of operations in the batch request "
                                         f"({len(ops)}) exceeds the maximum of "
                                         f"{MAX_OPERATIONS}.")
    for op in ops:
        if not isinstance(op, dict) or not isinstance(op.get("method"), str) or \
                not isinstance(op.get("url"), str):
            raise BCError(400, "BadRequest", "Each batch request needs a 'method' and a 'url'.")
        if op.get("headers") is not None and not isinstance(op["headers"], dict):
            raise BCError(400, "BadRequest", "Batch request headers must be an object.")
    return ops


def run_batch(svc: BCService, req: Req, root: str) -> Resp:
    """Execute a JSON batch."""
    ops = _parse(req)
    if any("atomicityGroup" in op for op in ops) and \
            svc.settings.option("bc_batch_atomicity_group", "reject") == "reject":
        raise BCError(400, "BadRequest", "The 'atomicityGroup' property is not supported. Use "
                                         "the 'Isolation: snapshot' header instead.")
    continue_on_error = "odata.continue-on-error" in req.prefer()
    snapshot = (req.header("isolation") or "").lower() == "snapshot"
    responses: list[dict[str, Any]] = []
    failed = False
    done: Counter[str] = Counter()  # operations run, by method (statistics)
    rows = [0, 0]

    def run_all() -> None:
        """Run the operations in order, stopping at a failure unless told otherwise."""
        nonlocal failed
        for op in ops:
            resp = _execute(svc, req, root, op)
            method = str(op["method"]).upper()
            done[method] += 1
            read, written = rows_of(method, resp)
            rows[0] += read
            rows[1] += written
            responses.append(_to_json(op.get("id"), resp))
            if resp.status >= 400:
                failed = True
                if not continue_on_error:
                    break

    if snapshot:
        try:
            with svc.db.tx():
                run_all()
                if failed:
                    raise _Rollback()
        except _Rollback:
            pass
    else:
        run_all()
    body = json.dumps({"responses": responses}, ensure_ascii=False).encode()
    return Resp(200, body, [("Content-Type", SUCCESS_CT)], "$batch", read_rows=rows[0],
                write_rows=rows[1], ops=done)


def _to_json(op_id: Any, resp: Resp) -> dict[str, Any]:
    out: dict[str, Any] = {"id": op_id, "status": resp.status}
    if resp.status == 204 or not resp.body:
        out["headers"] = {}
        return out
    out["headers"] = {k.lower(): v for k, v in resp.headers if k.lower() in KEEP_HEADERS}
    try:
        out["body"] = json.loads(resp.body)
    except ValueError:
        out["body"] = resp.body.decode("utf-8", "replace")
    return out


def _execute(svc: BCService, outer: Req, root: str, op: dict[str, Any]) -> Resp:
    url = op["url"]
    parts = urlsplit(url)
    path = parts.path
    root_path = urlsplit(root).path
    if parts.scheme:
        if not path.startswith(root_path):
            return error_resp(400, "BadRequest", f"The batch request URL '{url}' is not under "
                                                 "the service root.")
        path = path[len(root_path):]
    path = path.lstrip("/")
    if path == "$batch":
        return error_resp(400, "BadRequest", "Nested batch requests are not supported.")
    headers = {k: v for k, v in outer.headers.items() if k in ("authorization",)}
    headers.update({str(k).lower(): str(v) for k, v in (op.get("headers") or {}).items()})
    body = op.get("body")
    raw = b"" if body is None else json.dumps(body).encode()
    if body is not None:
        headers.setdefault("content-type", "application/json")
    inner = Req(op["method"], f"{root_path}/{path}", parts.query, headers, raw,
                outer.base_url)
    inner.claims = outer.claims
    try:
        return svc.dispatch(inner, root, path)
    except BCError as exc:
        return error_resp(exc.status, exc.code, exc.message, exc.headers)
