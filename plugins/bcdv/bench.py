"""``make bench``: the sync engine against the emulators, next to the APIs' floor.

Every scenario runs the real engine (``sync_mapping`` on the shipped CUSTOMER mapping) in a
child process against emulators in a process of their own, and reports: wall time, records
per second, HTTP requests by kind (from the emulators' ``/_emulator/stats``), the minimum
number of requests the scenario needs (its reads at the largest page and its writes in the
fewest requests; a full pass also reads the other side once for match-based coupling, and
a pass of changes to coupled records reads their targets once: see :class:`Move`), 429
answers, the sync's CPU seconds and the emulators', and the peak RSS of the child (its own
``VmHWM``, :func:`own_peak_rss_mb`; no tracemalloc). Two references
are measured in the same run against the same emulator process:

- the floor: read at the largest page (Business Central 20,000 rows, Dataverse 5,000) and
  write with the fewest requests (Dataverse CreateMultiple 1,000 rows a request, Business
  Central $batch of 100 operations), no transform, no state;
- one request per record: the same reads, then one POST per record (measured on a sample of
  ``--sample`` records and scaled to the scenario's count).

Scenarios (``N`` = ``--size``/``BENCH_N``, default 10,000):

- ``full_bc_to_dv``: full sync of N customers Business Central -> Dataverse, at N and at every
  ``--sizes``/``BENCH_SIZES`` size (the memory curve);
- ``reverse_echo``: the Dataverse -> Business Central pass right after it (only the engine's
  own writes to read: nothing should be written);
- ``incremental_1pct``: N/100 customers changed in Business Central, a scheduled run;
  three times (other customers each time), the run of median seconds in the table;
- ``bidirectional_5pct``: 5 % changed on each side (disjoint records), a bidirectional run;
- ``full_dv_to_bc``: full sync of N accounts Dataverse -> Business Central;
- ``bidirectional_full``: full sync of a bidirectional mapping, N/2 customers only in
  Business Central and N/2 accounts only in Dataverse (each pass creates half); its floor is
  the sum of both directions' floors;
- ``throttled``: ``--throttled-size`` customers with the service protection limits scaled
  down (``--throttle``); checks every record arrived once and counts the 429 answers;
- ``latency``: ``--latency-size`` customers (default 52,000) with the emulators' ``cloud``
  latency profile, under Microsoft's service protection limits (enforced), next to the
  most records those limits let through in the sync's time (``DataverseLimits.records``:
  52 requests at once, 1,200 s of execution and 6,000 requests per 300 s window). A run
  shorter than the window gets the limits' burst, so the measure only means something
  with enough CreateMultiple requests to fill their concurrency: 52,000 records are 52
  requests, one per request allowed at once (2,000 were two, which no client can spread
  over 52). It takes about four minutes with its references (the floor sends its 52
  requests at once). ``limit_seconds`` is the least time the limits allow for the records.
  Then ``latency_cloud_incremental``: a scheduled run after N/20 of those customers changed
  in Business Central (updates, which Dataverse's ``$batch`` runs one after the other); and
  ``latency_cloud_to_bc``: a full Dataverse -> BC pass of N/10 accounts under the same
  profile (creates in Business Central ``$batch`` requests of 100, which it processes five
  at once), without references (one request per record would take minutes).

Results: bench/results/latest.json, latest.md (a markdown table) and latest.png (a chart);
``--readme`` copies the table into README.md between the bench markers.
Figures only, no thresholds.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results"
BC_PAGE, DV_PAGE, DV_BULK, BC_BATCH = 20_000, 5_000, 1_000, 100
SERVICES = ("business_central", "dataverse")
PREFIX = {"business_central": "bc", "dataverse": "dv"}
README_START, README_END = "<!-- bench:start -->", "<!-- bench:end -->"
ACCOUNT_TYPE = "Microsoft.Dynamics.CRM.account"
FLOOR_ACCOUNT_TYPE = 11  # "Other": outside the CUSTOMER mapping's Dataverse filter
INCREMENTAL_RUNS = 3  # the 1 % incremental is measured this many times: the median's run


# --- the emulators -----------------------------------------------------------------------
class Emulators:
    """Emulators in their own process; admin calls, tokens and paging for the scripts."""

    def __init__(self, endpoints: dict[str, Any]) -> None:
        self.ep = endpoints
        self.ca = str(endpoints["ca_bundle"])
        self.session = requests.Session()
        self._tokens: dict[str, str] = {}
        bc = endpoints["business_central"]
        self.bc_root = str(bc["base_url"])
        self.company = str(bc["company_id"])
        self.bc_customers = f"{self.bc_root}/companies({self.company})/customers"
        self.dv_api = str(endpoints["dataverse"]["api_url"])
        self.pid: int | None = None  # the emulators' process, for its CPU time

    def cpu_seconds(self) -> float | None:
        """CPU seconds the emulators' process has used so far (user + system, all its
        threads; None where there is no /proc)."""
        return process_cpu_seconds(self.pid) if self.pid else None

    def origin(self, service: str) -> str:
        """scheme://host:port of a service."""
        url = self.bc_root if service == "business_central" else self.dv_api
        return "/".join(url.split("/")[:3])

    def admin(self, service: str, method: str, route: str,
              doc: dict[str, Any] | None = None) -> dict[str, Any]:
        """``/_emulator/<route>`` of one service."""
        r = self.session.request(method, f"{self.origin(service)}/_emulator/{route}", json=doc,
                                 verify=self.ca, timeout=3600)
        r.raise_for_status()
        return dict(r.json())

    def stats(self) -> dict[str, dict[str, Any]]:
        """Both API services' statistics."""
        return {s: self.admin(s, "GET", "stats") for s in SERVICES}

    def reset_stats(self) -> None:
        """Zero both services' statistics."""
        for s in SERVICES:
            self.admin(s, "DELETE", "stats")

    def token(self, service: str) -> str:
        """A client-credentials token for a service (cached)."""
        if service not in self._tokens:
            ident = self.ep["identity"]
            scope = self.ep[service]["scope"]
            r = self.session.post(f"{ident['authority']}/oauth2/v2.0/token", verify=self.ca,
                                  timeout=60, data={
                                      "grant_type": "client_credentials",
                                      "client_id": ident["client_id"],
                                      "client_secret": ident["client_secret"], "scope": scope})
            r.raise_for_status()
            self._tokens[service] = str(r.json()["access_token"])
        return self._tokens[service]

    def call(self, service: str, method: str, url: str, **kw: Any) -> requests.Response:
        """One API request (retrying 429s after Retry-After, as any client must)."""
        headers = {"Authorization": f"Bearer {self.token(service)}",
                   "Accept": "application/json", **kw.pop("headers", {})}
        while True:
            r = self.session.request(method, url, headers=headers, verify=self.ca,
                                     timeout=3600, **kw)
            if r.status_code != 429:
                r.raise_for_status()
                return r
            time.sleep(float(r.headers.get("Retry-After", "1")))

    def pages(self, service: str, url: str, page: int) -> Iterator[list[dict[str, Any]]]:
        """Follow @odata.nextLink at ``page`` rows a page."""
        next_url: str | None = url
        while next_url:
            doc = self.call(service, "GET", next_url,
                            headers={"Prefer": f"odata.maxpagesize={page}"}).json()
            yield list(doc["value"])
            next_url = doc.get("@odata.nextLink")

    def read_all(self, service: str, url: str, page: int) -> list[dict[str, Any]]:
        """Every row behind ``url``."""
        return [row for p in self.pages(service, url, page) for row in p]


@contextlib.contextmanager
def emulators(data_dir: Path, latency: str | None = None,
              throttle: str | None = None) -> Iterator[Emulators]:
    """``python -m bcdv_emulators start`` on free ports (seed ``empty``) until the block ends."""
    cmd = [sys.executable, "-m", "bcdv_emulators", "start", "--data-dir", str(data_dir),
           "--seed", "empty", "--identity-port", "0", "--bc-port", "0",
           "--dataverse-port", "0"]
    cmd += ["--throttle", throttle] if throttle else ["--no-throttling"]
    if latency:
        cmd += ["--latency", latency]
    log = open(data_dir.parent / f"{data_dir.name}.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    endpoints = data_dir / "endpoints.json"
    try:
        deadline = time.monotonic() + 300
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("emulators did not start: "
                                   + (data_dir.parent / f"{data_dir.name}.log").read_text())
            if endpoints.exists():
                try:
                    emu = Emulators(json.loads(endpoints.read_text()))
                    emu.pid = proc.pid
                    emu.admin("dataverse", "GET", "health")
                    break
                except (ValueError, requests.RequestException):
                    pass
            time.sleep(0.2)
        yield emu
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _spent(before: float | None, after: float | None) -> float | None:
    return round(after - before, 3) if before is not None and after is not None else None


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process (``/proc/<pid>/stat``, fields 14 and 15)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- the engine in a child process ---------------------------------------------------------
def child_sync(spec: dict[str, Any]) -> dict[str, Any]:
    """Run in the child: one ``sync_mapping`` of CUSTOMER; returns the pass reports."""
    if spec.get("engine"):
        # Another checkout's engine (--engine): its package first on the path, and none of
        # this checkout's bcdv modules kept (this module keeps running as __main__).
        sys.path.insert(0, str(Path(spec["engine"]) / "plugins"))
        for name in [m for m in sys.modules if m == "bcdv" or m.startswith("bcdv.")]:
            del sys.modules[name]
    from bcdv.engine import SyncContext, sync_mapping
    from bcdv.mapping import load_mappings
    from bcdv.mapping.model import Direction
    from bcdv.settings import endpoints_from_dict

    if spec.get("request_limit"):
        # The service's own limits (the emulators scaled down), as a client of a real tenant
        # paces itself at Microsoft's documented ones (BCDV_REQUEST_LIMIT).
        from bcdv.clients.http import configure_pacing

        configure_pacing(int(spec["request_limit"][0]), float(spec["request_limit"][1]))
    mappings = load_mappings(Path(spec["mappings"]))
    mapping = mappings["CUSTOMER"].model_copy(
        update={"direction": Direction(spec["direction"])})
    ctx = SyncContext.create(endpoints_from_dict(spec["endpoints"]), spec["state_url"],
                             spec["staging"], mappings)
    try:
        started, cpu_started = time.perf_counter(), time.process_time()
        profile = spec.get("profile")  # --profile: a directory, one .prof per sync
        if profile:
            import cProfile

            with cProfile.Profile() as prof:
                reports = sync_mapping(ctx, mapping, mode=spec["mode"], run_id=spec["run_id"])
            Path(profile).mkdir(parents=True, exist_ok=True)
            prof.dump_stats(str(Path(profile) / f"{spec['run_id']}.prof"))
        else:
            reports = sync_mapping(ctx, mapping, mode=spec["mode"], run_id=spec["run_id"])
        seconds = time.perf_counter() - started
        cpu_seconds = time.process_time() - cpu_started
    finally:
        ctx.close()
    return {"passes": [{"direction": r.direction, "extracted": r.extracted, **r.counters()}
                       for r in reports],
            "summaries": [r.summary() for r in reports], "sync_seconds": seconds,
            "sync_cpu_seconds": cpu_seconds, "peak_rss_mb": own_peak_rss_mb(),
            "engine_path": str(Path(sys.modules[SyncContext.__module__].__file__ or "")
                               .parents[2])}


def own_peak_rss_mb() -> float | None:
    """This process's own peak RSS in MB: Linux's ``VmHWM``, the high-water mark of the
    memory it has had since it started its program (None where there is no /proc).

    Not ``ru_maxrss``: Linux carries the parent's high-water mark into a child's across the
    fork and exec that start it, so a child started by a bench process holding a million
    floor rows reported that process's 634 MB, whatever it used itself."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    return None


def run_child(spec: dict[str, Any], work: Path) -> tuple[dict[str, Any], float, float]:
    """(pass reports, process wall seconds, peak RSS MB) of a sync in a child process; the
    reports carry ``sync_seconds``, the time of ``sync_mapping`` alone (no imports), and the
    child's own peak RSS (``own_peak_rss_mb``)."""
    out, err = work / "child.out", work / "child.err"
    # The spec (the emulators' client secret in it) goes in a file only this user reads, not
    # on the command line, which every user of the machine sees (ps).
    spec_file = work / "child-spec.json"
    spec_file.touch(mode=0o600)
    spec_file.chmod(0o600)
    spec_file.write_text(json.dumps(spec))
    with out.open("wb") as fo, err.open("wb") as fe:
        started = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "bcdv.bench", "--child",
                                 str(spec_file)], stdout=fo, stderr=fe)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"sync child failed ({proc.returncode}): "
                           f"{err.read_text()[-3000:]}")
    report = json.loads(out.read_text())
    # The child's own peak; ru_maxrss (KB on Linux) only where it cannot tell.
    return report, seconds, report.get("peak_rss_mb") or usage.ru_maxrss / 1024


# --- data set-up (not measured) ----------------------------------------------------------
def change_bc(emu: Emulators, indices: set[int], phone: str) -> int:
    """Change the phone number of the generated customers with these indices ($batch)."""
    rows = emu.read_all("business_central", f"{emu.bc_customers}?$select=id,number", BC_PAGE)
    picked = [r for r in rows if r["number"].startswith("B") and r["number"][1:].isdigit()
              and int(r["number"][1:]) in indices]
    for start in range(0, len(picked), BC_BATCH):
        ops = [{"id": str(i), "method": "PATCH",
                "url": f"companies({emu.company})/customers({r['id']})",
                "headers": {"Content-Type": "application/json",
                            "If-Match": r["@odata.etag"]},
                "body": {"phoneNumber": phone}}
               for i, r in enumerate(picked[start:start + BC_BATCH])]
        done = emu.call("business_central", "POST", f"{emu.bc_root}/$batch",
                        json={"requests": ops}).json()["responses"]
        bad = [x for x in done if x["status"] >= 400]
        if bad:
            raise RuntimeError(f"changing BC customers failed: {bad[0]}")
    return len(picked)


def change_dv(emu: Emulators, indices: set[int], phone: str) -> int:
    """Change the phone of the accounts made from generated customers with these indices."""
    rows = emu.read_all("dataverse", f"{emu.dv_api}/accounts?$select=accountid,name"
                                     "&$filter=customertypecode eq 3", DV_PAGE)
    picked = [r for r in rows if _index(r.get("name")) in indices]
    # A person's edit, not the integration's: the engine skips rows last modified by its own
    # application user (BC's echo suppression), so act as another user (impersonation).
    me = emu.call("dataverse", "GET", f"{emu.dv_api}/WhoAmI").json()["UserId"]
    users = emu.call("dataverse", "GET", f"{emu.dv_api}/systemusers?$select=systemuserid,"
                                         "isdisabled").json()["value"]
    person = next(u["systemuserid"] for u in users
                  if u["systemuserid"] != me and not u.get("isdisabled"))
    for start in range(0, len(picked), DV_BULK):
        targets = [{"@odata.type": ACCOUNT_TYPE, "accountid": r["accountid"],
                    "telephone1": phone} for r in picked[start:start + DV_BULK]]
        emu.call("dataverse", "POST", f"{emu.dv_api}/accounts/Microsoft.Dynamics.CRM."
                                      "UpdateMultiple", json={"Targets": targets},
                 headers={"MSCRMCallerID": person})
    return len(picked)


def _index(name: Any) -> int:
    tail = str(name or "").rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else -1


# --- the floor and one request per record --------------------------------------------------
@dataclass
class Move:
    """Records a scenario moves in one direction: ``count`` of them, source -> target."""

    direction: str  # to_dataverse | to_business_central
    count: int
    read_all: bool = False  # the source holds exactly these (a full pass): read every page
    # The records are coupled (an incremental pass's changes): the pass reads their targets
    # once. BC's own engine Gets each destination record and compares its modified-on with
    # the coupling's baseline before it writes (a bidirectional field changed on both sides
    # is a conflict, not an overwrite: reference, behaviour 14), and an update's If-Match
    # needs the row's etag: there is no correct update without knowing the target's state.
    coupled: bool = False


def floor(emu: Emulators, moves: list[Move], tag: str, at_once: int = 1) -> dict[str, Any]:
    """The fewest requests: read at the largest page, bulk writes (``at_once`` Dataverse
    bulk requests at a time), no transform, no state."""
    emu.reset_stats()
    emu_cpu = emu.cpu_seconds()
    started = time.perf_counter()
    requests_ = 0
    for move in moves:
        rows = _source_rows(emu, move)
        requests_ += _pages(move)
        requests_ += _bulk_write(emu, move.direction, rows, tag, at_once)
    seconds = time.perf_counter() - started
    served = _total_requests(emu.stats())
    return {"seconds": round(seconds, 3), "requests": served, "planned_requests": requests_,
            "emulator_cpu_seconds": _spent(emu_cpu, emu.cpu_seconds())}


def per_record(emu: Emulators, moves: list[Move], tag: str, sample: int) -> dict[str, Any]:
    """The same reads, then one POST per record (timed on ``sample`` records a move)."""
    total, written, requests_ = 0.0, 0, 0
    for move in moves:
        started = time.perf_counter()
        rows = _source_rows(emu, move)
        read_s = time.perf_counter() - started
        some = rows[:max(1, min(sample, len(rows)))]
        started = time.perf_counter()
        for row in some:
            _single_write(emu, move.direction, row, tag)
        write_s = time.perf_counter() - started
        total += read_s + write_s / len(some) * move.count
        written += len(some)
        requests_ += _pages(move) + move.count
    return {"seconds": round(total, 3), "requests": requests_, "sampled_writes": written}


_REVERSE = {"to_dataverse": "to_business_central", "to_business_central": "to_dataverse"}


def _pages(move: Move) -> int:
    page = BC_PAGE if move.direction == "to_dataverse" else DV_PAGE
    return max(1, math.ceil(move.count / page))


def _source_rows(emu: Emulators, move: Move) -> list[dict[str, Any]]:
    if move.direction == "to_dataverse":
        url = f"{emu.bc_customers}?$select=displayName,phoneNumber,city,addressLine1"
        if not move.read_all:
            url += f"&$top={move.count}"
        return emu.read_all("business_central", url, BC_PAGE)[:move.count]
    url = (f"{emu.dv_api}/accounts?$select=name,telephone1,address1_city,address1_line1"
           "&$filter=customertypecode eq 3")
    rows: list[dict[str, Any]] = []
    for page in emu.pages("dataverse", url, DV_PAGE):
        rows += page
        if len(rows) >= move.count and not move.read_all:
            break
    return rows[:move.count]


def _dv_target(row: dict[str, Any], tag: str) -> dict[str, Any]:
    return {"@odata.type": ACCOUNT_TYPE, "name": f"{tag} {row.get('displayName', '')}"[:160],
            "telephone1": row.get("phoneNumber"), "address1_city": row.get("city"),
            "customertypecode": FLOOR_ACCOUNT_TYPE}


def _bc_body(row: dict[str, Any], tag: str) -> dict[str, Any]:
    return {"displayName": f"{tag} {row.get('name', '')}"[:100],
            "phoneNumber": row.get("telephone1") or "", "city": row.get("address1_city") or ""}


def _bulk_write(emu: Emulators, direction: str, rows: list[dict[str, Any]], tag: str,
                at_once: int = 1) -> int:
    sent = 0
    if direction == "to_dataverse":
        def create(start: int) -> None:
            emu.call("dataverse", "POST",
                     f"{emu.dv_api}/accounts/Microsoft.Dynamics.CRM.CreateMultiple",
                     json={"Targets": [_dv_target(r, tag) for r in rows[start:start + DV_BULK]]})

        starts = range(0, len(rows), DV_BULK)
        with ThreadPoolExecutor(max_workers=max(1, at_once)) as pool:
            list(pool.map(create, starts))
        return len(starts)
    for start in range(0, len(rows), BC_BATCH):
        ops = [{"id": str(i), "method": "POST", "url": f"companies({emu.company})/customers",
                "headers": {"Content-Type": "application/json"}, "body": _bc_body(r, tag)}
               for i, r in enumerate(rows[start:start + BC_BATCH])]
        emu.call("business_central", "POST", f"{emu.bc_root}/$batch", json={"requests": ops})
        sent += 1
    return sent


def _single_write(emu: Emulators, direction: str, row: dict[str, Any], tag: str) -> None:
    if direction == "to_dataverse":
        body = {k: v for k, v in _dv_target(row, tag).items() if k != "@odata.type"}
        emu.call("dataverse", "POST", f"{emu.dv_api}/accounts", json=body)
    else:
        emu.call("business_central", "POST", emu.bc_customers, json=_bc_body(row, tag))


# --- minimum requests ----------------------------------------------------------------------
def min_requests(moves: list[Move], target_reads: int = 0) -> int:
    """Reads of the records to move at the largest page, plus the fewest writes, plus
    ``target_reads`` (a full sync reads the other side once for match-based coupling), plus
    a read of the targets of coupled moves at the target's largest page (:class:`Move`)."""
    n = target_reads
    for m in moves:
        n += _pages(m)
        if m.coupled:
            n += _pages(Move(_REVERSE[m.direction], m.count))
        if m.direction == "to_dataverse":
            n += math.ceil(m.count / DV_BULK)
        else:
            n += math.ceil(m.count / BC_BATCH)
    return n


# --- scenarios -----------------------------------------------------------------------------
@dataclass
class Result:
    """One scenario's figures."""

    name: str
    title: str
    records: int
    seconds: float
    rss_mb: float
    requests: dict[str, Any]
    min_requests: int
    passes: list[dict[str, Any]]
    floor: dict[str, Any] | None = None
    per_record: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        """The JSON form, with the derived ratios."""
        out = dict(self.__dict__)
        out["records_per_s"] = round(self.records / self.seconds, 1) if self.seconds else None
        total = self.requests["total"]
        out["requests_vs_min"] = round(total / self.min_requests, 2) if self.min_requests \
            else None
        if self.floor:
            out["vs_floor"] = round(self.seconds / self.floor["seconds"], 2) \
                if self.floor["seconds"] else None
        if self.per_record:
            out["speedup_vs_per_record"] = round(self.per_record["seconds"] / self.seconds, 2)
        return out


def _total_requests(stats: dict[str, dict[str, Any]]) -> int:
    return sum(int(s["requests"]) for s in stats.values())


def requests_by_kind(stats: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Flatten both services' statistics: ``bc:get_page`` -> count, rows, 429s, total."""
    kinds: dict[str, int] = {}
    rows: dict[str, int] = {}
    for service, s in stats.items():
        for kind, c in s["by_kind"].items():
            key = f"{PREFIX[service]}:{kind}"
            kinds[key] = int(c["requests"])
            if c.get("ops"):
                kinds[f"{key}_ops"] = int(c["ops"])
            if c.get("rows_written"):
                rows[f"{key}_rows_written"] = int(c["rows_written"])
    return {"total": _total_requests(stats), "by_kind": kinds, "rows": rows,
            "throttled_429": sum(int(s["throttled_429"]) for s in stats.values()),
            "by_service": {PREFIX[k]: {"requests": int(s["requests"]),
                                       "throttled_429": int(s["throttled_429"])}
                           for k, s in stats.items()},
            "delay_ms": {PREFIX[k]: s["delay_ms"] for k, s in stats.items()}}


class Session:
    """One emulator process, a state database and the scenarios run against them."""

    engine: Path | None = None  # a checkout whose engine and mappings the syncs use
    profile: str | None = None  # --profile: a cProfile of each sync into this directory

    def __init__(self, emu: Emulators, work: Path, sample: int) -> None:
        self.emu, self.work, self.sample = emu, work, sample
        self.state_url = f"sqlite:///{work / 'state.db'}"
        self.runs = 0
        self.pause = 0.0  # before each reference: let a throttling window pass
        self.at_once = 1  # Dataverse bulk requests the floor sends at a time
        self.request_limit: tuple[int, float] | None = None  # the child paces at these limits
        self.results: list[Result] = []
        self.references: list[tuple[Result, list[Move]]] = []

    def sync(self, name: str, title: str, direction: str, mode: str, records: int,
             minimum: int, moves: list[Move], *, keep: bool = True) -> Result:
        """Run one measured sync; its floor and per-record figures come later (:meth:`close`).
        ``keep=False``: measure only (the caller decides what goes in the table)."""
        self.runs += 1
        root = Session.engine or ROOT
        spec = {"endpoints": self.emu.ep, "state_url": self.state_url,
                "engine": str(Session.engine) if Session.engine else None,
                "mappings": str(root / "include" / "mappings"),
                "staging": str(self.work / "staging"), "direction": direction, "mode": mode,
                "run_id": f"bench__{name}_{self.runs}", "request_limit": self.request_limit,
                "profile": Session.profile}
        self.emu.reset_stats()
        emu_cpu = self.emu.cpu_seconds()
        report, process_s, rss = run_child(spec, self.work)
        emu_cpu = _spent(emu_cpu, self.emu.cpu_seconds())
        stats = self.emu.stats()
        seconds = float(report["sync_seconds"])
        # Where the time went: the sync's own CPU (all its threads) and the emulators'; on
        # two cores the pass cannot take less than the larger of the two.
        cpu = report.get("sync_cpu_seconds")
        result = Result(name, title, records, round(seconds, 3), round(rss, 1),
                        requests_by_kind(stats), minimum, report["passes"],
                        extra={"process_seconds": round(process_s, 3),
                               "sync_cpu_seconds": round(cpu, 3) if cpu is not None else None,
                               "emulator_cpu_seconds": emu_cpu,
                               "engine_path": report["engine_path"]})
        print(f"  {title}: {seconds:.1f} s, {result.requests['total']} requests, "
              f"RSS {rss:.0f} MB, CPU sync {cpu or 0:.1f} s emulators {emu_cpu or 0:.1f} s | "
              + " / ".join(report["summaries"]), flush=True)
        if keep:
            self.keep(result, moves)
        return result

    def keep(self, result: Result, moves: list[Move]) -> None:
        """Put a measured sync in the table (with its floor and per-record references)."""
        self.results.append(result)
        if moves:
            self.references.append((result, moves))

    def median_sync(self, runs: int, before: Callable[[int], None], name: str, title: str,
                    direction: str, mode: str, records: int, minimum: int,
                    moves: list[Move]) -> Result:
        """A short scenario measured ``runs`` times, ``before(i)`` setting up each run (its
        own changes): the run of median seconds goes in the table, every run's seconds in
        its ``extra``. A sync of about a second moves by a fifth from one run to the next
        on a shared 2-core machine, more than the changes being measured."""
        measured = []
        for i in range(runs):
            before(i)
            measured.append(self.sync(name, title, direction, mode, records, minimum, moves,
                                      keep=False))
        chosen = sorted(measured, key=lambda r: r.seconds)[(runs - 1) // 2]
        chosen.extra["runs_seconds"] = [r.seconds for r in measured]
        self.keep(chosen, moves)
        return chosen

    def close(self, tag: str) -> list[Result]:
        """Measure each scenario's floor and per-record reference (they write extra records,
        so they run after every sync of this session)."""
        for i, (result, moves) in enumerate(self.references):
            time.sleep(self.pause)
            result.floor = floor(self.emu, moves, f"{tag}-floor{i}", self.at_once)
            if self.sample:
                result.per_record = per_record(self.emu, moves, f"{tag}-single{i}",
                                               self.sample)
        return self.results


def _settle() -> None:
    # Dataverse's modifiedon has whole seconds: keep set-up writes out of the previous
    # pass's second, as a person's edits would be.
    time.sleep(1.2)


def bc_to_dv_chain(work: Path, n: int, sample: int, chain: bool) -> list[Result]:
    """Full BC -> Dataverse at ``n``; with ``chain``: the reverse echo pass, 1 % incremental
    and bidirectional 5 % on top of it."""
    with emulators(work / "emulators") as emu:
        emu.admin("business_central", "POST", "generate", {"entity": "customers", "count": n})
        s = Session(emu, work, sample)
        s.sync("full_bc_to_dv", f"full sync BC -> Dataverse, {n:,}", "to_dataverse", "full",
               n, min_requests([Move("to_dataverse", n)], target_reads=1),
               [Move("to_dataverse", n, read_all=True)])
        if chain:
            s.sync("reverse_echo", f"Dataverse -> BC pass after it (echoes), {n:,}",
                   "to_business_central", "modified", n, max(1, math.ceil(n / DV_PAGE)), [])
            k = max(1, n // 100)

            def change(i: int) -> None:  # each run its own 1 %: customers i*k+1 .. (i+1)*k
                _settle()
                change_bc(emu, set(range(i * k + 1, (i + 1) * k + 1)), f"+1 555 01{90 + i}")
                _settle()

            s.median_sync(INCREMENTAL_RUNS, change, "incremental_1pct",
                          f"incremental, {k:,} changed among {n:,}", "to_dataverse",
                          "modified", k, min_requests([Move("to_dataverse", k, coupled=True)]),
                          [Move("to_dataverse", k)])
            _settle()
            k = max(1, n // 20)
            change_bc(emu, set(range(n // 2, n // 2 + k)), "+1 555 0155")
            change_dv(emu, set(range(n - k + 1, n + 1)), "+1 555 0177")
            _settle()
            moves = [Move("to_dataverse", k), Move("to_business_central", k)]
            s.sync("bidirectional_5pct", f"bidirectional, {k:,} changed on each side of {n:,}",
                   "bidirectional", "modified", 2 * k,
                   min_requests([replace(m, coupled=True) for m in moves]), moves)
        return s.close("bc")


def dv_to_bc(work: Path, n: int, sample: int) -> list[Result]:
    """Full Dataverse -> BC of ``n`` accounts."""
    with emulators(work / "emulators") as emu:
        emu.admin("dataverse", "POST", "generate", {"entity": "accounts", "count": n})
        s = Session(emu, work, sample)
        s.sync("full_dv_to_bc", f"full sync Dataverse -> BC, {n:,}", "to_business_central",
               "full", n, min_requests([Move("to_business_central", n)], target_reads=1),
               [Move("to_business_central", n, read_all=True)])
        return s.close("dv")


def bidirectional_full(work: Path, n: int, sample: int) -> list[Result]:
    """A full synchronisation of a bidirectional mapping: ``n/2`` customers only in
    Business Central and ``n/2`` accounts only in Dataverse (no two match), so each pass
    creates half; its floor is the sum of both directions' floors (the pass back reads every
    account, the ones the first pass made included)."""
    half = max(1, n // 2)
    with emulators(work / "emulators") as emu:
        emu.admin("business_central", "POST", "generate", {"entity": "customers",
                                                           "count": half})
        emu.admin("dataverse", "POST", "generate", {"entity": "accounts", "count": half})
        s = Session(emu, work, sample)
        # The floor reads the first half of the customers (the pass there read only those)
        # and every account (as the pass back does).
        moves = [Move("to_dataverse", half), Move("to_business_central", half, read_all=True)]
        # Match-based coupling reads Dataverse; the pass back reads all n accounts.
        minimum = min_requests(moves, target_reads=1) + max(
            0, math.ceil(n / DV_PAGE) - _pages(moves[1]))
        s.sync("bidirectional_full", f"full sync, bidirectional, {half:,} on each side",
               "bidirectional", "full", 2 * half, minimum, moves)
        return s.close("bif")


def throttled(work: Path, n: int, limits: str, sample: int) -> list[Result]:
    """Full BC -> Dataverse under scaled-down limits; every record once, none twice."""
    with emulators(work / "emulators", throttle=limits) as emu:
        emu.admin("business_central", "POST", "generate", {"entity": "customers", "count": n})
        s = Session(emu, work, sample)
        window, per_window = _limit_window(limits)
        s.request_limit = (per_window, window)
        r = s.sync("throttled", f"throttled ({limits}), {n:,}", "to_dataverse", "full", n,
                   min_requests([Move("to_dataverse", n)], target_reads=1),
                   [Move("to_dataverse", n, read_all=True)])
        # The limits let at most per_window requests a service through per window. The least
        # time they allow for the minimum requests of each service, and for the requests the
        # engine did get answered: pace share 1.0 = as fast as the limits let those through
        # (time lost to 429 answers and their Retry-After lowers it).
        least = {"bc": _pages(Move("to_dataverse", n)), "dv": 1 + math.ceil(n / DV_BULK)}
        served = {k: v["requests"] - v["throttled_429"]
                  for k, v in r.requests["by_service"].items()}

        def paced(counts: dict[str, int]) -> float:
            """Seconds the limits impose on these request counts."""
            return max(max(0, math.ceil(m / per_window) - 1) * window for m in counts.values())

        r.extra |= {**_landed(emu, n), "limits": limits,
                    "limit_seconds_for_min_requests": paced(least),
                    "limit_seconds_for_requests_sent": paced(served),
                    "share_of_limit_pace": round(paced(served) / r.seconds, 2),
                    "share_429": round(r.requests["throttled_429"] / r.requests["total"], 3)}
        print(f"  throttled: {r.extra}", flush=True)
        # The floor under the same limits, once the engine's requests left the window; one
        # request per record would only measure the limits (4 a window): not run.
        s.pause, s.sample = window, 0
        return s.close("thr")


def _landed(emu: Emulators, n: int) -> dict[str, int]:
    """The generated customers 1..``n`` as accounts in Dataverse: how many accounts, how many
    customers have none, how many accounts are a second of the same customer."""
    names = [a["name"] for a in emu.read_all(
        "dataverse", f"{emu.dv_api}/accounts?$select=name&$filter=customertypecode eq 3",
        DV_PAGE)]
    got = [x.rsplit(" ", 1)[-1] for x in names]
    wanted = {f"{i:07d}" for i in range(1, n + 1)}
    return {"accounts": len(names), "missing": len(wanted - set(got)),
            "duplicated": len(got) - len(set(got))}


def _limit_window(limits: str) -> tuple[float, int]:
    kv = dict(item.split("=", 1) for item in limits.split(","))
    return float(kv.get("window_seconds", 300)), int(kv.get("requests", 6000))


@dataclass(frozen=True)
class DataverseLimits:
    """Dataverse's service protection limits per user and web server, as Learn documents
    them (power-apps/developer/data-platform/api-limits) and the emulator enforces them by
    default: requests and seconds of execution per sliding window, requests at once."""

    requests: int = 6000
    window_s: float = 300.0
    execution_s: float = 1200.0
    concurrent: int = 52

    def spec(self) -> str:
        """The emulators' ``--throttle`` value for these limits (throttling on)."""
        return (f"requests={self.requests},window_seconds={self.window_s},"
                f"execution_ms={round(self.execution_s * 1000)},concurrent={self.concurrent}")

    def records(self, seconds: float, request_s: float, rows: int = DV_BULK) -> int:
        """The most records the limits let through in ``seconds``, written ``rows`` a
        request whose execution takes ``request_s``.

        No schedule has more than ``concurrent`` requests at a time, nor more than
        ``execution_s`` of execution or ``requests`` requests arriving in any window, and a
        request's records count once it is answered; the most any schedule does is start
        ``concurrent`` requests at once, round after round, from the start of each window
        until its budget is spent. A run shorter than the window gets that burst (52 at
        once until 1,200 s are spent: 118 requests of 10.1 s, in three rounds); a long run
        gets 1,200 s per 300 s, four requests' worth at a time. What the service lets run
        past a spent budget (the requests in flight when it is spent) is not counted."""
        windows, part = divmod(max(0.0, seconds), self.window_s)

        def in_window(span: float) -> int:
            return min(self.requests, self.concurrent * math.floor(span / request_s),
                       math.floor(self.execution_s / request_s))

        return rows * (int(windows) * in_window(self.window_s) + in_window(part))

    def seconds(self, records: int, request_s: float, rows: int = DV_BULK) -> float:
        """The least time in which the limits let ``records`` through (the inverse of
        :meth:`records`: it grows in whole rounds of requests)."""
        per_window = self.records(self.window_s, request_s, rows)
        if per_window <= 0:
            raise ValueError("the limits let no request of that cost through")
        windows = max(0, math.ceil(records / per_window) - 1)
        left = records - windows * per_window
        rounds = 1
        while self.records(rounds * request_s, request_s, rows) < left:
            rounds += 1
        return windows * self.window_s + rounds * request_s


DV_LIMITS = DataverseLimits()
# The latency scenario's default: one CreateMultiple request for each of the 52 requests
# Dataverse lets a user have at once, the fewest with which a client could fill the
# concurrency the limits allow (see the module docstring).
LATENCY_SIZE = DV_LIMITS.concurrent * DV_BULK


def latency(work: Path, n: int, sample: int) -> list[Result]:
    """Full BC -> Dataverse with the ``cloud`` latency profile, under Microsoft's service
    protection limits (both services' defaults, enforced); then a scheduled run after
    ``n``/20 customers changed in Business Central (the updates an incremental writes);
    then, on emulators of its own, a full Dataverse -> BC pass of ``n``/10 accounts (the
    creates Business Central takes in ``$batch`` requests of 100), without references.

    ``limit_records`` is the most records Dataverse's limits let through in the sync's
    time (:meth:`DataverseLimits.records`, CreateMultiple requests of 1,000 rows costing
    the profile's round trip plus 1,000 rows written); ``share_of_limit_throughput`` the
    sync's records over it. ``limit_seconds`` is the least time the limits allow for the
    scenario's records, ``share_of_limit_time`` that over the sync's time (unlike the share
    of records, it moves with every second the sync takes). The references run after the
    sync with fresh windows (as if alone), the floor sending its CreateMultiple requests as
    many at once as the limits allow."""
    with emulators(work / "emulators", latency="cloud", throttle=DV_LIMITS.spec()) as emu:
        emu.admin("business_central", "POST", "generate", {"entity": "customers", "count": n})
        prof = emu.admin("dataverse", "GET", "latency")
        s = Session(emu, work, sample)
        s.at_once = DV_LIMITS.concurrent
        r = s.sync("latency_cloud", f"cloud latency profile, {n:,}", "to_dataverse", "full", n,
                   min_requests([Move("to_dataverse", n)], target_reads=1),
                   [Move("to_dataverse", n, read_all=True)])
        served = _served_request_s(emu.stats(), "CreateMultiple")
        window = emu.admin("dataverse", "GET", "throttling")
        for service in SERVICES:  # a scheduled run comes windows later: they start empty
            emu.admin(service, "PUT", "throttling", {})
        _settle()
        k = max(1, n // 20)
        change_bc(emu, set(range(1, k + 1)), "+1 555 0142")
        _settle()
        s.sync("latency_cloud_incremental", f"cloud latency profile, {k:,} changed among {n:,}",
               "to_dataverse", "modified", k,
               min_requests([Move("to_dataverse", k, coupled=True)]), [])
        for service in SERVICES:  # the references' windows start empty
            emu.admin(service, "PUT", "throttling", {})
        per_req_s = (prof["rtt_ms"] + DV_BULK * prof["write_row_ms"]) / 1000
        most = DV_LIMITS.records(r.seconds, per_req_s)
        least = DV_LIMITS.seconds(n, per_req_s)
        r.extra |= {"profile": {"dataverse": prof,
                               "business_central": emu.admin("business_central", "GET",
                                                             "latency")},
                   "limits": DV_LIMITS.spec(),
                   "limit_records": most,
                   "limit_records_per_s": round(most / r.seconds, 1),
                   "share_of_limit_throughput": round(n / most, 3) if most else None,
                   "limit_seconds": round(least, 2),
                   "share_of_limit_time": round(least / r.seconds, 3),
                   "share_429": round(r.requests["throttled_429"] / r.requests["total"], 3),
                   "peak_window_execution_s": window.get("peak_window_execution_s")}
        if served:  # the same at the execution time the service counted for each request
            most_served = DV_LIMITS.records(r.seconds, served)
            r.extra |= {"served_request_s": round(served, 2),
                        "served_limit_records": most_served,
                        "share_of_served_limit_throughput": round(n / most_served, 3),
                        "served_limit_seconds": round(DV_LIMITS.seconds(n, served), 2)}
        results = s.close("lat")
        if r.floor and r.floor["seconds"]:  # the fewest requests, as many at once as allowed
            most = DV_LIMITS.records(r.floor["seconds"], per_req_s)
            r.extra["floor_share_of_limit_throughput"] = round(n / most, 3) if most else None
    m = max(1, n // 10)
    with emulators(work / "emulators-to-bc", latency="cloud",
                   throttle=DV_LIMITS.spec()) as emu:
        emu.admin("dataverse", "POST", "generate", {"entity": "accounts", "count": m})
        (work / "to-bc").mkdir(parents=True, exist_ok=True)
        s = Session(emu, work / "to-bc", 0)
        s.sync("latency_cloud_to_bc", f"cloud latency profile, Dataverse -> BC, {m:,}",
               "to_business_central", "full", m,
               min_requests([Move("to_business_central", m)], target_reads=1), [])
        results += s.close("lat-bc")
    return results


# The same rates as Microsoft's limits (20 requests and 4 s of execution a second, 52 at once)
# over a window a tenth as long: a run of LATENCY_SIZE spans several windows, so it measures
# the pace a long load keeps once the first window's budget is spent, not the first burst.
SUSTAINED_LIMITS = DataverseLimits(requests=600, window_s=30.0, execution_s=120.0)


def _served_request_s(stats: dict[str, Any], kind: str) -> float | None:
    """Execution seconds the service counted for ``kind`` requests, per ``DV_BULK`` rows
    written (its window's measure: the simulated latency and the emulator's own work)."""
    for service in stats.values():
        k = service.get("by_kind", {}).get(kind)
        if k and k.get("rows_written") and "served_ms" in k:
            return k["served_ms"] / 1000 / k["rows_written"] * DV_BULK
    return None


def sustained(work: Path, n: int) -> list[Result]:
    """Full BC -> Dataverse with the ``cloud`` latency profile under SUSTAINED_LIMITS (the
    engine told the window, as BCDV_REQUEST_WINDOW_SECONDS tells it of a tenant's): the
    share of the limits' throughput a load keeps over several windows, 429 answers, and
    every record once. ``limit_records`` is what the limits let through in the sync's time
    at the profile's cost of a 1,000-row CreateMultiple; ``served_limit_records`` the same at
    the execution time the service counted for the engine's CreateMultiple requests (the
    emulator's own work included), which is what its window spends."""
    limits = SUSTAINED_LIMITS
    with emulators(work / "emulators", latency="cloud", throttle=limits.spec()) as emu:
        emu.admin("business_central", "POST", "generate", {"entity": "customers", "count": n})
        prof = emu.admin("dataverse", "GET", "latency")
        s = Session(emu, work, 0)
        s.request_limit = (limits.requests, limits.window_s)
        r = s.sync("sustained_cloud",
                   f"cloud latency, sustained ({limits.window_s:.0f} s window at Microsoft's "
                   f"rates), {n:,}", "to_dataverse", "full", n,
                   min_requests([Move("to_dataverse", n)], target_reads=1), [])
        nominal = (prof["rtt_ms"] + DV_BULK * prof["write_row_ms"]) / 1000
        served = _served_request_s(emu.stats(), "CreateMultiple") or nominal
        most = limits.records(r.seconds, nominal)
        most_served = limits.records(r.seconds, served)
        r.extra |= {"limits": limits.spec(), **_landed(emu, n),
                    "request_s": round(nominal, 2), "served_request_s": round(served, 2),
                    "limit_records": most,
                    "share_of_limit_throughput": round(n / most, 3) if most else None,
                    "limit_seconds": round(limits.seconds(n, nominal), 1),
                    "served_limit_records": most_served,
                    "share_of_served_limit_throughput":
                        round(n / most_served, 3) if most_served else None,
                    "served_limit_seconds": round(limits.seconds(n, served), 1),
                    "share_429": round(r.requests["throttled_429"] / r.requests["total"], 3)}
        print(f"  sustained: {r.extra}", flush=True)
        return s.close("sus")


# --- reports -------------------------------------------------------------------------------
def markdown(doc: dict[str, Any]) -> str:
    """The results as a markdown table."""
    head = ("| scenario | records | seconds | records/s | requests (min) | 429 | peak RSS MB "
            "| floor s | x floor | one-per-record s | x faster than one-per-record |")
    lines = [head, "|" + "---|" * 11]
    for r in doc["results"]:
        fl, pr = r.get("floor") or {}, r.get("per_record") or {}
        lines.append(
            f"| {r['title']} | {r['records']:,} | {_num(float(r['seconds']))} | "
            f"{r['records_per_s'] or 0:,.0f} | {r['requests']['total']:,} "
            f"({r['min_requests']:,}) | {r['requests']['throttled_429']} | {r['rss_mb']:.0f} | "
            f"{_num(fl.get('seconds'))} | {_num(r.get('vs_floor'))} | "
            f"{_num(pr.get('seconds'))} | {_num(r.get('speedup_vs_per_record'))} |")
    notes = [f"`{doc['command']}` on {doc['machine']}, {doc['date']}, engine "
             f"{doc.get('engine') or '?'}; total {doc['total_seconds'] / 60:.1f} min. Seconds "
             "are the sync alone (the child process's start and imports not counted); "
             "requests are API requests to both services, (min) the fewest the scenario "
             "needs; floor and one-per-record are measured against the same emulators."]
    for r in doc["results"]:
        if r["name"] in ("throttled", "latency_cloud", "sustained_cloud"):
            extra = {k: v for k, v in r["extra"].items() if k != "profile"}
            notes.append(f"{r['title']}: {json.dumps(extra)}")
    return "\n".join(lines) + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"


def _num(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.2f}" if abs(v) < 10 else f"{v:,.1f}"
    return f"{v:,}"


def chart(doc_path: Path, png: Path) -> bool:
    """The PNG chart, drawn by bench/chart.py (matplotlib, a benchmark tool, not a product
    dependency) in its own process."""
    script = ROOT / "bench" / "chart.py"
    proc = subprocess.run([sys.executable, str(script), str(doc_path), str(png)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"no chart: {proc.stderr.strip()[-500:]}", file=sys.stderr)
    return proc.returncode == 0


def update_readme(table: str, readme: Path = ROOT / "README.md") -> bool:
    """Replace the text between the bench markers of README.md with ``table``."""
    text = readme.read_text()
    if README_START not in text or README_END not in text:
        print("README.md has no bench markers: not updated", file=sys.stderr)
        return False
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    readme.write_text(f"{head}{README_START}\n{table}{README_END}{tail}")
    return True


# --- entry -------------------------------------------------------------------------------
SCENARIO_GROUPS = ("chain", "curve", "dv_to_bc", "bidirectional", "throttled", "latency",
                   "sustained")


def run(size: int, sizes: list[int], groups: list[str], sample: int, throttled_size: int,
        limits: str, latency_size: int, out: Path | None, engine: str = "",
        log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the chosen scenario groups; returns the report (and writes it under ``out``)."""
    started = time.perf_counter()
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="bcdv-bench-") as tmp:
        def work(name: str) -> Path:
            """A fresh working directory per emulator session."""
            path = Path(tmp) / name
            path.mkdir()
            return path

        if "chain" in groups:
            log(f"BC -> Dataverse at {size:,}, then incremental and bidirectional")
            results += bc_to_dv_chain(work("chain"), size, sample, chain=True)
        if "curve" in groups:
            for n in sizes:
                if n == size and "chain" in groups:
                    continue
                log(f"full sync BC -> Dataverse at {n:,} (memory curve)")
                results += bc_to_dv_chain(work(f"curve{n}"), n, sample, chain=False)
        if "dv_to_bc" in groups:
            log(f"Dataverse -> BC at {size:,}")
            results += dv_to_bc(work("dv"), size, sample)
        if "bidirectional" in groups:
            log(f"full bidirectional sync at {size:,}")
            results += bidirectional_full(work("bidirectional"), size, sample)
        if "throttled" in groups:
            log(f"throttled at {throttled_size:,}")
            results += throttled(work("throttled"), throttled_size, limits, sample)
        if "latency" in groups:
            log(f"cloud latency at {latency_size:,}")
            results += latency(work("latency"), latency_size, max(5, sample // 20))
        if "sustained" in groups:
            log(f"cloud latency, sustained under the limits, at {latency_size:,}")
            results += sustained(work("sustained"), latency_size)
    doc = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "machine": f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}",
           "command": " ".join(["python -m bcdv.bench", *sys.argv[1:]]),
           "engine": engine,
           "total_seconds": round(time.perf_counter() - started, 1),
           "results": [r.row() for r in results]}
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "latest.json").write_text(json.dumps(doc, indent=2) + "\n")
        (out / "latest.md").write_text(markdown(doc))
        chart(out / "latest.json", out / "latest.png")
    return doc


def engine_snapshot(ref: str, into: Path) -> tuple[Path, str]:
    """``git archive <ref>`` of plugins/ and include/ into ``into`` -> (path, commit): the
    engine as committed, while the working tree changes under the benchmark."""
    import io
    import tarfile

    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", ref],
                            capture_output=True, text=True, check=True).stdout.strip()
    blob = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", commit,
                           "plugins", "include"], capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        tar.extractall(into, filter="data")
    return into, commit


def _engine_label(ref: str | None) -> str:
    if ref:
        return ref
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "plugins",
                            "include"], capture_output=True, text=True).stdout.strip()
    return f"{head or '?'}{' + uncommitted changes' if dirty else ''}"


def _ints(text: str) -> list[int]:
    return [int(x.replace("_", "")) for x in text.split(",") if x.strip()]


def main(argv: list[str] | None = None) -> int:
    """``python -m bcdv.bench [--quick] [--size N] [--sizes a,b] [--only g,h] [--readme]``."""
    args_in = sys.argv[1:] if argv is None else argv
    if args_in[:1] == ["--child"]:
        print(json.dumps(child_sync(json.loads(Path(args_in[1]).read_text()))))
        return 0
    from bcdv.local_emulators import emulators_module

    emulators_module("server")  # the benchmarks run against the emulators: installed?
    p = argparse.ArgumentParser(prog="python -m bcdv.bench", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="tiny sizes (1,000 records; 300 throttled and with latency)")
    p.add_argument("--size", type=int, default=10_000)
    p.add_argument("--sizes", default="10000,100000",
                   help="memory-curve sizes of the full BC -> Dataverse sync")
    p.add_argument("--only", default=",".join(SCENARIO_GROUPS),
                   help=f"scenario groups: {', '.join(SCENARIO_GROUPS)}")
    p.add_argument("--sample", type=int, default=500,
                   help="records written one per request to time that baseline")
    p.add_argument("--throttled-size", type=int, default=2_000)
    p.add_argument("--throttle", default="requests=4,window_seconds=4,concurrent=2",
                   help="the emulators' limits for the throttled run")
    p.add_argument("--latency-size", type=int, default=LATENCY_SIZE)
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("--readme", action="store_true", help="copy the table into README.md")
    p.add_argument("--profile", default=None, metavar="DIR",
                   help="write a cProfile of each sync to DIR/<run id>.prof (slows the syncs: "
                        "for finding where time goes, not for figures)")
    p.add_argument("--render", action="store_true",
                   help="no run: rewrite latest.md and latest.png (and README with --readme) "
                        "from --out's latest.json")
    p.add_argument("--engine", default=None, metavar="GIT_REF",
                   help="benchmark the engine and mappings of this commit (git archive), "
                        "not the working tree")
    args = p.parse_args(args_in)
    if args.quick:
        args.size, args.sizes, args.sample = 1_000, "1000", 50
        args.throttled_size = args.latency_size = 300
    groups = [g.strip() for g in args.only.split(",") if g.strip()]
    unknown = set(groups) - set(SCENARIO_GROUPS)
    if unknown:
        p.error(f"unknown scenario groups {sorted(unknown)}; known: {SCENARIO_GROUPS}")
    if args.render:
        out = Path(args.out)
        doc = json.loads((out / "latest.json").read_text())
        (out / "latest.md").write_text(markdown(doc))
        chart(out / "latest.json", out / "latest.png")
        if args.readme:
            update_readme(markdown(doc))
        return 0
    Session.profile = str(Path(args.profile).resolve()) if args.profile else None
    with tempfile.TemporaryDirectory(prefix="bcdv-bench-engine-") as snap:
        label = _engine_label(None)
        if args.engine:
            Session.engine, commit = engine_snapshot(args.engine, Path(snap))
            label = f"{args.engine} ({commit})"
        doc = run(args.size, _ints(args.sizes), groups, args.sample, args.throttled_size,
                  args.throttle, args.latency_size, Path(args.out), engine=label)
    table = markdown(doc)
    print(table)
    if args.readme:
        update_readme(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
