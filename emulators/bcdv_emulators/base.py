"""Service plumbing shared by the three emulators: ASGI entry, admin API, faults, throttling.

Each service is an ASGI app (no framework routing: the services must control every status
code and body, and a client mistake must never turn into a framework's 422/500).

Admin API (plainly not Microsoft's; loopback only, no auth), on every service:

- ``GET  /_emulator/health``                         -> {"service", "now"}
- ``POST /_emulator/reset`` [{"seed": name}]         -> data back to ``empty`` (or ``seed``);
  also clears faults, clock offset, throttling windows and request counters
- ``POST /_emulator/seed`` {"seed": "demo"|"empty"|"synthetic:N"} -> replace data with a seed
- ``GET|DELETE /_emulator/requests``                 -> counters by service/method/entity/status
- ``GET|PUT /_emulator/clock`` {"offset_seconds": n} -> the service's now = real now + n
- ``GET|PUT|DELETE /_emulator/faults``               -> see :class:`Faults`
- ``GET|DELETE /_emulator/faults/injected``         -> faults injected so far, by kind
  ({"429": n, "503": n, "reset": n, "timeout": n, "lost_response": n, "held": n, ...}, plus
  "lost_response:<request kind>"), and how many requests are held right now
- ``POST /_emulator/faults/release``                 -> let held requests go (they are then
  dropped without an answer: their client is gone)
- ``GET|PUT /_emulator/throttling``                  -> see :class:`Throttling`
- ``GET /_emulator/records/<entity>``                -> stored rows of an entity, as served
- ``POST /_emulator/generate`` {"entity", "count", "start"} -> bulk rows for benchmarks (see
  :mod:`bcdv_emulators.generate`)
- ``GET|DELETE /_emulator/stats``                    -> requests by kind, rows, batch operations,
  429s, simulated delay and peak concurrency since the last reset (see
  :class:`bcdv_emulators.perf.Stats`)
- ``GET|PUT|DELETE /_emulator/latency``              -> the latency profile (see
  :mod:`bcdv_emulators.perf`): ``{"rtt_ms", "read_row_ms", "write_row_ms"}`` or
  ``{"preset": "cloud", ...overrides}``; DELETE = none
"""
from __future__ import annotations

import asyncio
import email.utils
import json
import random
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from bcdv_emulators.config import Settings
from bcdv_emulators.perf import Latency, Stats, parse_latency, scaled_limits


class ServiceError(Exception):
    """An error a service answers with (status, its own error code, message, headers)."""

    def __init__(self, status: int, code: str, message: str,
                 headers: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or []


class Req:
    """A parsed HTTP request (also synthesised for $batch parts)."""

    def __init__(self, method: str, path: str, query_string: str,
                 headers: dict[str, str], body: bytes, base_url: str) -> None:
        self.method = method.upper()
        self.path = path
        self.query_string = query_string
        self.headers = headers
        self.body = body
        self.base_url = base_url
        self.claims: dict[str, Any] | None = None
        self.served_s = 0.0  # execution time counted against the caller's window
        self.queued_s = 0.0  # time it waited behind other requests in this one process
        self.query: list[tuple[str, str]] = parse_qsl(query_string, keep_blank_values=True)

    def header(self, name: str, default: str | None = None) -> str | None:
        """Case-insensitive header lookup."""
        return self.headers.get(name.lower(), default)

    def param(self, name: str) -> str | None:
        """First value of a query option."""
        for k, v in self.query:
            if k == name:
                return v
        return None

    def prefer(self) -> dict[str, str]:
        """The Prefer header as {preference: value} (several comma-separated ones allowed)."""
        prefs: dict[str, str] = {}
        raw = self.header("prefer") or ""
        for item in _split_prefer(raw):
            name, _, value = item.partition("=")
            prefs[name.strip().lower()] = value.strip().strip('"')
        return prefs


def _split_prefer(raw: str) -> list[str]:
    """Split a Prefer header on commas that are not inside double quotes."""
    out, cur, quoted = [], "", False
    for ch in raw:
        if ch == '"':
            quoted = not quoted
        if ch == "," and not quoted:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur.strip())
    return out


@dataclass
class Resp:
    """A response; ``entity`` only feeds the request counters.

    ``read_rows`` / ``write_rows`` / ``ops`` feed the statistics and the latency profile's
    per-row cost: rows a collection page served, targets of a bulk message, totals (and
    operations by method) of a $batch. Left None, a served single-record request counts one
    row (see :func:`rows_of`).
    """

    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    entity: str = "-"
    read_rows: int | None = None
    write_rows: int | None = None
    ops: Counter[str] | None = None
    delay_ms: tuple[float, float] = (0.0, 0.0)  # simulated (round trip, row cost) served

    def header(self, name: str) -> str | None:
        """First value of a response header."""
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None


def json_resp(status: int, doc: Any, content_type: str = "application/json",
              headers: list[tuple[str, str]] | None = None, entity: str = "-") -> Resp:
    """A JSON response."""
    body = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
    return Resp(status, body, [("Content-Type", content_type), *(headers or [])], entity)


@dataclass
class Faults:
    """Injected failures; all off by default.

    - ``latency_ms``: added to every request.
    - ``error_rates``: {"429": 0.1, "503": 0.05, ...} probability per status (429/500/502/503/504).
    - ``next``: deterministic list of statuses for the next requests (consumed one per request);
      the entry ``"reset"`` resets the connection, ``"timeout"`` stalls and ``"lost"`` serves
      the request and then drops the connection without answering.
    - ``retry_after``: seconds sent in Retry-After with injected 429/502/503.
    - ``reset_rate`` / ``timeout_rate``: probability of a connection reset before the request
      is processed / a stall of ``timeout_seconds`` followed by 504 (nothing processed).
    - ``kinds``: request kinds the random and ``next`` faults above apply to (None: all).
      Kinds: ``read`` (GET), ``batch`` ($batch), ``bulk`` (Dataverse CreateMultiple,
      UpdateMultiple, UpsertMultiple), ``create`` (another POST), ``update`` (PATCH/PUT),
      ``delete``, ``token`` (the identity token endpoint).
    - ``lost_response_rate`` / ``lost_response_count``: a write of one of ``lost_kinds``
      (default batch, bulk, create, update) is applied and committed, then the connection is
      dropped without an answer (the client sees a reset / RemoteDisconnected), with that
      probability, or for the next ``lost_response_count`` such writes. Only successful
      answers are lost (a write the service refused changed nothing).
    - ``hold``: ``{"kinds": ["batch"], "nth": 2, "when": "before"|"after"}`` stalls the nth
      request of those kinds (counted from this PUT) before or after it is applied, until
      ``POST /_emulator/faults/release`` (or new faults); it is then dropped unanswered. A
      drill kills its client meanwhile (a crash between two batches, or after a write).
    - ``rules``: record failure rules, e.g. ``{"entity": "accounts", "match": {"name": "X"},
      "status": 400, "code": "0x80040203", "message": "...", "methods": ["POST", "PATCH"]}``;
      a write whose resulting record matches fails with that error (bulk and batch too).
    - ``random_seed``: makes the random draws reproducible.
    """

    latency_ms: int = 0
    error_rates: dict[str, float] = field(default_factory=dict)
    next: list[Any] = field(default_factory=list)
    retry_after: int = 1
    reset_rate: float = 0.0
    timeout_rate: float = 0.0
    timeout_seconds: float = 30.0
    kinds: list[str] | None = None
    lost_response_rate: float = 0.0
    lost_response_count: int = 0
    lost_kinds: list[str] = field(default_factory=lambda: list(WRITE_KINDS))
    hold: dict[str, Any] | None = None
    rules: list[dict[str, Any]] = field(default_factory=list)
    random_seed: int | None = None

    def __post_init__(self) -> None:
        for name in ("kinds", "lost_kinds"):
            unknown = set(getattr(self, name) or ()) - set(REQUEST_KINDS)
            if unknown:
                raise ValueError(f"{name}: unknown request kinds {sorted(unknown)}; "
                                 f"known: {list(REQUEST_KINDS)}")
        for status in self.error_rates:
            if int(status) not in (429, 500, 502, 503, 504):
                raise ValueError(f"error_rates: {status} is not 429/500/502/503/504")
        if self.hold is not None:
            hold = {"kinds": list(WRITE_KINDS), "nth": 1, "when": "before", **self.hold}
            if hold["when"] not in ("before", "after") or int(hold["nth"]) < 1:
                raise ValueError("hold: when is before|after, nth >= 1")
            self.hold = hold


def rows_of(method: str, resp: Resp) -> tuple[int, int]:
    """(rows read, rows written) by one served request or $batch operation."""
    ok = resp.status < 400
    if method.upper() in ("GET", "HEAD"):
        read = resp.read_rows if resp.read_rows is not None else int(ok and resp.status != 304)
        return read, 0
    written = resp.write_rows if resp.write_rows is not None else int(ok)
    return resp.read_rows or 0, written


def stat_kind(req: Req) -> str:
    """The statistics kind of a request (see :class:`bcdv_emulators.perf.Stats`)."""
    kind = request_kind(req)
    if kind == "read":
        last = req.path.rstrip("/").rsplit("/", 1)[-1]
        page = "(" not in last and not last.startswith("$") and last not in (
            "WhoAmI", "v2.0", "v9.0", "v9.1", "v9.2", "")
        return "get_page" if page else "get"
    if kind == "bulk":
        return req.path.rstrip("/").rsplit(".", 1)[-1]
    return {"create": "post", "update": "patch"}.get(kind, kind)


REQUEST_KINDS = ("read", "batch", "bulk", "create", "update", "delete", "token")
WRITE_KINDS = ("batch", "bulk", "create", "update")
BULK_MESSAGES = ("CreateMultiple", "UpdateMultiple", "UpsertMultiple", "DeleteMultiple")


def request_kind(req: Req) -> str:
    """What a request is, for fault targeting (see :class:`Faults`)."""
    path = req.path.rstrip("/")
    if req.method in ("GET", "HEAD", "OPTIONS"):
        return "read"
    if req.method == "DELETE":
        return "delete"
    if req.method in ("PATCH", "PUT", "MERGE"):
        return "update"
    if path.endswith("/$batch"):
        return "batch"
    if path.endswith("/token"):
        return "token"
    if path.rsplit(".", 1)[-1] in BULK_MESSAGES:
        return "bulk"
    return "create"


@dataclass
class Throttling:
    """Service protection limits per caller, over a sliding window (defaults = Microsoft's).

    ``requests`` per ``window_seconds``; ``execution_ms`` of combined handler time per window
    (Dataverse only); ``concurrent`` requests in flight (beyond it: 429 at once); ``processing``
    requests handled at once, the rest queue (Business Central only); ``dop_hint`` the degree
    of parallelism Dataverse recommends in ``x-ms-dop-hint`` (kept under ``concurrent``).
    """

    enabled: bool = True
    requests: int = 6000
    window_seconds: float = 300.0
    execution_ms: int = 1_200_000
    concurrent: int = 52
    processing: int = 0
    dop_hint: int = 48

    def recommended_dop(self) -> int:
        """``x-ms-dop-hint``: ``dop_hint``, never more than the concurrent requests allowed."""
        return max(1, min(self.dop_hint, self.concurrent))


class ServiceState:
    """Mutable per-service state: clock, faults, throttling, counters."""

    def __init__(self, throttling: Throttling) -> None:
        self.offset = 0.0
        self.faults = Faults()
        self.rng = random.Random()
        self.default_throttling = throttling
        self.throttling = Throttling(**asdict(throttling))
        self.counters: Counter[tuple[str, str, int]] = Counter()
        self.injected: Counter[str] = Counter()
        self.hold_seen = 0
        self.held = 0
        self.release = 0  # bumped to let held requests go
        # Per caller: [arrival, execution seconds] of each request in the sliding window.
        self.window: dict[str, deque[list[float]]] = {}
        self.peak_spent = 0.0  # the most execution seconds any caller's window held
        self.in_flight: dict[str, int] = {}
        self.lock = threading.Lock()
        self.default_latency = Latency()
        self.latency = Latency()
        self.stats = Stats()

    def now(self) -> float:
        """The service clock: real time + configured offset."""
        return time.time() + self.offset


class QueueingLock:
    """The emulator's database lock (re-entrant), which tells each thread how long it
    waited for it.

    One emulator process serves a service's requests one at a time; the real service
    serves parallel requests at once (Learn: send-parallel-requests). The time a request
    waits here behind another is not execution time of its own, so the service protection
    window does not count it (see ``Service._admitted``)."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._local = threading.local()

    def __enter__(self) -> QueueingLock:
        if not self._lock.acquire(blocking=False):
            asked = time.monotonic()
            self._lock.acquire()
            self._local.waited = self.waited() + time.monotonic() - asked
        return self

    def __exit__(self, *exc: object) -> None:
        self._lock.release()

    def waited(self) -> float:
        """Seconds this thread waited for the lock since :meth:`take_waited`."""
        return float(getattr(self._local, "waited", 0.0))

    def take_waited(self) -> float:
        """Seconds this thread waited for the lock since the last call; starts again."""
        waited, self._local.waited = self.waited(), 0.0
        return waited


class Service:
    """Base ASGI service. Subclasses implement :meth:`handle` and the data hooks."""

    name = "service"

    def __init__(self, settings: Settings, throttling: Throttling) -> None:
        self.settings = settings
        self.state = ServiceState(throttling)
        self.db_lock = QueueingLock()
        self._semaphore: asyncio.Semaphore | None = None

    # --- hooks --------------------------------------------------------------------------
    def handle(self, req: Req) -> Resp:
        """Serve one API request (runs in a worker thread)."""
        raise NotImplementedError

    def reset_data(self, seed: str) -> None:
        """Replace all data with ``seed``."""
        raise NotImplementedError

    def records(self, entity: str) -> list[dict[str, Any]] | None:
        """Stored rows of ``entity`` as served (None if unknown)."""
        return None

    def error(self, status: int, code: str, message: str,
              headers: list[tuple[str, str]] | None = None) -> Resp:
        """An error response in this service's documented shape."""
        return json_resp(status, {"error": {"code": code, "message": message}}, headers=headers)

    def fault_error(self, status: int) -> Resp:
        """Body for an injected error status."""
        return self.error(status, str(status), "Injected fault.")

    def throttle_error(self, facet: str, retry_after: int) -> Resp:
        """Body for a service protection 429."""
        return self.error(429, "429", "Too many requests.",
                          [("Retry-After", str(retry_after))])

    def caller(self, req: Req) -> str:
        """Throttling key: the bearer's app id, else the remote identity."""
        return "app"

    def extra_headers(self, req: Req, resp: Resp) -> list[tuple[str, str]]:
        """Headers every response of this service carries."""
        return []

    # --- record failure rules -------------------------------------------------------------
    def rule_for(self, entity: str, method: str, record: dict[str, Any]) -> dict[str, Any] | None:
        """The first fault rule matching a record being written, if any."""
        for rule in self.state.faults.rules:
            if rule.get("entity") not in (None, entity):
                continue
            methods = rule.get("methods")
            if methods and method not in methods:
                continue
            if all(record.get(k) == v for k, v in (rule.get("match") or {}).items()):
                return rule
        return None

    # --- ASGI -----------------------------------------------------------------------------
    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers", [])}
        host = headers.get("host") or f"{self.settings.host}"
        req = Req(scope["method"], scope.get("path", "/"),
                  scope.get("query_string", b"").decode("latin-1"), headers, body,
                  f"https://{host}")
        if req.path.startswith("/_emulator"):
            resp = self._admin(req)
        else:
            resp = await self._serve(req, send)
            if resp is None:
                return
        await self._send(resp, send, req)

    async def _send(self, resp: Resp, send: Callable, req: Req) -> None:
        hdrs = list(resp.headers)
        names = {k.lower() for k, _ in hdrs}
        if "date" not in names:
            hdrs.append(("Date", email.utils.formatdate(self.state.now(), usegmt=True)))
        for k, v in self.extra_headers(req, resp):
            if k.lower() not in names:
                hdrs.append((k, v))
        hdrs.append(("Content-Length", str(len(resp.body))))
        await send({"type": "http.response.start", "status": resp.status,
                    "headers": [(k.lower().encode("latin-1"), str(v).encode("latin-1"))
                                for k, v in hdrs]})
        await send({"type": "http.response.body", "body": resp.body})

    async def _serve(self, req: Req, send: Callable) -> Resp | None:
        stats = self.state.stats
        stats.enter()
        resp: Resp | None = None
        try:
            resp = await self._admitted(req, send)
        finally:
            stats.leave()
            self._record(req, resp)
        return resp

    async def _admitted(self, req: Req, send: Callable) -> Resp | None:
        key = self.caller(req)
        entry = self._admit(key)
        if isinstance(entry, Resp):
            self._count(req.method, "-", entry.status)
            return entry
        started = time.monotonic()
        try:
            # Latency and stalls count as time in flight, as a slow server's would; waiting
            # behind this process's other requests does not (see QueueingLock).
            return await self._faulted_or_handled(req, send)
        finally:
            req.served_s = max(0.0, time.monotonic() - started - req.queued_s)
            self._release(key, entry, req.served_s)

    def _record(self, req: Req, resp: Resp | None) -> None:
        """Count a request in the statistics; say the simulated delay in a header."""
        if resp is None:  # dropped or held: the client got no answer
            self.state.stats.record(stat_kind(req), 0)
            return
        read, written = rows_of(req.method, resp) if resp.status < 400 or resp.ops else (0, 0)
        rtt_ms, row_ms = resp.delay_ms
        self.state.stats.record(stat_kind(req), resp.status, read, written, resp.ops,
                                rtt_ms, row_ms, served_ms=req.served_s * 1000)
        if rtt_ms or row_ms:
            resp.headers.append(("x-bcdv-emulator-delay-ms", f"{rtt_ms + row_ms:.3f}"))

    async def _faulted_or_handled(self, req: Req, send: Callable) -> Resp | None:
        st = self.state
        f = st.faults
        if f.latency_ms:
            await asyncio.sleep(f.latency_ms / 1000)
        kind = request_kind(req)
        injected = self._draw(f, kind)
        if injected == "reset":
            self._count(req.method, "-", 0)
            if self._drop(send):
                return None
            injected = 502
        if injected == "timeout":
            await asyncio.sleep(f.timeout_seconds)
            injected = 504
        if injected is not None and injected != "lost":
            resp = self.fault_error(int(injected))
            if int(injected) in (429, 502, 503) and not resp.header("retry-after"):
                resp.headers.append(("Retry-After", str(f.retry_after)))
            self._count(req.method, "-", resp.status)
            return resp
        hold = self._take_hold(f, kind)
        if hold == "before":
            await self._held(send)
            return None
        lat = st.latency
        if lat.rtt_ms:
            # The round trip: off the event loop's critical path and outside every lock, so
            # other requests are served meanwhile.
            with st.stats.delay():
                await asyncio.sleep(lat.rtt_ms / 1000)
        if self.state.throttling.enabled and self.state.throttling.processing:
            if self._semaphore is None:
                self._semaphore = asyncio.Semaphore(self.state.throttling.processing)
            async with self._semaphore:
                resp = await self._in_thread(req)
                row_s = await self._row_cost(st.stats, lat, req, resp)
        else:
            resp = await self._in_thread(req)
            row_s = await self._row_cost(st.stats, lat, req, resp)
        resp.delay_ms = (lat.rtt_ms, row_s * 1000)
        self._count(req.method, resp.entity, resp.status)
        if hold == "after":
            await self._held(send)
            return None
        if resp.status < 400 and (injected == "lost" or self._lose(f, kind)):
            with st.lock:
                st.injected["lost_response"] += 1
                st.injected[f"lost_response:{kind}"] += 1
            if self._drop(send):
                return None
        return resp

    @staticmethod
    async def _row_cost(stats: Stats, lat: Latency, req: Req, resp: Resp) -> float:
        """Wait the server cost of the rows a request read and wrote (after the handler has
        released the database lock); returns the seconds waited."""
        if not (lat.read_row_ms or lat.write_row_ms):
            return 0.0
        seconds = lat.row_seconds(*rows_of(req.method, resp))
        if seconds:
            with stats.delay():
                await asyncio.sleep(seconds)
        return seconds

    def _draw(self, f: Faults, kind: str) -> Any:
        """The fault to inject before serving a request of ``kind`` (None: serve it)."""
        st = self.state
        if f.kinds is not None and kind not in f.kinds:
            return None
        injected: Any = None
        with st.lock:
            if f.next:
                injected = f.next.pop(0)
            else:
                for status, rate in f.error_rates.items():
                    if rate and st.rng.random() < float(rate):
                        injected = int(status)
                        break
                if injected is None and f.reset_rate and st.rng.random() < f.reset_rate:
                    injected = "reset"
                if injected is None and f.timeout_rate and st.rng.random() < f.timeout_rate:
                    injected = "timeout"
            if injected is not None and injected != "lost":
                st.injected[str(injected)] += 1
        return injected

    def _lose(self, f: Faults, kind: str) -> bool:
        """Whether this served write's answer is lost (see Faults.lost_response_*)."""
        if kind not in f.lost_kinds:
            return False
        st = self.state
        with st.lock:
            if f.lost_response_count > 0:
                f.lost_response_count -= 1
                return True
            return bool(f.lost_response_rate) and st.rng.random() < f.lost_response_rate

    def _take_hold(self, f: Faults, kind: str) -> str | None:
        """"before"/"after" when this request is the one ``Faults.hold`` stalls."""
        hold = f.hold
        if not hold or kind not in hold["kinds"]:
            return None
        with self.state.lock:
            self.state.hold_seen += 1
            if self.state.hold_seen != int(hold["nth"]):
                return None
            self.state.injected["held"] += 1
            self.state.injected[f"held:{hold['when']}:{kind}"] += 1
        return str(hold["when"])

    async def _held(self, send: Callable) -> None:
        """Stall until released (or 10 minutes), then drop the connection unanswered."""
        st = self.state
        with st.lock:
            st.held += 1
            mark = st.release
        try:
            deadline = time.monotonic() + 600
            while st.release == mark and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
        finally:
            with st.lock:
                st.held -= 1
        self._drop(send)

    @staticmethod
    def _drop(send: Callable) -> bool:
        """Abort the connection (an RST instead of a response); False if we cannot."""
        transport = getattr(getattr(send, "__self__", None), "transport", None)
        if transport is None:
            return False
        transport.abort()
        return True

    async def _in_thread(self, req: Req) -> Resp:
        """``handle`` in a worker thread; the time spent waiting for a thread and for the
        database lock is the request's ``queued_s``."""
        return await asyncio.to_thread(self._guarded, req, time.monotonic())

    def _guarded(self, req: Req, asked: float) -> Resp:
        req.queued_s += time.monotonic() - asked  # waiting for a worker thread
        self.db_lock.take_waited()
        try:
            return self.handle(req)
        except Exception as exc:  # a bug of ours, never a client mistake: still JSON
            import traceback
            traceback.print_exc()
            return self.error(500, "0x80040216", f"Emulator internal error: {exc!r}")
        finally:
            req.queued_s += self.db_lock.take_waited()

    def _count(self, method: str, entity: str, status: int) -> None:
        with self.state.lock:
            self.state.counters[(method, entity, status)] += 1

    # --- throttling -----------------------------------------------------------------------
    def _admit(self, key: str) -> Resp | list[float]:
        """The 429 of a spent limit, or the request's entry in the caller's window."""
        st = self.state
        t = st.throttling
        now = time.monotonic()
        with st.lock:
            win = st.window.setdefault(key, deque())
            while win and win[0][0] < now - t.window_seconds:
                win.popleft()
            if t.enabled:
                inflight = st.in_flight.get(key, 0)
                if inflight >= t.concurrent:
                    return self.throttle_error("concurrent", 1)
                if len(win) >= t.requests:
                    retry = max(1, int(win[0][0] + t.window_seconds - now + 0.999))
                    return self.throttle_error("requests", retry)
                spent = sum(d for _, d in win) * 1000
                if t.execution_ms and spent >= t.execution_ms:
                    return self.throttle_error("execution", self._recovery(win, now))
            st.in_flight[key] = st.in_flight.get(key, 0) + 1
            entry = [now, 0.0]
            win.append(entry)
        return entry

    def _recovery(self, win: deque[list[float]], now: float) -> int:
        """Seconds until enough of the window's execution time has left it for the budget
        to serve a request again (Learn: api-limits, "The Retry-After duration": the more
        demanding the requests were, the longer the server takes to recover)."""
        t = self.state.throttling
        over = sum(d for _, d in win) - t.execution_ms / 1000
        for arrived, duration in win:
            over -= duration
            if over < 0:
                return max(1, int(arrived + t.window_seconds - now + 0.999))
        return 1

    def _release(self, key: str, entry: list[float], duration: float) -> None:
        """A request was answered: its execution time counts in the window from its
        arrival."""
        st = self.state
        with st.lock:
            st.in_flight[key] = max(0, st.in_flight.get(key, 1) - 1)
            entry[1] += duration
            since = time.monotonic() - st.throttling.window_seconds
            spent = sum(d for arrived, d in st.window.get(key, ()) if arrived >= since)
            st.peak_spent = max(st.peak_spent, spent)

    def remaining(self, key: str) -> tuple[int, float]:
        """(requests left, execution seconds left) in the caller's current window."""
        st = self.state
        with st.lock:
            win = st.window.get(key, deque())
            spent = sum(d for _, d in win)
            return (max(0, st.throttling.requests - len(win)),
                    max(0.0, st.throttling.execution_ms / 1000 - spent))

    # --- admin ----------------------------------------------------------------------------
    def _admin_injected(self, route: str, method: str) -> Resp:
        """``faults/injected`` (GET, DELETE) and ``faults/release`` (POST)."""
        st = self.state
        if route == "release" and method == "POST":
            with st.lock:
                st.release += 1
                return json_resp(200, {"released": st.held})
        if route == "injected" and method in ("GET", "DELETE"):
            with st.lock:
                doc = {"service": self.name, "injected": dict(sorted(st.injected.items())),
                       "total": sum(v for k, v in st.injected.items() if ":" not in k),
                       "held": st.held}
                if method == "DELETE":
                    st.injected.clear()
            return json_resp(200, doc)
        return json_resp(404, {"error": f"unknown admin route {method} faults/{route}"})

    def _admin(self, req: Req) -> Resp:
        try:
            doc = json.loads(req.body) if req.body.strip() else {}
        except ValueError:
            return json_resp(400, {"error": "body is not JSON"})
        if not isinstance(doc, dict):
            return json_resp(400, {"error": "body must be a JSON object"})
        parts = req.path.rstrip("/").split("/")[2:]
        what = parts[0] if parts else "health"
        m = req.method
        st = self.state
        try:
            if what == "health":
                return json_resp(200, {"service": self.name, "now": st.now()})
            if what == "reset" and m == "POST":
                with st.lock:
                    st.offset = 0.0
                    st.faults = Faults()
                    st.counters.clear()
                    st.injected.clear()
                    st.hold_seen = 0
                    st.release += 1
                    st.window.clear()
                    st.peak_spent = 0.0
                    st.throttling = Throttling(**asdict(st.default_throttling))
                    st.latency = Latency(**asdict(st.default_latency))
                st.stats.reset()
                with self.db_lock:
                    self.reset_data(str(doc.get("seed", "empty")))
                return json_resp(200, {"reset": True, "seed": doc.get("seed", "empty")})
            if what == "seed" and m == "POST":
                with self.db_lock:
                    self.reset_data(str(doc.get("seed", "demo")))
                return json_resp(200, {"seed": doc.get("seed", "demo")})
            if what == "requests":
                if m == "DELETE":
                    with st.lock:
                        st.counters.clear()
                    return json_resp(200, {"cleared": True})
                with st.lock:
                    rows = [{"service": self.name, "method": k[0], "entity": k[1],
                             "status": k[2], "count": v} for k, v in sorted(st.counters.items())]
                return json_resp(200, {"service": self.name, "total": sum(st.counters.values()),
                                       "requests": rows})
            if what == "clock":
                if m == "PUT":
                    st.offset = float(doc.get("offset_seconds", 0))
                return json_resp(200, {"offset_seconds": st.offset, "now": st.now()})
            if what == "faults" and len(parts) == 2:
                return self._admin_injected(parts[1], m)
            if what == "faults":
                if m == "PUT":
                    faults = Faults(**doc)
                    with st.lock:
                        st.faults = faults
                        st.rng = random.Random(faults.random_seed)
                        st.hold_seen = 0
                        st.release += 1
                elif m == "DELETE":
                    with st.lock:
                        st.faults = Faults()
                        st.release += 1
                return json_resp(200, asdict(st.faults))
            if what == "throttling":
                if m == "PUT":
                    scale = doc.pop("scale", None)
                    if scale is not None:  # counts of the default limits scaled, then doc
                        new = scaled_limits(st.default_throttling, float(scale), doc)
                    else:
                        new = Throttling(**{**asdict(st.throttling), **doc})
                    with st.lock:
                        st.throttling = new
                        st.window.clear()
                        st.peak_spent = 0.0
                    self._semaphore = None
                # The limits, and the most execution time a caller's window held since they
                # were set (how far past its budget a client ran).
                return json_resp(200, {**asdict(st.throttling), "peak_window_execution_s":
                                       round(st.peak_spent, 3)})
            if what == "generate" and m == "POST" and getattr(self, "db", None) is not None:
                from bcdv_emulators.generate import generate
                with self.db_lock:
                    n = generate(self.db, self.name, str(doc.get("entity")),
                                 int(doc.get("count", 0)), int(doc.get("start", 1)))
                return json_resp(200, {"generated": n, "entity": doc.get("entity")})
            if what == "stats":
                if m == "DELETE":
                    st.stats.reset()
                return json_resp(200, st.stats.snapshot(self.name))
            if what == "latency":
                if m == "PUT":
                    st.latency = parse_latency(doc, self.name)
                elif m == "DELETE":
                    st.latency = Latency()
                return json_resp(200, asdict(st.latency))
            if what == "records" and len(parts) == 2 and m == "GET":
                with self.db_lock:
                    rows = self.records(parts[1])
                if rows is None:
                    return json_resp(404, {"error": f"unknown entity {parts[1]}"})
                return json_resp(200, {"entity": parts[1], "count": len(rows), "value": rows})
        except (TypeError, ValueError, KeyError) as exc:
            return json_resp(400, {"error": f"invalid admin request: {exc}"})
        return json_resp(404, {"error": f"unknown admin route {m} {req.path}"})


class InvalidJson(ValueError):
    """A request body that is not JSON the services could store (a ValueError, so every
    caller's ``except ValueError`` turns it into that service's 400)."""


def _no_constants(name: str) -> Any:
    raise InvalidJson(f"{name} is not valid JSON")


def _surrogate_free(value: Any) -> None:
    """Raise InvalidJson if a string (key or value) holds a lone UTF-16 surrogate."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise InvalidJson("a string holds a lone UTF-16 surrogate") from None
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def strict_json(text: str) -> Any:
    """json.loads for request bodies: anything that is not storable JSON raises InvalidJson.

    Python's json accepts what JSON (RFC 8259) and the services do not: NaN/Infinity, and
    ``"\\ud800"`` (a lone surrogate escape, which decodes to a str UTF-8 cannot encode, so it
    would fail later, as a 500, when stored or echoed). Nesting too deep for the parser
    (RecursionError) is refused the same way.
    """
    try:
        value = json.loads(text, parse_constant=_no_constants)
    except RecursionError:
        raise InvalidJson("JSON nested too deeply") from None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidJson("the body is not UTF-8") from None
    if "\\u" in text:
        # Past the check above, an escape is the only way a lone surrogate gets in.
        _surrogate_free(value)
    return value


def correlation_id() -> str:
    """A fresh correlation / request id."""
    return str(uuid.uuid4())
