"""Latency profiles, scaled service protection limits and request statistics (for benchmarks).

A latency profile makes the emulators answer as slowly as a real tenant, without using CPU:
every API request waits ``rtt_ms`` (network round trip plus the service's fixed cost per
request), and ``read_row_ms`` per row read / ``write_row_ms`` per row written (server cost).
The waits are ``asyncio.sleep`` on the event loop, after the handler has left the database
lock, so slow requests overlap the way they do against a real service. The row cost is spent
inside Business Central's five-at-once processing limit; the round trip is not.

``cloud`` is built from published figures:

- Dataverse: Microsoft's bulk operation samples (PowerApps-Samples,
  dataverse/orgsvc/CSharp-NETCore/BulkOperations/*/README.md and
  dataverse/webapi/C#-NETx/BulkOperations/CreateUpdateMultiple/README.md) print "Created 100
  records in 10 seconds" one request at a time (SimpleLoop: ~100 ms a request, round trip and
  a one-row write) and "Created 100 records in 1 seconds" with one CreateMultiple (~10 ms a
  row written; UpdateMultiple printed 3 s, ~30 ms a row). Hence rtt 100 ms, 10 ms a row
  written. Reads: a 5,000-row page of a few columns is assumed to take ~0.5 s (0.1 ms a row);
  no Microsoft figure was found.
- Business Central: no Microsoft timing figure was found; the same round trip is assumed
  (150 ms: BC's API sits behind one more gateway) and 15 ms a row written (an AL insert with
  its triggers, run one operation after another inside a $batch), 0.05 ms a row read.

Service protection limits (``Throttling`` in :mod:`bcdv_emulators.base`) default to
Microsoft's: Dataverse 6,000 requests and 1,200 s of execution time per 300 s sliding window
and 52 concurrent requests per user
(https://learn.microsoft.com/power-apps/developer/data-platform/api-limits), each answer
stating the budget left and the recommended parallelism (``x-ms-dop-hint``, 48 as in the
answer Learn shows in webapi/use-ps-and-vscode-web-api); Business Central
6,000 requests per 5 minutes, 5 requests processed at once
(https://learn.microsoft.com/dynamics365/business-central/dev-itpro/api-reference/v2.0/dynamics-rate-limits).
:func:`scaled_limits` scales the counts down (same window) for a throttled benchmark; both
services answer 429 with Retry-After in seconds.
"""
from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bcdv_emulators.base import Throttling


@dataclass
class Latency:
    """Simulated server latency of one service (all zero: none)."""

    rtt_ms: float = 0.0
    read_row_ms: float = 0.0
    write_row_ms: float = 0.0

    def __post_init__(self) -> None:
        for name in ("rtt_ms", "read_row_ms", "write_row_ms"):
            value = float(getattr(self, name))
            if value < 0:
                raise ValueError(f"latency {name} must be >= 0, not {value}")
            setattr(self, name, value)

    @property
    def active(self) -> bool:
        """True if any delay is configured."""
        return bool(self.rtt_ms or self.read_row_ms or self.write_row_ms)

    def row_seconds(self, read_rows: int, write_rows: int) -> float:
        """Server cost of the rows a request read and wrote, in seconds."""
        return (read_rows * self.read_row_ms + write_rows * self.write_row_ms) / 1000


PRESETS: dict[str, dict[str, Latency]] = {
    "none": {"business_central": Latency(), "dataverse": Latency()},
    "cloud": {"business_central": Latency(rtt_ms=150, read_row_ms=0.05, write_row_ms=15),
              "dataverse": Latency(rtt_ms=100, read_row_ms=0.1, write_row_ms=10)},
}
ALIASES = {"rtt": "rtt_ms", "row": "write_row_ms", "row_ms": "write_row_ms",
           "read_ms": "read_row_ms", "write_ms": "write_row_ms"}


def parse_latency(spec: str | dict[str, Any] | None, service: str) -> Latency:
    """``none`` | ``cloud`` | ``rtt_ms=100,row_ms=5,read_row_ms=0.1`` -> one service's Latency.

    A ``key=value`` list applies to both services (``row_ms`` is the per-row write cost);
    a dict (the admin API and ``--option latency=...``) may be a preset name under
    ``preset`` plus overrides.
    """
    if spec is None or spec == "":
        return Latency()
    if isinstance(spec, dict):
        base = asdict(parse_latency(str(spec.get("preset", "none")), service))
        for key, value in spec.items():
            if key != "preset":
                base[_field(key)] = float(value)
        return Latency(**base)
    text = spec.strip()
    if text in PRESETS:
        return Latency(**asdict(PRESETS[text].get(service, Latency())))
    fields: dict[str, float] = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"latency: {item!r} is neither a preset ({', '.join(PRESETS)}) "
                             "nor key=value")
        fields[_field(key.strip())] = float(value)
    return Latency(**fields)


def _field(key: str) -> str:
    name = ALIASES.get(key, key)
    if name not in ("rtt_ms", "read_row_ms", "write_row_ms"):
        raise ValueError(f"latency: unknown setting {key!r} (rtt_ms, read_row_ms, "
                         "write_row_ms; row_ms = write_row_ms)")
    return name


def scaled_limits(default: Throttling, scale: float | None = None,
                  overrides: dict[str, Any] | None = None) -> Throttling:
    """``default`` with its counts multiplied by ``scale`` (window kept), then ``overrides``.

    Scaling keeps at least one request, one concurrent request and (where the service has
    it) one request processed at once.
    """
    values = asdict(default)
    if scale is not None:
        if scale <= 0:
            raise ValueError(f"throttle scale must be > 0, not {scale}")
        values["requests"] = max(1, round(default.requests * scale))
        values["execution_ms"] = round(default.execution_ms * scale)
        values["concurrent"] = max(1, round(default.concurrent * scale))
        if default.processing:
            values["processing"] = max(1, round(default.processing * scale))
    for key, value in (overrides or {}).items():
        if key not in values:
            raise ValueError(f"throttle: unknown limit {key!r} ({', '.join(values)})")
        values[key] = type(values[key])(value) if key != "enabled" else bool(value)
    values["enabled"] = bool((overrides or {}).get("enabled", True))
    return replace(default, **values)


def parse_throttle(spec: str) -> dict[str, Any]:
    """``requests=60,window_seconds=10,concurrent=4`` -> overrides for :func:`scaled_limits`."""
    out: dict[str, Any] = {}
    for item in spec.split(","):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"throttle: {item!r} is not key=value")
        out[key.strip()] = float(value) if "." in value else int(value)
    return out


# served_ms: the execution time the service protection window counted (admission to answer,
# the simulated latency included), in whole milliseconds.
KIND_FIELDS = ("requests", "rows_read", "rows_written", "ops", "errors", "throttled_429",
               "served_ms")
STAT_KINDS = ("get_page", "get", "post", "patch", "delete", "batch", "CreateMultiple",
              "UpdateMultiple", "UpsertMultiple", "DeleteMultiple", "token")


class Stats:
    """Requests by kind since the last reset, for benchmarks (``GET /_emulator/stats``).

    Kinds: ``get_page`` (a collection GET: one page), ``get`` (any other GET), ``post``,
    ``patch``, ``delete``, ``batch`` (with ``ops`` inside it, by method), the Dataverse bulk
    messages by name (``rows`` = targets), ``token``. Every request counts, 429 answers too
    (``throttled_429``). ``delay_ms`` is the simulated latency served; ``peak_in_flight``
    the most requests the service had in flight at once, ``peak_delaying`` the most in their
    simulated wait at once (server-side, so a test can see requests overlap without timing
    them).
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Forget everything counted (in-flight requests stay in flight)."""
        with self.lock:
            self.kinds: dict[str, Counter[str]] = {}
            self.batch_ops: Counter[str] = Counter()
            self.statuses: Counter[int] = Counter()
            self.delay_ms = {"rtt": 0.0, "rows": 0.0}
            self.peak = getattr(self, "in_flight", 0)
            self.in_flight = getattr(self, "in_flight", 0)
            self.peak_delaying = getattr(self, "delaying", 0)
            self.delaying = getattr(self, "delaying", 0)
            self.since = time.time()

    def enter(self) -> None:
        """A request arrived."""
        with self.lock:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)

    def leave(self) -> None:
        """A request was answered (or dropped)."""
        with self.lock:
            self.in_flight = max(0, self.in_flight - 1)

    @contextmanager
    def delay(self) -> Iterator[None]:
        """Around a simulated wait: ``peak_delaying`` > 1 shows waits overlapping (a wait
        that blocked the server or sat under a lock would keep it at 1)."""
        with self.lock:
            self.delaying += 1
            self.peak_delaying = max(self.peak_delaying, self.delaying)
        try:
            yield
        finally:
            with self.lock:
                self.delaying -= 1

    def record(self, kind: str, status: int, read_rows: int = 0, write_rows: int = 0,
               ops: Counter[str] | None = None, rtt_ms: float = 0.0,
               row_ms: float = 0.0, served_ms: float = 0.0) -> None:
        """Count one answered request."""
        with self.lock:
            c = self.kinds.setdefault(kind, Counter())
            c["requests"] += 1
            c["rows_read"] += read_rows
            c["rows_written"] += write_rows
            c["served_ms"] += round(served_ms)
            if status >= 400:
                c["errors"] += 1
            if status == 429:
                c["throttled_429"] += 1
            if ops:
                c["ops"] += sum(ops.values())
                self.batch_ops.update(ops)
            self.statuses[status] += 1
            self.delay_ms["rtt"] += rtt_ms
            self.delay_ms["rows"] += row_ms

    def snapshot(self, service: str) -> dict[str, Any]:
        """The JSON document of ``GET /_emulator/stats``."""
        with self.lock:
            kinds = {k: {f: v[f] for f in KIND_FIELDS} for k, v in sorted(self.kinds.items())}
            return {"service": service, "since": self.since,
                    "requests": sum(v["requests"] for v in self.kinds.values()),
                    "throttled_429": self.statuses.get(429, 0),
                    "by_kind": kinds, "batch_ops": dict(self.batch_ops),
                    "by_status": {str(k): v for k, v in sorted(self.statuses.items())},
                    "delay_ms": {k: round(v, 3) for k, v in self.delay_ms.items()},
                    "in_flight": self.in_flight, "peak_in_flight": self.peak,
                    "peak_delaying": self.peak_delaying}
