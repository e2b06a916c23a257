"""Dataverse Web API v9.2 client (explicit create/update semantics, paging, batch, bulk)."""

from __future__ import annotations

# The clients have a method called ``list``: annotations after it in the class body would
# name the method, so they spell the builtin ``builtins.list``.
import builtins
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

from bcdv.clients import bulk as _bulk
from bcdv.clients.auth import TokenProvider
from bcdv.clients.batch import BatchOp, BatchResult, batch_answer, dv_batch
from bcdv.clients.http import (
    ApiSession,
    FirstRead,
    PageQuery,
    RetryPolicy,
    page_size_header,
    query_params,
    served_from,
)
from bcdv.clients.odata import chunks, id_filter
from bcdv.errors import NotFoundError
from bcdv.settings import DataverseSettings

MAX_PAGE_SIZE = 5000
IDS_PER_FILTER = 40


class DataverseClient:
    """Reads and writes one Dataverse organisation through the Web API.

    A PATCH without ``If-Match`` is an upsert in Dataverse; this client never sends one by
    accident: ``update`` always sends If-Match, and upserts go through ``$batch`` and
    UpsertMultiple, where they are asked for.
    """

    def __init__(
        self,
        settings: DataverseSettings,
        *,
        token: Callable[[], str] | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.settings = settings
        self.http = ApiSession(
            token or TokenProvider(settings.identity, settings.scope),
            ca_bundle=settings.identity.ca_bundle,
            timeout=settings.timeout,
            retry=retry,
            default_headers={
                "Accept": "application/json",
                "OData-MaxVersion": "4.0",
                "OData-Version": "4.0",
            },
        )

    def url(self, entity_set: str, record_id: str | None = None) -> str:
        """URL of an entity set, or of one row in it."""
        base = f"{self.settings.api_url}/{entity_set}"
        return f"{base}({record_id})" if record_id else base

    def server_time(self) -> datetime | None:
        """The service's clock as of its last response (from the Date header)."""
        return self.http.last_server_time

    def whoami(self) -> dict[str, Any]:
        """``WhoAmI``: the calling application user's UserId, BusinessUnitId, OrganizationId."""
        return self.http.get_json(f"{self.settings.api_url}/WhoAmI")

    def iter_pages(
        self,
        entity_set: str,
        *,
        filter: str | None = None,
        select: Sequence[str] | None = None,
        orderby: str | None = None,
        page_size: int = MAX_PAGE_SIZE,
        prefetch: bool = False,
    ) -> Iterator[list[dict[str, Any]]]:
        """Yield pages of rows (``Prefer: odata.maxpagesize``; nextLink followed verbatim)."""
        yield from self.http.iter_pages(
            self.url(entity_set), params=query_params(filter=filter, select=select,
                                                      orderby=orderby),
            headers=page_size_header(page_size, MAX_PAGE_SIZE), prefetch=prefetch)

    def list(
        self,
        entity_set: str,
        *,
        filter: str | None = None,
        select: Sequence[str] | None = None,
        orderby: str | None = None,
        page_size: int = MAX_PAGE_SIZE,
    ) -> builtins.list[dict[str, Any]]:
        """All rows matching the filter."""
        pages = self.iter_pages(entity_set, filter=filter, select=select, orderby=orderby,
                                page_size=page_size)
        return [row for page in pages for row in page]

    def get_many(
        self, entity_set: str, key: str, ids: Sequence[str], *,
        select: Sequence[str] | None = None,
    ) -> builtins.list[dict[str, Any]]:
        """Rows by primary key (missing ids are absent from the result)."""
        rows: builtins.list[dict[str, Any]] = []
        for group in chunks(ids, IDS_PER_FILTER):
            rows.extend(self.list(entity_set, filter=id_filter(key, group), select=select))
        return rows

    def get_many_batched(
        self, entity_set: str, key: str, ids: Sequence[str], *,
        select: Sequence[str] | None = None,
    ) -> builtins.list[dict[str, Any]]:
        """Rows by primary key like :meth:`get_many`, but one ``$batch`` of GETs (one per
        ``IDS_PER_FILTER`` ids, up to 1,000 GETs) per request instead of one request per
        ``IDS_PER_FILTER`` ids: reading back a CreateMultiple of 1,000 rows is one request.

        Each GET keeps a short URL (Learn: execute-batch-operations-using-web-api, a batch
        holds up to 1,000 requests, GETs included)."""
        ops = _by_id_ops(entity_set, key, ids, select)
        rows: builtins.list[dict[str, Any]] = []
        for result in self.batch(ops, continue_on_error=True) if ops else []:
            rows.extend(batch_answer(result).get("value", []))
        return rows

    def whoami_tables_and_rows(
        self, reads: Sequence[tuple[str, Sequence[str] | None]], entity_set: str, key: str,
        ids: Sequence[str], *, select: Sequence[str] | None = None,
    ) -> tuple[dict[str, Any], builtins.list[builtins.list[dict[str, Any]]],
               builtins.list[dict[str, Any]]]:
        """:meth:`whoami_and_tables` of ``reads`` and :meth:`get_many_batched` of ``ids``
        in one ``$batch`` (a pass's reference tables and the rows its first chunk compares
        with: one request instead of two). The caller keeps within the batch's 1,000
        operations (``1 + len(reads) + ceil(len(ids) / IDS_PER_FILTER)``)."""
        more = [(op, f"reading {entity_set}") for op in _by_id_ops(entity_set, key, ids, select)]
        who, tables, _, bodies = self._whoami_and_tables(reads, more)
        return who, tables, [r for body in bodies for r in body.get("value", [])]

    def whoami_and_tables(
        self, reads: Sequence[tuple[str, Sequence[str] | None]], *,
        page_size: int = MAX_PAGE_SIZE,
    ) -> tuple[dict[str, Any], builtins.list[builtins.list[dict[str, Any]]], datetime | None]:
        """``WhoAmI`` and every row of several entity sets (``(entity set, columns)`` each),
        their first pages in the same ``$batch`` of GETs (Learn:
        execute-batch-operations-using-web-api, GET requests go outside change sets), and
        the service's clock when it answered the batch (its Date header, before any further
        page): one request is the pass's signpost and reads its reference tables. An
        answer with more pages goes on with ``@odata.nextLink`` as :meth:`list` does."""
        who, tables, answered, _ = self._whoami_and_tables(reads, [], page_size=page_size)
        return who, tables, answered

    def whoami_and_first_read(self, reads: Sequence[tuple[str, Sequence[str] | None]],
                              page: PageQuery) -> tuple[dict[str, Any], FirstRead]:
        """A pass's first request: :meth:`whoami_and_tables` with the first page of
        ``page`` in the same ``$batch``, so a pass costs one request less. The page's
        answer is not followed before the caller consumes ``pages``."""
        began = time.monotonic()
        headers = page_size_header(page.page_size, MAX_PAGE_SIZE)
        params = page.params() or {}
        query = f"?{urlencode(params, quote_via=quote)}" if params else ""
        op = BatchOp("GET", f"{page.entity_set}{query}", None, headers)
        who, tables, answered, (body,) = self._whoami_and_tables(
            reads, [(op, f"reading {page.entity_set}")])
        return who, FirstRead(tables, self.http.pages_from(body, headers=headers,
                                                           prefetch=True),
                              served_from(answered, began))

    def _whoami_and_tables(
        self, reads: Sequence[tuple[str, Sequence[str] | None]],
        more: Sequence[tuple[BatchOp, str]], *, page_size: int = MAX_PAGE_SIZE,
    ) -> tuple[dict[str, Any], builtins.list[builtins.list[dict[str, Any]]], datetime | None,
               builtins.list[Any]]:
        """:meth:`whoami_and_tables` with the operations of ``more`` (each with what it
        does, for an error's message) after the tables' GETs; their bodies as answered."""
        headers = page_size_header(page_size, MAX_PAGE_SIZE)
        ops = [BatchOp("GET", "WhoAmI")]
        for entity_set, select in reads:
            params = query_params(select=select) or {}
            query = f"?{urlencode(params, quote_via=quote)}" if params else ""
            ops.append(BatchOp("GET", f"{entity_set}{query}", None, headers))
        # Continue on error: each GET is answered on its own (without it, Dataverse answers
        # a failure alone, and which read it was would be lost).
        results = self.batch([*ops, *(op for op, _ in more)], continue_on_error=True)
        answered = self.server_time()
        who, *bodies = (batch_answer(r, what) for r, what in zip(
            results, ["WhoAmI", *(f"reading {e}" for e, _ in reads), *(w for _, w in more)],
            strict=True))
        tables = [self.http.all_rows(body, headers=headers) for body in bodies[:len(reads)]]
        return who, tables, answered, bodies[len(reads):]

    def get(
        self, entity_set: str, record_id: str, *, select: Sequence[str] | None = None
    ) -> dict[str, Any] | None:
        """One row, or None if it does not exist."""
        params = {"$select": ",".join(select)} if select else None
        try:
            return self.http.get_json(self.url(entity_set, record_id), params=params)
        except NotFoundError:
            return None

    def _write(
        self, method: str, url: str, body: dict[str, Any], headers: dict[str, str],
        select: Sequence[str] | None,
    ) -> tuple[int, dict[str, Any]]:
        params = {"$select": ",".join(select)} if select else None
        resp = self.http.request(
            method, url, json=body, params=params,
            headers={"Content-Type": "application/json",
                     "Prefer": "return=representation", **headers},
        )
        return resp.status_code, (resp.json() if resp.content else {})

    def create(
        self, entity_set: str, body: dict[str, Any], *, select: Sequence[str] | None = None
    ) -> dict[str, Any]:
        """Create-only POST (a duplicate primary key is a 412)."""
        _, row = self._write("POST", self.url(entity_set), body, {}, select)
        return row

    def update(
        self, entity_set: str, record_id: str, body: dict[str, Any], *, etag: str = "*",
        select: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """Update-only PATCH with If-Match (``*`` = must exist; an etag = must be unchanged)."""
        _, row = self._write("PATCH", self.url(entity_set, record_id), body,
                             {"If-Match": etag}, select)
        return row

    def delete(self, entity_set: str, record_id: str, *, etag: str | None = None) -> None:
        """Delete a row (with If-Match when an etag is given)."""
        headers = {"If-Match": etag} if etag else {}
        self.http.request("DELETE", self.url(entity_set, record_id), headers=headers)

    def batch(
        self, ops: Sequence[BatchOp], *, continue_on_error: bool = True, atomic: bool = False,
        max_parts: int = 1000,
    ) -> builtins.list[BatchResult]:
        """Run operations through ``$batch`` (see bcdv.clients.batch); one result each."""
        return dv_batch(self.http, self.settings.api_url, ops,
                        continue_on_error=continue_on_error, atomic=atomic, max_parts=max_parts)

    def create_multiple(
        self, entity_set: str, logical_name: str, rows: Sequence[dict[str, Any]], *,
        chunk_size: int = _bulk.DEFAULT_CHUNK,
    ) -> builtins.list[str]:
        """CreateMultiple in chunks; the new ids in row order (all-or-nothing per chunk)."""
        return _bulk.create_multiple(self.http, self.settings.api_url, entity_set,
                                     logical_name, rows, chunk_size=chunk_size)

    def update_multiple(
        self, entity_set: str, logical_name: str, rows: Sequence[dict[str, Any]], *,
        chunk_size: int = _bulk.DEFAULT_CHUNK,
    ) -> None:
        """UpdateMultiple in chunks; each row carries its primary key."""
        _bulk.update_multiple(self.http, self.settings.api_url, entity_set, logical_name,
                              rows, chunk_size=chunk_size)

    def upsert_multiple(
        self, entity_set: str, logical_name: str, rows: Sequence[dict[str, Any]], *,
        chunk_size: int = _bulk.DEFAULT_CHUNK,
    ) -> builtins.list[str | None]:
        """UpsertMultiple in chunks; rows carry the primary key or ``@odata.id``.

        Returns the id each row addressed (None for an alternate key): the service answers
        204 with no body, so it tells neither ids nor created-vs-updated (see
        :func:`bcdv.clients.bulk.upsert_multiple`)."""
        return _bulk.upsert_multiple(self.http, self.settings.api_url, entity_set,
                                     logical_name, rows, chunk_size=chunk_size)

    def write_rows(
        self, message: str, entity_set: str, logical_name: str,
        rows: Sequence[dict[str, Any]], *, key: str | None = None,
        chunk_size: int = _bulk.DEFAULT_CHUNK,
    ) -> builtins.list[_bulk.RowResult]:
        """Bulk create/update/upsert with per-row results; a rejected chunk falls back to
        ``$batch`` with continue-on-error so only the bad rows fail."""
        return _bulk.write_rows(self.http, self.settings.api_url, message, entity_set,
                                logical_name, rows, key=key, chunk_size=chunk_size)

    def close(self) -> None:
        """Release connections."""
        self.http.close()


def _by_id_ops(entity_set: str, key: str, ids: Sequence[str],
               select: Sequence[str] | None) -> list[BatchOp]:
    """The batched GETs of rows by primary key, ``IDS_PER_FILTER`` ids each."""
    ops = []
    for group in chunks(ids, IDS_PER_FILTER):
        params = query_params(filter=id_filter(key, group), select=select) or {}
        ops.append(BatchOp("GET", f"{entity_set}?{urlencode(params, quote_via=quote)}"))
    return ops
