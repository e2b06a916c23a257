"""One adapter per system, so a pass reads and writes either side through the same calls."""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from bcdv.clients.batch import BatchOp, BatchResult
from bcdv.clients.business_central import IDS_PER_FILTER as BC_IDS_PER_FILTER
from bcdv.clients.business_central import BusinessCentralClient
from bcdv.clients.dataverse import IDS_PER_FILTER as DV_IDS_PER_FILTER
from bcdv.clients.dataverse import DataverseClient
from bcdv.clients.http import ApiSession, PageQuery, ServiceBudget, pacing_window
from bcdv.clients.odata import and_filters, compare, key_segment, parse_datetime
from bcdv.errors import BcdvError, ConcurrencyError, FatalApiError, RetriableApiError
from bcdv.mapping.model import Side

# Date headers have whole seconds and several web servers serve one service: stay a little
# behind the clock we were told, so nothing modified after the signpost can be older than it.
SIGNPOST_SLACK = timedelta(seconds=2)
T = TypeVar("T")
R = TypeVar("R")
# Rows per Dataverse bulk request (Learn: bulk-operations, 1,000 is the recommended batch size
# for CreateMultiple/UpdateMultiple on standard tables) and per $batch (1,000 requests).
BULK_ROWS = 1000
# The most rows a CreateMultiple request carries when a load is sized to whole rounds of
# requests (see rows_per_create): "around 1,000" (Learn gives no hard limit; payload size
# and the 2-minute timeout apply).
MAX_CREATE_ROWS = 1250
# $batch writes (see DataverseAdapter._batch_parts): the operations sent alone first to time
# one, the time a request is sized to take, and the fewest operations a request carries.
PROBE_OPS = 100
PART_SECONDS = 2.0
MIN_PART_OPS = 50


def rows_per_create(expected: int, at_once: int) -> int:
    """Rows per CreateMultiple request for a load of about ``expected`` creates, with
    ``at_once`` requests in flight (the service's ``x-ms-dop-hint``, Learn:
    send-parallel-requests).

    Every request of a round takes about as long (Dataverse works through a request's rows
    one after the other), so a load of 52,000 rows sent as 52 requests of 1,000 with 48 at
    once takes two rounds: 48, then 4 that start only when the first ones end, doubling the
    time. Past one round of 1,000-row requests the rows are spread over whole rounds
    instead (52,000 as 48 requests of 1,084: one round), at most ``MAX_CREATE_ROWS`` a
    request. A load within one round keeps requests of ``BULK_ROWS``."""
    at_once = max(1, at_once)
    if expected <= at_once * BULK_ROWS:
        return BULK_ROWS
    rounds = math.ceil(expected / (at_once * MAX_CREATE_ROWS))
    return math.ceil(expected / (rounds * at_once))


def _page_query(side: Side, since: datetime | None, columns: Sequence[str],
                extra_filter: str | None, page_size: int, *, milliseconds: bool) -> PageQuery:
    """A side's records modified at or after ``since`` (the watermark in the precision the
    service's filter takes), within its filter and ``extra_filter``."""
    wm = compare(side.modified_on, "ge", since, milliseconds=milliseconds) if since else None
    return PageQuery(side.entity_set, and_filters(side.filter, wm, extra_filter),
                     list(columns), page_size)


def _signpost(now: datetime | None, service: str) -> datetime:
    """A pass's signpost from the service's clock as its answer stated it (Date header)."""
    if now is None:
        raise BcdvError(f"{service} sent no Date header: no signpost for the pass")
    return now - SIGNPOST_SLACK


@dataclass(frozen=True)
class Written:
    """What a write returned: the record's id, its new modified-on and etag."""

    record_id: str
    modified: datetime | None
    etag: str | None
    created: bool
    row: dict[str, Any] | None = None  # the record as the service stored it, when returned


@dataclass(frozen=True)
class WriteItem:
    """One write of a batched load: insert (with our id on Dataverse) or update."""

    kind: str
    record_id: str | None
    payload: dict[str, Any]
    etag: str | None = None


class Pace:
    """How many bulk requests a pass keeps in flight at once, as the service tells it.

    Dataverse states on every answer the degree of parallelism it recommends
    (``x-ms-dop-hint``, Learn: send-parallel-requests) and what is left of the caller's
    service protection budget in the current 5-minute window, in requests and in seconds of
    execution (Learn: api-limits, "HTTP response headers"; see
    :class:`bcdv.clients.http.ServiceBudget`). The pace:

    - starts ``start`` requests at once, or the hint's worth when the service already
      stated it with the execution time left (``_first_round``); once answers tell what a
      request costs, keeps as
      many at once as the hint says (without a hint: one more per answer, doubling each
      round), never more than ``most`` (under the 52 concurrent requests a user may have);
    - keeps no more requests at once than the execution time left in the window pays for,
      each costing what the recent ones took, and starts none into a window stated spent
      while answers are still to come: a window running out slows the pass down before
      the service throttles it. The window slides: what the pace's own requests spent
      leaves it ``window_s`` after they were sent, so the time left the last answer stated
      grows by what has left since (``_left``), and a pass held back by a spent window
      starts again when its oldest requests leave the window, not when an answer next
      happens to state it. Learn calls those values debugging aids (each web server counts
      its own, and bcdv drops the affinity cookie), so they only ever hold requests back,
      never add one: with nothing in flight and nothing of its own about to leave the
      window, the next request goes, and a spent window answers it 429 with Retry-After;
    - halves what was in flight after a 429 (the HTTP layer waits its Retry-After, holds
      every other request to the host as long, and retries), then grows by one per round of
      answers;
    - starts the paced requests in the order they asked (``_wait_for_room``).

    Thread-safe: a load's batches may be written from a worker thread.
    """

    # What one bulk request is taken to cost before answers tell: a 1,000-row CreateMultiple
    # as Microsoft's bulk operation samples time it (10 ms a row written; the emulators'
    # cloud preset). A first round that costs more than the window has left is still served
    # (the service refuses only a request arriving into a spent window), and from its
    # answers the pace knows the cost and starts nothing more until the window has room. A
    # guess on the high side instead leaves the first window part unused, and every later
    # window repeats its shape: 20 s sent five requests of 11 s into a 120 s window, then
    # five more a round later, and the whole load ran a round late.
    GUESSED_COST = 10.0

    def __init__(self, start: int = 4, most: int = 48, window_s: float | None = None) -> None:
        self.workers, self.start, self.most = start, start, most
        # The service's sliding window (Dataverse: 5 minutes), padded: the service counts a
        # request from its arrival, a little after it was sent.
        window = pacing_window() if window_s is None else window_s
        self.window_s = window + max(0.5, window * 0.02)
        self._window = window
        self._spent: deque[tuple[float, float, float]] = deque()  # (sent, answered, seconds)
        # The window's execution budget, as the last answer that stated room implies it
        # (that room plus the pace's own spending in the window then; see _left).
        self.limit_s: float | None = None
        self.threshold = most  # past it, one more per round instead of one per answer
        self.held = 0  # starts the budget held back (reports and tests)
        self.peak = 0  # the most requests it had in flight at once
        self.cost: float | None = None  # seconds a recent request took (moving average)
        self._in_flight = 0
        self._grown = 0
        self._throttled_seen = 0
        self._cond = threading.Condition()
        self._tickets = itertools.count()  # paced requests start in the order they asked
        self._queue: deque[int] = deque()  # the tickets of the paced requests waiting

    def ceiling(self, budget: ServiceBudget | None) -> int:
        """The most requests at once: the service's hint, within ``most``."""
        hint = budget.dop_hint if budget is not None else None
        return max(1, min(self.most, hint or self.most))

    def _left(self, budget: ServiceBudget, now: float) -> float | None:
        """Execution seconds the window has left now, for requests not yet sent: what the
        last answer stated, plus what the pace's own requests answered before it spent and
        has left the window since, less what the requests in flight will spend (the service
        counts a request's time once it is served, from its arrival). None when no answer
        stated the time left."""
        if budget.seconds_left is None:
            return None
        while self._spent and self._spent[0][0] <= now - 2 * self.window_s:
            self._spent.popleft()
        gone = sum(seconds for sent, answered, seconds in self._spent
                   if answered <= budget.at and budget.at - self.window_s < sent
                   and sent <= now - self.window_s)
        coming = self._in_flight * (self.cost or 0.0)
        left = budget.seconds_left + gone - coming
        if self.limit_s is not None:
            # The service states the time left as 0 at the least: a round that overspent
            # the window (the first one may, see GUESSED_COST) leaves a deficit no answer
            # shows, and adding what left the window to a stated 0 took it for room (a
            # request was answered 429 so, the window 3 s over). The pace's own spending
            # in the window against the budget shows the deficit.
            left = min(left, self.limit_s - self._own_spent(now) - coming)
        return left

    def _own_spent(self, at: float) -> float:
        """Execution seconds of the pace's own answered requests sent in the window (as
        the service counts it, unpadded) that ends at ``at``."""
        return sum(seconds for sent, answered, seconds in self._spent
                   if answered <= at and sent > at - self._window)

    def _next_leaving(self, budget: ServiceBudget, now: float) -> float | None:
        """Seconds until the oldest of the pace's requests counted in the time the last
        answer stated leaves the window (None when none is still in it)."""
        sent = [s for s, answered, _ in self._spent
                if answered <= budget.at and s > now - self.window_s]
        return min(sent) + self.window_s - now if sent else None

    def _affordable(self, budget: ServiceBudget | None) -> bool:
        """Whether a request started now is served and keeps the window within its budget.

        The service refuses a request only when the window's budget is already spent as it
        arrives (Learn: api-limits, "you can expect to exceed the number of requests and
        execution time limits ... before the service protection API limits take effect"),
        so the pace itself keeps what is in flight within what is left (``_left``): a
        request goes when the time left pays for it, at what the recent ones cost. With
        nothing in flight, the request goes
        unless some of the pace's own spending is about to leave a window stated spent (it
        waits for that: a 429 would say as much, one request later); otherwise a 429 says
        when (Retry-After)."""
        if budget is None:
            return True
        if self._in_flight and budget.requests_left is not None and budget.requests_left <= 0:
            return False
        now = time.monotonic()
        left = self._left(budget, now)
        if left is None:
            return True
        if self._in_flight == 0:
            return left > 0 or self._next_leaving(budget, now) is None
        return left >= (self.cost or 0.0)

    def _first_round(self, budget: ServiceBudget | None) -> int:
        """Requests at once before any answer tells what one costs: ``start``, or, once the
        service stated its hint and the execution time left in the window, as many as that
        time pays for at ``GUESSED_COST`` seconds each (Learn's parallel operations sample
        reads the hint first, then sends that many at once). With a latency of seconds per
        request, waiting for the first answers before the hint applies loses a round."""
        if budget is None or not budget.dop_hint or budget.seconds_left is None:
            return self.start
        return max(self.start, min(budget.dop_hint, int(budget.seconds_left
                                                        / self.GUESSED_COST)))

    def run(self, send: Callable[[T], R], job: T, http: ApiSession) -> R:
        """``send(job)`` once the pace allows another request in flight."""
        with self._cond:
            ticket = next(self._tickets)
            self._queue.append(ticket)
            try:
                self._wait_for_room(http, ticket)
            finally:
                self._queue.remove(ticket)
                self._cond.notify_all()
            self._in_flight += 1
            self.peak = max(self.peak, self._in_flight)
        started = time.monotonic()
        ok = False
        try:
            out = send(job)
            ok = True
            return out
        finally:
            self._done(http, started, time.monotonic(), ok)

    def _wait_for_room(self, http: ApiSession, ticket: int) -> None:
        """Wait (holding ``_cond``) until the request may start: see :meth:`run`. Paced
        requests start in the order they asked (``ticket``): a load's batches then finish
        in the order they were sent, and each is stamped while later ones are in flight
        instead of all together after the last answer."""
        waited = False
        while True:
            ceiling = self.ceiling(http.budget)
            if self.cost is None:  # what a request costs is not known yet
                ceiling = min(ceiling, self._first_round(http.budget))
                if not self._throttled_seen:
                    self.workers = max(self.workers, ceiling)
            elif not self._throttled_seen and http.budget is not None and \
                    http.budget.dop_hint:
                # The service says how many at once: as many as soon as the budget's
                # room can be judged (Learn: send-parallel-requests), until it throttles.
                self.workers = max(self.workers, ceiling)
            self.workers = min(self.workers, ceiling)
            if self._in_flight < self.workers and self._queue[0] == ticket:
                if self._affordable(http.budget):
                    return
                if not waited:
                    self.held += 1
                    waited = True
            self._cond.wait(timeout=0.5)

    def _done(self, http: ApiSession, started: float, answered: float, ok: bool) -> None:
        seconds = answered - started
        budget = http.budget
        if budget is not None and started <= budget.at <= answered:
            # The budget stated since it was sent counts it (the service states what is left
            # after the request it answers); its own answer's budget was noted when it came,
            # before the answer was read.
            answered = budget.at
        with self._cond:
            self._in_flight -= 1
            self._spent.append((started, answered, seconds))
            if budget is not None and budget.seconds_left and budget.seconds_left > 0:
                self.limit_s = budget.seconds_left + self._own_spent(budget.at)
            if http.throttled > self._throttled_seen:
                self._throttled_seen = http.throttled
                # Half of what was in flight (this request included), not of the ceiling.
                self.workers = max(1, min(self.workers, self._in_flight + 1) // 2)
                self.threshold, self._grown = self.workers, 0
            elif ok:
                self.cost = seconds if self.cost is None else 0.7 * self.cost + 0.3 * seconds
                self._grown += 1
                if self.workers < self.threshold or self._grown >= self.workers:
                    self.workers = min(self.ceiling(http.budget), self.workers + 1)
                    self._grown = 0
            self._cond.notify_all()


def _failure(result: BatchResult) -> FatalApiError:
    """A refused batch operation, classified as a single request's answer would be."""
    status, code = result.status or 0, result.error_code or ""
    changed = status == 412 or (status == 409 and code == "Request_EntityChanged")
    cls = ConcurrencyError if changed else FatalApiError
    return cls(status, code, result.error_message or f"batch operation {result.state}")


class BusinessCentralAdapter:
    """Business Central side of a mapping."""

    system = "business_central"

    def __init__(self, client: BusinessCentralClient, page_size: int = 20000) -> None:
        self.client = client
        self.page_size = page_size

    def signpost(self) -> datetime:
        """The service's 'now' (minus slack), read with a cheap request before extracting."""
        self.client.http.request("GET", self.client.company_url, params={"$select": "id"})
        return _signpost(self.client.server_time(), "Business Central")

    def signpost_with(self, reads: Sequence[tuple[str, Sequence[str] | None]]
                      ) -> tuple[datetime, list[list[dict[str, Any]]]]:
        """The signpost and every row of ``reads`` (``(entity set, columns)`` each), in one
        JSON ``$batch`` of GETs: the pass's reference tables are its first request."""
        if not reads:
            return self.signpost(), []
        tables, now = self.client.read_tables(reads)
        return _signpost(now, "Business Central"), tables

    def first_read(self, reads: Sequence[tuple[str, Sequence[str] | None]], page: PageQuery
                   ) -> tuple[datetime, list[list[dict[str, Any]]],
                              Iterator[list[dict[str, Any]]]]:
        """:meth:`signpost_with` whose request also reads the first page of ``page`` (from
        :meth:`page_query`): the signpost, the tables and the pages. The signpost is taken
        from before the request was served, since the page in it is read while serving."""
        read = self.client.first_read(reads, page)
        return _signpost(read.served_from, "Business Central"), read.tables, read.pages

    def tables_and_rows(self, reads: Sequence[tuple[str, Sequence[str] | None]], side: Side,
                        ids: Sequence[str], columns: Sequence[str]
                        ) -> tuple[list[list[dict[str, Any]]], list[dict[str, Any]]]:
        """Every row of ``reads`` and the records ``ids`` (as :meth:`fetch`) in one
        ``$batch``, when :meth:`fits` says they do."""
        return self.client.tables_and_rows(reads, side.entity_set, ids, select=columns)

    @staticmethod
    def fits(tables: int, ids: int) -> bool:
        """Whether ``tables`` reads and the GETs of ``ids`` records fit one ``$batch`` (100
        operations, Learn: dynamics-batch-requests)."""
        return tables + math.ceil(ids / BC_IDS_PER_FILTER) <= 100

    def page_query(self, side: Side, since: datetime | None, columns: Sequence[str],
                   extra_filter: str | None = None) -> PageQuery:
        """The read of :meth:`iter_records`, to send as part of another request."""
        return _page_query(side, since, columns, extra_filter, self.page_size,
                           milliseconds=True)

    def iter_records(self, side: Side, since: datetime | None, columns: Sequence[str],
                     extra_filter: str | None = None) -> Iterator[list[dict[str, Any]]]:
        """Pages of records matching the side's filter, modified at or after ``since``."""
        q = self.page_query(side, since, columns, extra_filter)
        # Every page is read (the engine's readers consume them all): the next one is
        # asked for while the caller works on the one before (clients/http.py).
        yield from self.client.iter_pages(q.entity_set, filter=q.filter, select=q.select,
                                          page_size=q.page_size, prefetch=True)

    def fetch(self, side: Side, ids: Sequence[str], columns: Sequence[str]) -> list[dict[str, Any]]:
        """Records by id, ignoring the side filter (many ids: their GETs in ``$batch``)."""
        if len(ids) > BC_IDS_PER_FILTER:
            return self.client.get_many_batched(side.entity_set, ids, select=columns)
        return self.client.get_many(side.entity_set, ids, select=columns)

    def create(self, side: Side, payload: dict[str, Any], record_id: str | None) -> Written:
        """Create a record (BC chooses the id; the full record comes back)."""
        row = self.client.create(side.entity_set, payload)
        return Written(row["id"], parse_datetime(row.get(side.modified_on)),
                       row.get("@odata.etag"), True, row)

    def created_since(self, side: Side, payloads: Sequence[dict[str, Any]],
                      since: datetime) -> list[dict[str, Any]]:
        """Candidates for creates whose response was lost: records with one of the payloads'
        names, modified since a little before the first attempt, with the payloads' fields
        (the caller decides which, if any, is exactly the one a create made)."""
        if not side.name_field:
            return []
        names = sorted({str(p[side.name_field]) for p in payloads if p.get(side.name_field)})
        columns = sorted({side.key, side.modified_on, side.name_field,
                          *(k for p in payloads for k in p)})
        window = compare(side.modified_on, "ge", since - timedelta(seconds=5))
        rows: list[dict[str, Any]] = []
        for name in names:
            flt = and_filters(compare(side.name_field, "eq", name), window)
            rows.extend(self.client.list(side.entity_set, filter=flt, select=columns))
        return rows

    def write_many(self, side: Side, items: Sequence[WriteItem],
                   select: Sequence[str] = ()) -> list[Written | FatalApiError]:
        """Creates and updates through one JSON ``$batch`` per 100 (continue on error)."""
        ops = [BatchOp("POST", self.client.batch_url(side.entity_set), it.payload)
               if it.kind == "insert" else
               BatchOp("PATCH", self.client.batch_url(side.entity_set, it.record_id),
                       it.payload, {"If-Match": it.etag or "*"}) for it in items]
        out: list[Written | FatalApiError] = []
        for it, res in zip(items, self.client.batch(ops, continue_on_error=True), strict=True):
            if not res.ok or not isinstance(res.body, dict):
                out.append(_failure(res))
                continue
            row = res.body
            out.append(Written(str(row.get(side.key) or it.record_id), parse_datetime(
                row.get(side.modified_on)), row.get("@odata.etag"), it.kind == "insert", row))
        return out


class DataverseAdapter:
    """Dataverse side of a mapping."""

    system = "dataverse"

    def __init__(self, client: DataverseClient, page_size: int = 5000) -> None:
        self.client = client
        self.page_size = page_size
        self.pace = Pace()

    user_id: str | None = None
    op_seconds: float | None = None  # what one $batch write operation took (moving average)
    create_rows: int = BULK_ROWS  # rows per CreateMultiple request (the load sets it)

    def signpost(self) -> datetime:
        """The service's 'now' (minus slack), from WhoAmI's Date header."""
        self.user_id = self.client.whoami().get("UserId")
        return _signpost(self.client.server_time(), "Dataverse")

    def signpost_with(self, reads: Sequence[tuple[str, Sequence[str] | None]]
                      ) -> tuple[datetime, list[list[dict[str, Any]]]]:
        """The signpost and every row of ``reads`` (``(entity set, columns)`` each): WhoAmI
        and the reads in one ``$batch``, the pass's first request."""
        if not reads:
            return self.signpost(), []
        who, tables, now = self.client.whoami_and_tables(reads)
        self.user_id = who.get("UserId")
        return _signpost(now, "Dataverse"), tables

    def first_read(self, reads: Sequence[tuple[str, Sequence[str] | None]], page: PageQuery
                   ) -> tuple[datetime, list[list[dict[str, Any]]],
                              Iterator[list[dict[str, Any]]]]:
        """:meth:`signpost_with` whose ``$batch`` also reads the first page of ``page``
        (from :meth:`page_query`): the signpost, the tables and the pages. The signpost is
        taken from before the request was served, since the page in it is read while
        serving."""
        who, read = self.client.whoami_and_first_read(reads, page)
        self.user_id = who.get("UserId")
        return _signpost(read.served_from, "Dataverse"), read.tables, read.pages

    def tables_and_rows(self, reads: Sequence[tuple[str, Sequence[str] | None]], side: Side,
                        ids: Sequence[str], columns: Sequence[str]
                        ) -> tuple[list[list[dict[str, Any]]], list[dict[str, Any]]]:
        """Every row of ``reads`` and the rows ``ids`` (as :meth:`fetch`) in one ``$batch``
        with WhoAmI (the integration user, for a pass back's echo filter), when
        :meth:`fits` says they do."""
        who, tables, rows = self.client.whoami_tables_and_rows(reads, side.entity_set,
                                                               side.key, ids, select=columns)
        self.user_id = who.get("UserId")
        return tables, rows

    @staticmethod
    def fits(tables: int, ids: int) -> bool:
        """Whether WhoAmI, ``tables`` reads and the GETs of ``ids`` rows fit one ``$batch``
        (1,000 requests, Learn: execute-batch-operations-using-web-api)."""
        return 1 + tables + math.ceil(ids / DV_IDS_PER_FILTER) <= 1000

    def page_query(self, side: Side, since: datetime | None, columns: Sequence[str],
                   extra_filter: str | None = None) -> PageQuery:
        """The read of :meth:`iter_records`, to send as part of another request."""
        return _page_query(side, since, columns, extra_filter, self.page_size,
                           milliseconds=False)

    def iter_records(self, side: Side, since: datetime | None, columns: Sequence[str],
                     extra_filter: str | None = None) -> Iterator[list[dict[str, Any]]]:
        """Pages of rows matching the side's filter, modified at or after ``since``."""
        q = self.page_query(side, since, columns, extra_filter)
        # Every page is read (the engine's readers consume them all): the next one is
        # asked for while the caller works on the one before (clients/http.py).
        yield from self.client.iter_pages(q.entity_set, filter=q.filter, select=q.select,
                                          page_size=q.page_size, prefetch=True)

    def fetch(self, side: Side, ids: Sequence[str], columns: Sequence[str]) -> list[dict[str, Any]]:
        """Rows by id, ignoring the side filter (many ids: their GETs in ``$batch``)."""
        if len(ids) > DV_IDS_PER_FILTER:
            return self.client.get_many_batched(side.entity_set, side.key, ids, select=columns)
        return self.client.get_many(side.entity_set, side.key, ids, select=columns)

    def write_many(self, side: Side, items: Sequence[WriteItem],
                   select: Sequence[str] = ()) -> list[Written | FatalApiError]:
        """Creates through CreateMultiple (1,000 rows a request, our ids in the targets),
        not read back: their baseline is the first read's (engine/created.py); updates with
        If-Match in one ``$batch`` (continue on error), each returning its row.

        Updates stay single PATCHes with If-Match: UpdateMultiple carries no per-row
        If-Match in the Web API (Learn: bulk-operations; optimistic concurrency is a
        per-request header, perform-conditional-operations-using-web-api), and a person's
        change made between plan and write must be refused, not overwritten.

        A CreateMultiple the service refuses (one bad row rolls back the whole request) or
        whose answer is lost is sent again as ``$batch`` upserts by our ids, as before: an
        upsert of a row the lost request did create updates it (no duplicate), and a bad
        row fails alone with the service's message.
        """
        cols = list(dict.fromkeys([side.key, side.modified_on, *select]))
        out: list[Written | FatalApiError | None] = [None] * len(items)
        creates = [i for i, it in enumerate(items) if it.kind == "insert"]
        logical = side.key[:-2] if side.key.endswith("id") and len(side.key) > 2 else ""
        bulk = set(creates) if logical else set()
        rest = [i for i in range(len(items)) if i not in bulk]
        if logical:
            rest += self._create_multiple(side, logical, items, creates, out)
        rest.sort()
        for i, result in zip(rest, self._batch_writes(side, [items[i] for i in rest], cols),
                             strict=True):
            out[i] = result
        return [r for r in out if r is not None]

    def _create_multiple(self, side: Side, logical: str, items: Sequence[WriteItem],
                         creates: list[int], out: list[Written | FatalApiError | None]
                         ) -> list[int]:
        """CreateMultiple per ``create_rows`` of ``items[creates]``, as many at once as the
        pace allows; fills ``out`` (the ids, no baseline) and returns the indexes that must
        go by ``$batch`` instead."""
        size = self.create_rows
        chunks = [creates[s:s + size] for s in range(0, len(creates), size)]
        http = self.client.http
        if http.budget is None and len(chunks) > 1:
            # Nothing heard from the service yet: ask for its hint before sending several at
            # once, as Learn's parallel operations sample does (a WhoAmI, the cheapest call).
            self.client.whoami()

        def send(chunk: list[int]) -> bool:
            rows = [{**items[i].payload, side.key: items[i].record_id} for i in chunk]
            began = time.monotonic()
            try:  # the targets carry our ids, which Dataverse keeps (ids answered: the same)
                self.client.create_multiple(side.entity_set, logical, rows,
                                            chunk_size=len(rows))
            except (FatalApiError, RetriableApiError):
                return False
            if self.op_seconds is None:
                # Until a $batch write is timed, a row of a create is what one write takes:
                # the first updates after a full load are sized at once, without a probe
                # (see _batch_parts; kept for the next run like a measured time).
                self.op_seconds = (time.monotonic() - began) / len(rows)
            return True

        rest: list[int] = []
        with ThreadPoolExecutor(max_workers=min(self.pace.most, len(chunks)) or 1) as pool:
            futures = {pool.submit(self.pace.run, send, chunk, http): chunk
                       for chunk in chunks}
            for future in as_completed(futures):
                chunk = futures[future]
                if not future.result():
                    rest.extend(chunk)
                    continue
                for i in chunk:
                    out[i] = Written(str(items[i].record_id), None, None, True, None)
        return rest

    def _batch_parts(self, ops: list[BatchOp]) -> list[BatchResult]:
        """Run write operations through ``$batch`` (continue on error), one result per
        operation in order, in requests sized to take about ``PART_SECONDS`` each and sent
        as many at once as the pace allows.

        Dataverse runs a batch's operations one after the other (Learn:
        execute-batch-operations-using-web-api), so 1,000 updates in one request take 1,000
        updates' time, while requests sent in parallel are served at once (Learn:
        send-parallel-requests). How long an operation takes is measured on the requests
        sent (or, before any was, on a CreateMultiple's rows, or in the last run): without
        any of these, the first ``PROBE_OPS`` go alone and tell. A fast service
        (each operation a fraction of a millisecond) gets requests of 1,000 as before; one
        taking 10 ms an operation gets requests of 200, in parallel."""
        http = self.client.http

        def timed(part: list[BatchOp]) -> list[BatchResult]:
            began = time.monotonic()
            answers = self.client.batch(part, continue_on_error=True)
            each = (time.monotonic() - began) / len(part)
            self.op_seconds = each if self.op_seconds is None else \
                0.7 * self.op_seconds + 0.3 * each
            return answers

        out: list[BatchResult] = []
        if self.op_seconds is None and len(ops) > 2 * PROBE_OPS:
            out += self.pace.run(timed, ops[:PROBE_OPS], http)
            ops = ops[PROBE_OPS:]
        size = BULK_ROWS if not self.op_seconds else max(
            MIN_PART_OPS, min(BULK_ROWS, int(PART_SECONDS / self.op_seconds)))
        parts = [ops[i:i + size] for i in range(0, len(ops), size)]
        if len(parts) <= 1:
            return out + (self.pace.run(timed, parts[0], http) if parts else [])
        with ThreadPoolExecutor(max_workers=min(self.pace.most, len(parts)),
                                thread_name_prefix="bcdv-batch") as pool:
            for answers in pool.map(lambda part: self.pace.run(timed, part, http), parts):
                out += answers
        return out

    def _batch_writes(self, side: Side, items: Sequence[WriteItem],
                      cols: list[str]) -> list[Written | FatalApiError]:
        """Upserts (creates with our ids) and If-Match updates in one ``$batch`` (continue
        on error), each returning its row, so no re-read is needed for the baselines."""
        ops = []
        for it in items:
            headers = {"Prefer": "return=representation"}
            if it.kind != "insert":
                headers["If-Match"] = it.etag or "*"
            url = f"{key_segment(side.entity_set, it.record_id)}?$select={','.join(cols)}"
            ops.append(BatchOp("PATCH", url, it.payload, headers))
        out: list[Written | FatalApiError] = []
        if not ops:
            return out
        for it, res in zip(items, self._batch_parts(ops), strict=True):
            if not res.ok:
                out.append(_failure(res))
                continue
            row = res.body if isinstance(res.body, dict) else {}
            out.append(Written(str(it.record_id), parse_datetime(row.get(side.modified_on)),
                               row.get("@odata.etag"), res.status == 201, row or None))
        return out


Adapter = BusinessCentralAdapter | DataverseAdapter
