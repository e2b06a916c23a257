"""The one HTTP layer under both API clients: auth header, TLS, timeouts, retries, errors.

Retries live here and nowhere else. Throttling (429) and gateway failures (502/503/504) are
retried with capped exponential backoff under a total time budget; a ``Retry-After`` header
(seconds or an HTTP date) wins over the computed wait. A request that is not idempotent (a
POST that creates) is retried only when the service says it did not process it (429, 503) or
the connection was never made, so a retry can never create a second record.

TLS: ``verify`` is passed on every request. requests lets REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE
override ``Session.verify`` but never an explicit per-request value, so this is the only
setting that works with and without those variables (see docs: verified-here).
"""

from __future__ import annotations

import contextlib
import email.utils
import http.cookiejar
import logging
import random
import threading
import time
import urllib.parse
import urllib.request
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from bcdv import fastjson
from bcdv.clients import redact
from bcdv.errors import (
    ApiError,
    ConcurrencyError,
    FatalApiError,
    NotFoundError,
    RetriableApiError,
)

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# Statuses after which the service has certainly not applied the request.
NOT_PROCESSED_STATUSES = frozenset({429, 503})
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS"})
# Connections kept per host: Dataverse serves 52 concurrent requests per user (Learn:
# api-limits), so a pass never runs more at once than this.
POOL_SIZE = 52


@dataclass(frozen=True)
class ServiceBudget:
    """What a Dataverse answer says of the caller's service protection budget (Learn:
    api-limits, "HTTP response headers"; send-parallel-requests, "Optimum degree of
    parallelism"): ``x-ms-ratelimit-burst-remaining-xrm-requests`` (requests left in the
    5-minute window of the web server that answered), ``x-ms-ratelimit-time-remaining-xrm-
    requests`` (execution seconds left in it, for every connection of the user) and
    ``x-ms-dop-hint`` (the degree of parallelism the environment recommends). None where
    the answer did not carry the header; ``at`` is when the answer came (monotonic)."""

    requests_left: int | None
    seconds_left: float | None
    dop_hint: int | None
    at: float

    @classmethod
    def of(cls, headers: Mapping[str, str], at: float) -> ServiceBudget | None:
        """The budget an answer's headers state (None when it states none of it)."""
        def number(name: str) -> float | None:
            raw = headers.get(name)
            if raw is None:
                return None
            try:  # the service writes thousands separators: "1,199.97"
                return float(raw.replace(",", "").strip())
            except ValueError:
                return None

        left = number("x-ms-ratelimit-burst-remaining-xrm-requests")
        seconds = number("x-ms-ratelimit-time-remaining-xrm-requests")
        dop = number("x-ms-dop-hint")
        if left is None and seconds is None and dop is None:
            return None
        return cls(None if left is None else int(left), seconds,
                   None if dop is None or dop < 1 else int(dop), at)


@dataclass(frozen=True)
class RetryPolicy:
    """How long and how often to retry; the budget bounds the total time spent waiting."""

    max_attempts: int = 8
    budget_seconds: float = 300.0
    base_delay: float = 0.5
    max_delay: float = 60.0


class RequestPacer:
    """Client-side pacing under a service's protection limits, so that throttling is rare
    rather than the way the pace is found: at most ``limit`` requests start in any
    ``window`` seconds (Business Central and Dataverse both allow 6,000 per 5-minute sliding
    window per user), and after a 429 no request starts before its Retry-After has passed.

    Learn: Dataverse "Service protection API limits" (requests per 5-minute sliding window;
    429 with Retry-After; "the client should not send more requests until that time"),
    Business Central "Working with API limits in Dynamics 365 Business Central" (6,000
    OData requests per 5-minute sliding window). The window is padded (2 %, at least 0.1 s)
    because the service counts arrivals, which come a little after the starts counted here.
    One pacer serves every session of a process that talks to the same host (see
    :func:`pacer_for`); processes running at once each keep their own count.
    """

    def __init__(self, limit: int, window: float, *,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.limit = limit
        self.window = window + max(0.1, window * 0.02)
        self._clock = clock
        self._sleep = sleep
        self._starts: deque[float] = deque()
        self._paused_until = 0.0
        self._lock = threading.Lock()
        self.waited = 0.0  # seconds spent waiting here (for reports and tests)

    def acquire(self) -> None:
        """Wait until a request may start, and count it."""
        while True:
            with self._lock:
                now = self._clock()
                while self._starts and self._starts[0] <= now - self.window:
                    self._starts.popleft()
                wait = self._paused_until - now
                if self.limit > 0 and len(self._starts) >= self.limit:
                    wait = max(wait, self._starts[0] + self.window - now)
                if wait <= 0:
                    self._starts.append(now)
                    return
                self.waited += wait
            self._sleep(wait)

    def pause(self, seconds: float) -> None:
        """The service answered 429: nobody starts a request for ``seconds``."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + seconds)


_PACERS: dict[str, RequestPacer] = {}
_PACERS_LOCK = threading.Lock()
_LIMITS: tuple[int, float] | None = None  # configure_pacing(); else the settings


def pacer_for(url: str) -> RequestPacer:
    """The process's pacer of the host ``url`` names (limits: ``BCDV_REQUEST_LIMIT`` per
    ``BCDV_REQUEST_WINDOW_SECONDS``, read when the host is first used)."""
    host = urllib.parse.urlsplit(url).netloc.lower()
    with _PACERS_LOCK:
        pacer = _PACERS.get(host)
        if pacer is None:
            pacer = _PACERS[host] = RequestPacer(*_pacing_limits())
        return pacer


def _pacing_limits() -> tuple[int, float]:
    """(requests, window seconds): ``configure_pacing``'s, else ``BCDV_REQUEST_LIMIT`` per
    ``BCDV_REQUEST_WINDOW_SECONDS``."""
    if _LIMITS is not None:
        return _LIMITS
    from bcdv.settings import load_settings

    settings = load_settings()
    return settings.request_limit, float(settings.request_window_seconds)


def configure_pacing(limit: int, window: float) -> None:
    """Pace this process's requests at ``limit`` per ``window`` seconds from now on (instead
    of ``BCDV_REQUEST_LIMIT`` / ``BCDV_REQUEST_WINDOW_SECONDS``): a service whose limits
    are not Microsoft's defaults, such as the emulators scaled down by the benchmark."""
    global _LIMITS
    reset_pacers()
    _LIMITS = (limit, window)


def pacing_window() -> float:
    """The services' sliding window in seconds, as the pacing takes it (``configure_pacing``,
    else ``BCDV_REQUEST_WINDOW_SECONDS``: Microsoft's 300)."""
    return _pacing_limits()[1]


def reset_pacers() -> None:
    """Forget every host's pacer (tests, or after changing the limits)."""
    with _PACERS_LOCK:
        _PACERS.clear()


def retry_delay(policy: RetryPolicy, attempt: int, hint: float | None) -> float:
    """Seconds before attempt ``attempt + 1``: the service's Retry-After when it gave one,
    else capped exponential backoff with jitter."""
    if hint is not None:
        return hint
    return min(policy.max_delay, policy.base_delay * 2 ** (attempt - 1)) * random.uniform(
        0.8, 1.2)


class _NoCookies(http.cookiejar.DefaultCookiePolicy):
    """Refuse every cookie: Dataverse advises dropping ARRAffinity to spread load."""

    def set_ok(self, cookie: http.cookiejar.Cookie, request: urllib.request.Request) -> bool:
        return False


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _error_from_response(resp: requests.Response, method: str, url: str) -> ApiError:
    code, message = "", resp.reason or ""
    try:
        body = resp.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):
            code = str(err.get("code") or "")
            message = str(err.get("message") or message)
        elif isinstance(err, str):  # Entra ID style
            code, message = err, str(body.get("error_description") or message)
    elif resp.text.lstrip().startswith("<"):
        # Business Central answers an unknown environment with an XML error body.
        import re

        m_code = re.search(r"<code>(.*?)</code>", resp.text)
        m_msg = re.search(r"<message>(.*?)</message>", resp.text)
        code = m_code.group(1) if m_code else ""
        message = m_msg.group(1) if m_msg else message
    request_id = (
        resp.headers.get("request-id")
        or resp.headers.get("x-ms-service-request-id")
        or resp.headers.get("REQ_ID")
    )
    retry_after = parse_retry_after(resp.headers.get("Retry-After"))
    cls: type[ApiError]
    if resp.status_code in RETRY_STATUSES:
        cls = RetriableApiError
    elif resp.status_code == 404:
        cls = NotFoundError
    elif resp.status_code == 412 or (resp.status_code == 409 and code == "Request_EntityChanged"):
        cls = ConcurrencyError
    else:
        cls = FatalApiError
    return cls(resp.status_code, code, message, method=method, url=url,
               request_id=request_id, retry_after=retry_after)


class ApiSession:
    """An authenticated, retrying HTTP session for one service.

    Args:
        token: callable returning a bearer token (cached and refreshed by msal).
        ca_bundle: CA file for TLS verification, or None for the system store.
        timeout: seconds for connect and read of each request.
        retry: the retry policy.
        default_headers: headers sent on every request.
    """

    def __init__(
        self,
        token: Callable[[], str],
        *,
        ca_bundle: str | None = None,
        timeout: float = 60.0,
        retry: RetryPolicy | None = None,
        default_headers: Mapping[str, str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        redact.install()  # no token or secret in any log record (urllib3's and msal's too)
        self._token = token
        self.verify: str | bool = ca_bundle or True
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self.session = requests.Session()
        # Requests run at once (bulk writes, reference reads) each keep a connection instead
        # of a new TLS handshake per request past urllib3's default pool of 10.
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=POOL_SIZE)
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)
        self.session.cookies.set_policy(_NoCookies())
        self.session.headers.update(default_headers or {})
        self.last_server_time: datetime | None = None
        self.request_count = 0
        self.throttled = 0  # 429 answers so far (callers running requests at once back off)
        self.budget: ServiceBudget | None = None  # from the last answer that stated one

    def close(self) -> None:
        """Release pooled connections."""
        self.session.close()

    def _note_server_time(self, resp: requests.Response) -> None:
        budget = ServiceBudget.of(resp.headers, time.monotonic())
        if budget is not None:
            self.budget = budget
        date = resp.headers.get("Date")
        if date:
            # A malformed Date header only loses the clock-skew hint.
            with contextlib.suppress(TypeError, ValueError):
                self.last_server_time = email.utils.parsedate_to_datetime(date).astimezone(
                    timezone.utc
                )

    def _wait(self, attempt: int, hint: float | None, deadline: float) -> bool:
        """Sleep before the next attempt; False when the budget does not allow it."""
        delay = retry_delay(self.retry, attempt, hint)
        if time.monotonic() + delay > deadline:
            return False
        self._sleep(delay)
        return True

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        data: bytes | str | None = None,
        expected: tuple[int, ...] = (),
        idempotent: bool | None = None,
    ) -> requests.Response:
        """Send one request with retries; raise an ApiError subclass on failure.

        ``expected`` lists extra statuses (besides 2xx) returned to the caller instead of raised.
        """
        method = method.upper()
        if json is not None:  # encoded once for every attempt, and faster than requests does
            data = fastjson.dumpb(json)
            headers = {"Content-Type": "application/json", **(headers or {})}
        safe_to_repeat = method in IDEMPOTENT_METHODS if idempotent is None else idempotent
        deadline = time.monotonic() + self.retry.budget_seconds
        attempt = 0
        refreshed = False
        while True:
            attempt += 1
            hdrs = {"Authorization": f"Bearer {self._token()}", **(headers or {})}
            pacer = pacer_for(url)
            pacer.acquire()
            try:
                self.request_count += 1
                resp = self.session.request(
                    method, url, headers=hdrs, params=params, data=data,
                    timeout=self.timeout, verify=self.verify,
                )
            except (requests.ConnectionError, requests.Timeout) as exc:
                never_sent = isinstance(exc, requests.exceptions.ConnectTimeout) or (
                    "NewConnectionError" in repr(exc)
                )
                if (safe_to_repeat or never_sent) and attempt < self.retry.max_attempts and (
                    self._wait(attempt, None, deadline)
                ):
                    log.warning("%s %s: %s; retrying (attempt %d)", method, url,
                                type(exc).__name__, attempt + 1)
                    continue
                raise RetriableApiError(0, type(exc).__name__, str(exc), method=method,
                                        url=url) from exc
            self._note_server_time(resp)
            if resp.status_code < 400 or resp.status_code in expected:
                return resp
            if resp.status_code == 401 and not refreshed and hasattr(self._token,
                                                                    "invalidate"):
                # A cached token the service no longer accepts: fetch a new one, once.
                refreshed = True
                self._token.invalidate()
                log.warning("%s %s: 401; retrying once with a new token", method, url)
                continue
            err = _error_from_response(resp, method, url)
            if resp.status_code == 429:
                self.throttled += 1
                pacer.pause(retry_delay(self.retry, attempt, err.retry_after))
            may_retry = resp.status_code in RETRY_STATUSES and (
                safe_to_repeat or resp.status_code in NOT_PROCESSED_STATUSES
            )
            if may_retry and attempt < self.retry.max_attempts and self._wait(
                attempt, err.retry_after, deadline
            ):
                log.warning("%s %s: %s; retrying (attempt %d)", method, url, err, attempt + 1)
                continue
            raise err

    def get_json(self, url: str, **kwargs: Any) -> Any:
        """GET and decode JSON."""
        return fastjson.loads(self.request("GET", url, **kwargs).content)

    def iter_pages(
        self, url: str, *, params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None, prefetch: bool = False,
    ) -> Iterator[list[dict[str, Any]]]:
        """Yield the ``value`` list of each page, following ``@odata.nextLink`` verbatim
        (``prefetch``: see :meth:`pages_from`).

        Raises FatalApiError if the service hands back a link it already gave (a paging loop).
        """
        body = fastjson.loads(self.request("GET", url, params=params, headers=headers).content)
        yield from self.pages_from(body, headers=headers, prefetch=prefetch)

    def pages_from(self, first: Mapping[str, Any], *,
                   headers: Mapping[str, str] | None = None,
                   prefetch: bool = False) -> Iterator[list[dict[str, Any]]]:
        """The ``value`` of a page already answered (``first``: a GET's body, or a batched
        GET's) and of each page after it, ``@odata.nextLink`` followed verbatim.

        ``prefetch``: the next page is requested (in a thread of its own) as soon as the
        one before it is handed over, so the service makes it while the caller works on
        that one, instead of each waiting on the other; for callers that read every page
        (one that stops early has had one page more read).

        Raises FatalApiError if the service hands back a link it already gave (a paging loop).
        """
        seen: set[str] = set()
        body = first
        with contextlib.ExitStack() as stack:
            pool = (stack.enter_context(ThreadPoolExecutor(1, thread_name_prefix="bcdv-page"))
                    if prefetch else None)
            while True:
                link = body.get("@odata.nextLink")
                looped = bool(link) and link in seen
                ahead = None
                if link and not looped:
                    seen.add(link)
                    if pool is not None:
                        ahead = pool.submit(self._page, link, headers)
                yield list(body.get("value", []))
                if not link:
                    return
                if looped:
                    raise FatalApiError(0, "PagingLoop",
                                        f"the service returned the same nextLink twice: {link}")
                body = ahead.result() if ahead is not None else self._page(link, headers)

    def _page(self, link: str, headers: Mapping[str, str] | None) -> Any:
        return fastjson.loads(self.request("GET", link, headers=headers).content)

    def all_rows(self, first: Mapping[str, Any], *,
                 headers: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        """The rows of a page already answered (``first``, e.g. a batched GET's body) and of
        the pages after it, its ``@odata.nextLink`` followed as :meth:`iter_pages` does."""
        return [r for page in self.pages_from(first, headers=headers) for r in page]


@dataclass(frozen=True)
class PageQuery:
    """The first page of a paged read (an entity set, its filter and columns, rows a page),
    to send as one operation of a pass's first request (see the clients' ``first_read``)."""

    entity_set: str
    filter: str | None
    select: Sequence[str] | None
    page_size: int

    def params(self) -> dict[str, str] | None:
        """Its ``$filter``/``$select`` query options."""
        return query_params(filter=self.filter, select=self.select)


@dataclass
class FirstRead:
    """What a pass's first request read: the reference tables (every row of each), the
    first page of the records with the pages after it (``pages``: the nextLinks are
    followed as they are consumed), and ``served_from``: the service's clock when it began
    serving the request, at the latest (its Date header less the request's round trip,
    which the serving fits in), so no record changed after the page's snapshot can be
    older than it."""

    tables: list[list[dict[str, Any]]]
    pages: Iterator[list[dict[str, Any]]]
    served_from: datetime | None


def served_from(answered: datetime | None, began: float) -> datetime | None:
    """``answered`` (a Date header) less the time since ``began`` (monotonic seconds, taken
    before the request was sent)."""
    if answered is None:
        return None
    return answered - timedelta(seconds=time.monotonic() - began)


def query_params(*, filter: str | None = None, select: Sequence[str] | None = None,
                 orderby: str | None = None) -> dict[str, str] | None:
    """``$filter``/``$select``/``$orderby`` query options (None when there are none)."""
    params: dict[str, str] = {}
    if select:
        params["$select"] = ",".join(select)
    if filter:
        params["$filter"] = filter
    if orderby:
        params["$orderby"] = orderby
    return params or None


def page_size_header(page_size: int, maximum: int) -> dict[str, str]:
    """``Prefer: odata.maxpagesize`` clamped to the service's maximum."""
    return {"Prefer": f"odata.maxpagesize={max(1, min(page_size, maximum))}"}
