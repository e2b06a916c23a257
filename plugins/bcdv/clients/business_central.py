"""Business Central API v2.0 client (company-scoped entity sets, etags, paging)."""

from __future__ import annotations

# The clients have a method called ``list``: annotations after it in the class body would
# name the method, so they spell the builtin ``builtins.list``.
import builtins
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

from bcdv.clients.auth import TokenProvider
from bcdv.clients.batch import BatchOp, BatchResult, batch_answer, bc_batch
from bcdv.clients.http import (
    ApiSession,
    FirstRead,
    PageQuery,
    RetryPolicy,
    page_size_header,
    query_params,
    served_from,
)
from bcdv.clients.odata import chunks, id_filter, identifier, key_segment
from bcdv.errors import FatalApiError, NotFoundError
from bcdv.settings import BusinessCentralSettings

MAX_PAGE_SIZE = 20000
IDS_PER_FILTER = 40  # keeps the URL well under gateway limits


class BusinessCentralClient:
    """Reads and writes one Business Central company through API v2.0.

    Args:
        settings: base URL, company and identity.
        token: bearer-token callable; defaults to msal client credentials.
        retry: retry policy for the HTTP layer.
    """

    def __init__(
        self,
        settings: BusinessCentralSettings,
        *,
        token: Callable[[], str] | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.settings = settings
        self.http = ApiSession(
            token or TokenProvider(settings.identity, settings.scope, retry=retry),
            ca_bundle=settings.identity.ca_bundle,
            timeout=settings.timeout,
            retry=retry,
            default_headers={"Accept": "application/json", "Accept-Language": "en-US"},
        )

    @property
    def company_url(self) -> str:
        """``{base}/companies({company_id})``."""
        company = key_segment("companies", self.settings.company_id, name="company_id")
        return f"{self.settings.base_url}/{company}"

    def url(self, entity_set: str, record_id: str | None = None) -> str:
        """URL of an entity set, or of one record in it."""
        if record_id:
            return f"{self.company_url}/{key_segment(entity_set, record_id)}"
        return f"{self.company_url}/{identifier(entity_set, 'entity set')}"

    def server_time(self) -> datetime | None:
        """The service's clock as of its last response (from the Date header)."""
        return self.http.last_server_time

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
        """Yield pages of records, using server-driven paging (``odata.maxpagesize``)."""
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
        """All records of an entity set matching the filter."""
        pages = self.iter_pages(entity_set, filter=filter, select=select, orderby=orderby,
                                page_size=page_size)
        return [row for page in pages for row in page]

    def list_batched(
        self, reads: Sequence[tuple[str, Sequence[str] | None]], *,
        page_size: int = MAX_PAGE_SIZE,
    ) -> builtins.list[builtins.list[dict[str, Any]]]:
        """Every record of several entity sets (``(entity set, columns)`` each), their first
        pages read in one JSON ``$batch`` of GETs (Learn: business-central
        dynamics-batch-requests, up to 100 operations per batch): a pass's small reference
        tables cost one request instead of one each. An answer with more pages goes on
        with ``@odata.nextLink`` as :meth:`list` does."""
        return self.read_tables(reads, page_size=page_size)[0]

    def read_tables(
        self, reads: Sequence[tuple[str, Sequence[str] | None]], *,
        page_size: int = MAX_PAGE_SIZE,
    ) -> tuple[builtins.list[builtins.list[dict[str, Any]]], datetime | None]:
        """:meth:`list_batched`, and the service's clock when it answered the ``$batch``
        (its Date header, before any further page): the batch can be a pass's signpost."""
        tables, answered, _ = self._read_tables(reads, [], page_size=page_size)
        return tables, answered

    def _read_tables(
        self, reads: Sequence[tuple[str, Sequence[str] | None]], more: Sequence[BatchOp], *,
        page_size: int = MAX_PAGE_SIZE,
    ) -> tuple[builtins.list[builtins.list[dict[str, Any]]], datetime | None,
               builtins.list[BatchResult]]:
        """:meth:`read_tables` with the operations ``more`` after the tables' GETs in the
        same ``$batch``; their results come back as answered."""
        ops = []
        headers = page_size_header(page_size, MAX_PAGE_SIZE)
        for entity_set, select in reads:
            params = query_params(select=select) or {}
            query = f"?{urlencode(params, quote_via=quote)}" if params else ""
            ops.append(BatchOp("GET", f"{self.batch_url(entity_set)}{query}", None, headers))
        results = self.batch([*ops, *more]) if ops or more else []
        answered = self.server_time()
        out: builtins.list[builtins.list[dict[str, Any]]] = []
        for (entity_set, _), result in zip(reads, results, strict=False):
            out.append(self.http.all_rows(batch_answer(result, f"reading {entity_set}"),
                                          headers=headers))
        return out, answered, results[len(ops):]

    def first_read(self, reads: Sequence[tuple[str, Sequence[str] | None]],
                   page: PageQuery) -> FirstRead:
        """A pass's first request: the reference tables of ``reads`` and the first page of
        ``page`` in one JSON ``$batch`` of GETs (the page alone when there are no tables),
        so a pass that reads reference tables costs one request less. The page's answer
        is not followed before the caller consumes ``pages``."""
        began = time.monotonic()
        headers = page_size_header(page.page_size, MAX_PAGE_SIZE)
        if not reads:
            body = self.http.get_json(self.url(page.entity_set), params=page.params(),
                                      headers=headers)
            return FirstRead([], self.http.pages_from(body, headers=headers, prefetch=True),
                             served_from(self.server_time(), began))
        params = page.params() or {}
        query = f"?{urlencode(params, quote_via=quote)}" if params else ""
        op = BatchOp("GET", f"{self.batch_url(page.entity_set)}{query}", None, headers)
        tables, answered, (result,) = self._read_tables(reads, [op])
        body = batch_answer(result, f"reading {page.entity_set}")
        return FirstRead(tables, self.http.pages_from(body, headers=headers, prefetch=True),
                         served_from(answered, began))

    def get_many(
        self, entity_set: str, ids: Sequence[str], *, select: Sequence[str] | None = None
    ) -> builtins.list[dict[str, Any]]:
        """Records by id (missing ids are simply absent from the result)."""
        rows: builtins.list[dict[str, Any]] = []
        for group in chunks(ids, IDS_PER_FILTER):
            rows.extend(self.list(entity_set, filter=id_filter("id", group), select=select))
        return rows

    def get_many_batched(
        self, entity_set: str, ids: Sequence[str], *, select: Sequence[str] | None = None
    ) -> builtins.list[dict[str, Any]]:
        """Records by id like :meth:`get_many`, but the GETs (one per ``IDS_PER_FILTER``
        ids) go 100 to a JSON ``$batch`` request (Learn: business-central
        dynamics-batch-requests, up to 100 operations per batch), so 4,000 records cost one
        request instead of 100."""
        ops = self._by_id_ops(entity_set, ids, select)
        return self._by_id_rows(self.batch(ops, continue_on_error=True) if ops else [])

    def tables_and_rows(
        self, reads: Sequence[tuple[str, Sequence[str] | None]], entity_set: str,
        ids: Sequence[str], *, select: Sequence[str] | None = None,
    ) -> tuple[builtins.list[builtins.list[dict[str, Any]]], builtins.list[dict[str, Any]]]:
        """:meth:`list_batched` of ``reads`` and :meth:`get_many_batched` of ``ids`` in one
        JSON ``$batch`` (a pass's reference tables and the records its first chunk compares
        with: one request instead of two). The caller keeps within the batch's 100
        operations (``len(reads) + ceil(len(ids) / IDS_PER_FILTER)``)."""
        tables, _, results = self._read_tables(reads, self._by_id_ops(entity_set, ids, select))
        return tables, self._by_id_rows(results)

    def _by_id_ops(self, entity_set: str, ids: Sequence[str],
                   select: Sequence[str] | None) -> builtins.list[BatchOp]:
        ops = []
        for group in chunks(ids, IDS_PER_FILTER):
            params = query_params(filter=id_filter("id", group), select=select) or {}
            ops.append(BatchOp("GET", f"{self.batch_url(entity_set)}?"
                                      f"{urlencode(params, quote_via=quote)}"))
        return ops

    @staticmethod
    def _by_id_rows(results: Sequence[BatchResult]) -> builtins.list[dict[str, Any]]:
        rows: builtins.list[dict[str, Any]] = []
        for result in results:
            body = batch_answer(result)
            if body.get("@odata.nextLink"):
                raise FatalApiError(result.status, "PagedBatchGet",
                                    "a batched GET by ids answered more than one page")
            rows.extend(body.get("value", []))
        return rows

    def get(self, entity_set: str, record_id: str) -> dict[str, Any] | None:
        """One record, or None if it does not exist."""
        try:
            return self.http.get_json(self.url(entity_set, record_id))
        except NotFoundError:
            return None

    def create(self, entity_set: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST a new record; returns the created entity (with id, etag, timestamps)."""
        resp = self.http.request(
            "POST", self.url(entity_set), json=body,
            headers={"Content-Type": "application/json"}, idempotent=False,
        )
        return resp.json()

    def update(
        self, entity_set: str, record_id: str, body: dict[str, Any], etag: str = "*"
    ) -> dict[str, Any]:
        """PATCH a record with If-Match (the etag read last, or ``*``)."""
        resp = self.http.request(
            "PATCH", self.url(entity_set, record_id), json=body,
            headers={"Content-Type": "application/json", "If-Match": etag},
        )
        return resp.json()

    def delete(self, entity_set: str, record_id: str, etag: str = "*") -> None:
        """DELETE a record (If-Match sent as the docs require)."""
        self.http.request("DELETE", self.url(entity_set, record_id), headers={"If-Match": etag})

    def batch(
        self, ops: Sequence[BatchOp], *, continue_on_error: bool = True,
        isolation_snapshot: bool = False, max_operations: int = 100,
    ) -> builtins.list[BatchResult]:
        """Run operations through the JSON ``$batch``; urls relative to the API root
        (``companies(<id>)/customers``). One result per operation, in order."""
        return bc_batch(self.http, self.settings.base_url, ops,
                        continue_on_error=continue_on_error,
                        isolation_snapshot=isolation_snapshot, max_operations=max_operations)

    def batch_url(self, entity_set: str, record_id: str | None = None) -> str:
        """An entity URL relative to the API root, as ``$batch`` operations take it."""
        company = key_segment("companies", self.settings.company_id, name="company_id")
        if record_id:
            return f"{company}/{key_segment(entity_set, record_id)}"
        return f"{company}/{identifier(entity_set, 'entity set')}"

    def close(self) -> None:
        """Release connections."""
        self.http.close()

