"""Dataverse bulk messages: CreateMultiple, UpdateMultiple, UpsertMultiple (reference B.12).

On standard tables each request is one transaction: a single bad row rolls back the whole
request. :func:`write_rows` therefore sends chunks through the bulk message and, for a chunk
the service rejects, sends the same rows again through ``$batch`` with continue-on-error, so
the bad rows are isolated with the service's own message and the others go through.

Every target carries ``@odata.type`` = ``Microsoft.Dynamics.CRM.<logical name>``; update and
upsert targets carry their primary key column (or an ``@odata.id`` such as
``accounts(accountnumber='A-1')``).

Responses (Learn: bulk-operations, webapi/reference/upsertmultiple): CreateMultiple 200 with
the new ``Ids``; UpdateMultiple and UpsertMultiple 204 with no body.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bcdv import fastjson
from bcdv.clients.batch import BatchOp, BatchResult, dv_batch
from bcdv.clients.http import ApiSession
from bcdv.errors import FatalApiError

DEFAULT_CHUNK = 1000
MESSAGES = ("create", "update", "upsert")


@dataclass
class RowResult:
    """The outcome of one row of :func:`write_rows`.

    Attributes:
        index: position of the row in the caller's list.
        ok: the row was written.
        id: the record id (created id, or the key of an update/upsert) when known.
        via: ``"bulk"`` (the bulk message took the row) or ``"batch"`` (the fallback).
        status, error_code, error_message: the service's answer for a failed row.
    """

    index: int
    ok: bool
    id: str | None = None
    via: str = "bulk"
    status: int = 0
    error_code: str = ""
    error_message: str = ""


def _type(logical_name: str) -> str:
    return f"Microsoft.Dynamics.CRM.{logical_name}"


def targets(logical_name: str, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The rows as bulk targets, each with ``@odata.type``."""
    return [{"@odata.type": _type(logical_name), **dict(r)} for r in rows]


def _chunks(rows: Sequence[Any], size: int) -> list[tuple[int, Sequence[Any]]]:
    if size < 1:
        raise ValueError("chunk_size must be at least 1")
    return [(s, rows[s:s + size]) for s in range(0, len(rows), size)]


def _post(http: ApiSession, api_url: str, entity_set: str, message: str,
          body: dict[str, Any], idempotent: bool) -> dict[str, Any]:
    url = f"{api_url.rstrip('/')}/{entity_set}/Microsoft.Dynamics.CRM.{message}"
    resp = http.request("POST", url, json=body, headers={"Content-Type": "application/json"},
                        idempotent=idempotent)
    return fastjson.loads(resp.content) if resp.content else {}


def create_multiple(http: ApiSession, api_url: str, entity_set: str, logical_name: str,
                    rows: Sequence[Mapping[str, Any]], *, chunk_size: int = DEFAULT_CHUNK
                    ) -> list[str]:
    """CreateMultiple in chunks; the new ids in row order. A rejected chunk raises."""
    ids: list[str] = []
    for _, chunk in _chunks(rows, chunk_size):
        body = _post(http, api_url, entity_set, "CreateMultiple",
                     {"Targets": targets(logical_name, chunk)}, idempotent=False)
        ids += [str(i) for i in body.get("Ids", [])]
    return ids


def update_multiple(http: ApiSession, api_url: str, entity_set: str, logical_name: str,
                    rows: Sequence[Mapping[str, Any]], *, chunk_size: int = DEFAULT_CHUNK
                    ) -> None:
    """UpdateMultiple in chunks (each row carries its primary key). A rejected chunk raises."""
    for _, chunk in _chunks(rows, chunk_size):
        # Setting the same values by key twice is harmless: safe to repeat.
        _post(http, api_url, entity_set, "UpdateMultiple",
              {"Targets": targets(logical_name, chunk)}, idempotent=True)


def upsert_multiple(http: ApiSession, api_url: str, entity_set: str, logical_name: str,
                    rows: Sequence[Mapping[str, Any]], *, key: str | None = None,
                    chunk_size: int = DEFAULT_CHUNK) -> list[str | None]:
    """UpsertMultiple in chunks; the id each row addressed, in row order.

    The Web API answers 204 No Content: it does not return UpsertMultipleResponse, so it says
    neither the ids nor which rows it created (Learn: webapi/reference/upsertmultiple). The
    ids are therefore the ones sent: the primary key column ``key`` (default
    ``<logical_name>id``) or a GUID in ``@odata.id``; a row addressed by an alternate key
    gives None (read it back by that key if its id is needed). A caller that must tell
    creates from updates knows which ids it had coupled, or reads them first
    (``DataverseClient.get_many``).
    """
    key = key or f"{logical_name}id"
    for _, chunk in _chunks(rows, chunk_size):
        _post(http, api_url, entity_set, "UpsertMultiple",
              {"Targets": targets(logical_name, chunk)}, idempotent=True)
    return [target_id(r, key) for r in rows]


GUID_KEY_RE = re.compile(r"\((?:\w+=)?([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                         r"[0-9a-fA-F]{4}-[0-9a-fA-F]{12})\)$")


def target_id(row: Mapping[str, Any], key: str) -> str | None:
    """The primary key a bulk target addresses: its ``key`` column, or the GUID of an
    ``@odata.id`` such as ``accounts(<guid>)``; None for an alternate key."""
    if row.get(key):
        return str(row[key])
    m = GUID_KEY_RE.search(str(row.get("@odata.id") or ""))
    return m.group(1).lower() if m else None


def _key_url(entity_set: str, row: Mapping[str, Any], key: str) -> str:
    if row.get("@odata.id"):
        return str(row["@odata.id"]).lstrip("/")
    if not row.get(key):
        raise ValueError(f"row has neither '{key}' nor '@odata.id'")
    return f"{entity_set}({row[key]})"


def fallback_op(message: str, entity_set: str, row: Mapping[str, Any], key: str) -> BatchOp:
    """The single-record request equivalent to one bulk target."""
    body = {k: v for k, v in row.items() if k not in ("@odata.type", "@odata.id")}
    if message == "create":
        return BatchOp("POST", entity_set, body)
    body.pop(key, None)
    url = _key_url(entity_set, row, key)
    if message == "update":  # update-only: If-Match * (a PATCH without it would upsert)
        return BatchOp("PATCH", url, body, {"If-Match": "*"})
    return BatchOp("PATCH", url, body)


def write_rows(
    http: ApiSession, api_url: str, message: str, entity_set: str, logical_name: str,
    rows: Sequence[Mapping[str, Any]], *, key: str | None = None,
    chunk_size: int = DEFAULT_CHUNK,
) -> list[RowResult]:
    """Write rows with a bulk message; isolate bad rows of a rejected chunk via ``$batch``.

    ``message`` is ``create``, ``update`` or ``upsert``; ``key`` is the primary key column
    (default ``<logical_name>id``). Returns one RowResult per row, in order. Throttling that
    outlives the retry budget still raises: it says nothing about the rows.
    """
    if message not in MESSAGES:
        raise ValueError(f"message must be one of {', '.join(MESSAGES)}")
    key = key or f"{logical_name}id"
    results: list[RowResult] = []
    for start, chunk in _chunks(rows, chunk_size):
        try:
            results += _bulk_chunk(http, api_url, message, entity_set, logical_name, chunk,
                                   key, start)
        except FatalApiError:
            ops = [fallback_op(message, entity_set, r, key) for r in chunk]
            outcome = dv_batch(http, api_url, ops, continue_on_error=True,
                               max_parts=min(len(ops), 1000))
            results += [_from_batch(start + n, r, chunk[n], key)
                        for n, r in enumerate(outcome)]
    return results


def _bulk_chunk(http: ApiSession, api_url: str, message: str, entity_set: str,
                logical_name: str, chunk: Sequence[Mapping[str, Any]], key: str,
                start: int) -> list[RowResult]:
    if message == "create":
        ids = create_multiple(http, api_url, entity_set, logical_name, chunk,
                              chunk_size=len(chunk))
        return [RowResult(start + n, True, i) for n, i in enumerate(ids)]
    if message == "update":
        update_multiple(http, api_url, entity_set, logical_name, chunk, chunk_size=len(chunk))
        return [RowResult(start + n, True, target_id(r, key)) for n, r in enumerate(chunk)]
    addressed = upsert_multiple(http, api_url, entity_set, logical_name, chunk, key=key,
                                chunk_size=len(chunk))
    return [RowResult(start + n, True, i) for n, i in enumerate(addressed)]


def _from_batch(index: int, r: BatchResult, row: Mapping[str, Any], key: str) -> RowResult:
    return RowResult(index, r.ok, r.entity_id or target_id(row, key), "batch", r.status,
                     r.error_code, r.error_message)
