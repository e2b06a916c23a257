"""The pace of a pass's CreateMultiple requests follows what Dataverse states on each answer
(issue 14), against the emulator with scaled-down service protection limits.

Learn, "Send parallel requests" (power-apps/developer/data-platform/send-parallel-requests):
use the integer in the ``x-ms-dop-hint`` response header as the degree of parallelism.
Learn, "Service protection API limits" (power-apps/developer/data-platform/api-limits):
``x-ms-ratelimit-time-remaining-xrm-requests`` is the execution time left in the user's
5-minute window, a request arriving when the window's budget is spent is answered 429 with
Retry-After, and the request that spends it is still served. The emulator keeps those
limits per caller over a sliding window (``/_emulator/throttling``) and counts what it
served (``/_emulator/stats``).
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

from bcdv.clients.http import ServiceBudget
from bcdv.engine.adapters import (
    BULK_ROWS,
    MAX_CREATE_ROWS,
    MIN_PART_OPS,
    PART_SECONDS,
    Pace,
    WriteItem,
    Written,
    rows_per_create,
)

from .conftest import Env, make_mapping


def _full_pass(env: Env, count: int, limits: dict[str, Any],
               latency: dict[str, Any]) -> dict[str, Any]:
    env.admin("bc", "POST", "generate", {"entity": "customers", "count": count})
    env.admin("dv", "PUT", "throttling", limits)  # also empties the windows
    env.admin("dv", "PUT", "latency", latency)
    env.admin("dv", "DELETE", "stats")
    report = env.run(make_mapping(), "to_dataverse", mode="full")
    assert report.inserted == count and report.failed == 0, report.records[:3]
    names = [a["name"] for a in env.admin("dv", "GET", "records/accounts")["value"]]
    assert len(names) == len(set(names)) == count  # every record once, none twice
    return dict(env.admin("dv", "GET", "stats"))


def test_requests_at_once_keep_to_the_hint_the_service_sends(env: Env) -> None:
    """A trial environment recommends fewer requests at once than the 52 allowed: with
    ``x-ms-dop-hint: 2`` no more than two CreateMultiple requests are in flight. The 5,000
    rows go as two whole rounds of two requests of 1,250 (not 2 + 2 + a round of one)."""
    stats = _full_pass(env, 5000, {"dop_hint": 2}, {"rtt_ms": 800})
    pace = env.ctx.dataverse.pace
    assert stats["by_kind"]["CreateMultiple"]["requests"] == 4
    assert pace.peak == 2 and pace.workers <= 2
    assert stats["throttled_429"] == 0
    assert env.dv.http.budget is not None and env.dv.http.budget.dop_hint == 2


def test_the_first_round_sends_the_hint_s_worth_at_once(env: Env) -> None:
    """Learn's parallel operations sample reads ``x-ms-dop-hint`` first (a WhoAmI) and then
    sends that many requests at once. With seconds of latency per request, waiting for the
    first answers before the hint applies would cost a round: 8,000 creates with a hint of
    8 go as 8 CreateMultiple requests all in flight together, in one round."""
    stats = _full_pass(env, 8000, {"dop_hint": 8}, {"rtt_ms": 2000})
    pace = env.ctx.dataverse.pace
    assert stats["by_kind"]["CreateMultiple"]["requests"] == 8
    assert pace.peak == 8
    assert stats["throttled_429"] == 0


def test_a_load_past_one_round_of_requests_fills_whole_rounds() -> None:
    """Dataverse works through a CreateMultiple's rows one after the other, so every request
    of a round takes about as long; a request that waits for a slot starts a round of its
    own. 52,000 rows as requests of 1,000 with 48 at once are two rounds (48, then 4); as
    48 requests of 1,084 they are one. Within one round the requests keep 1,000 rows
    (Learn: bulk-operations, "around 1,000")."""
    assert rows_per_create(52_000, 48) == 1084
    assert rows_per_create(100_000, 48) == 1042  # 96 requests: two whole rounds
    assert rows_per_create(48_000, 48) == rows_per_create(300, 48) == 1000
    assert rows_per_create(5_000, 2) == 1250
    assert rows_per_create(2_000, 2) == 1000
    for expected in (48_001, 60_001, 61_234, 250_000, 1_000_000):
        for at_once in (1, 2, 4, 16, 48):
            rows = rows_per_create(expected, at_once)
            rounds = math.ceil(math.ceil(expected / rows) / at_once)
            assert rows <= MAX_CREATE_ROWS
            if expected > at_once * 1000:
                # Whole rounds: what the rounds take (rows a request, one after the other)
                # is an even share of the rows per slot, give or take a row a round.
                assert rounds * rows < expected / at_once + rounds, (expected, at_once)


def test_a_pass_past_one_round_sends_one_round_of_larger_requests(env: Env) -> None:
    """With ``x-ms-dop-hint: 4`` a full pass of 5,000 customers goes as four CreateMultiple
    requests of 1,250, all in flight together (one round); as five of 1,000 the fifth would
    wait for the first to end. Every record arrives once."""
    stats = _full_pass(env, 5000, {"dop_hint": 4}, {"rtt_ms": 500})
    assert stats["by_kind"]["CreateMultiple"]["requests"] == 4
    assert env.ctx.dataverse.pace.peak == 4
    assert env.ctx.dataverse.create_rows == 1250
    assert stats["throttled_429"] == 0


class _Blind(Pace):
    """The same pace, deaf to the budget the service states (only 429s slow it)."""

    def _affordable(self, budget: ServiceBudget | None) -> bool:
        return True


def _write_creates(env: Env, pace: Pace, count: int, label: str) -> dict[str, Any]:
    """``count`` creates written by the Dataverse adapter with ``pace`` (every one answered
    with its id); returns the service's statistics of the write."""
    env.admin("dv", "DELETE", "stats")
    adapter = env.ctx.dataverse
    adapter.pace = pace
    items = [WriteItem("insert", str(uuid.uuid4()), {"name": f"{label} {i}",
                                                       "customertypecode": 3})
             for i in range(count)]
    written = adapter.write_many(make_mapping().dataverse, items, select=["name"])
    assert [w.record_id for w in written if isinstance(w, Written) and w.created] == \
        [it.record_id for it in items]
    return dict(env.admin("dv", "GET", "stats"))


def _creates(env: Env, pace: Pace, count: int) -> tuple[dict[str, Any], float]:
    """``count`` creates written with ``pace``, under a window of 6 s of execution per
    10 s, each 1,000-row request costing 1 s (1 ms a row written); returns the service's
    statistics with the most execution time the window held."""
    env.admin("dv", "PUT", "throttling", {"execution_ms": 6000, "window_seconds": 10})
    env.admin("dv", "PUT", "latency", {"write_row_ms": 1})
    stats = _write_creates(env, pace, count, pace.__class__.__name__)
    return stats, float(env.admin("dv", "GET", "throttling")["peak_window_execution_s"])


def test_a_window_running_out_slows_the_pace_before_the_service_throttles(env: Env) -> None:
    """12 requests of 1 s each against 6 s of execution per 10 s window. The service serves
    a request until the window's budget is spent as it arrives, so a client sending more at
    once runs the window past its budget by a round of requests, and the longer the overrun
    the longer the Retry-After (Learn: api-limits, "The Retry-After duration"). The pace
    that reads the budget on each answer keeps no more in flight than the window has left:
    the window ends at most one request past its budget; the same pace deaf to the budget
    runs it further."""
    informed, told_peak = _creates(env, Pace(window_s=10), 12_000)
    _, deaf_peak = _creates(env, _Blind(window_s=10), 12_000)
    rows = env.admin("dv", "GET", "records/accounts")["value"]
    assert len(rows) == len({r["accountid"] for r in rows}) == 24_000
    told = informed["by_kind"]["CreateMultiple"]
    assert told["requests"] == 12 + told["throttled_429"]
    assert told_peak < 6 + 2 < deaf_peak


def _sliding(env: Env, pace: Pace, count: int) -> dict[str, Any]:
    """``count`` creates written with ``pace`` under 2 s of execution per 5 s sliding window,
    each 1,000-row request costing 0.5 s: the budget pays for four at a time, and what a
    request spent leaves the window 5 s after it arrived."""
    env.admin("dv", "PUT", "throttling", {"execution_ms": 2000, "window_seconds": 5})
    env.admin("dv", "PUT", "latency", {"write_row_ms": 0.5})
    label = f"Sliding {type(pace).__name__}"
    stats = _write_creates(env, pace, count, label)
    names = [r["name"] for r in env.admin("dv", "GET", "records/accounts")["value"]
             if r["name"].startswith(label + " ")]
    assert len(names) == len(set(names)) == count  # every record once, none twice
    return stats


def test_a_pace_held_by_a_spent_window_starts_again_as_its_own_requests_leave_it(
        env: Env) -> None:
    """Learn, api-limits: the execution time limit is "combined execution time" within a
    "5 minute sliding window", and a request arriving while it is spent is answered 429.
    A pass held back by a spent window need not wait for an answer to say it has room
    again, nor try and be refused: the pace knows when its own requests were sent, so it
    starts the next when the oldest leave the window. Eight requests of 0.5 s against 2 s a
    5 s window: the pace that knows the window is never refused; the same pace keeping no
    account of its own requests sends into the spent window once nothing is in flight, and
    is answered 429."""
    knows = _sliding(env, Pace(window_s=5), 8_000)
    assert knows["throttled_429"] == 0
    assert knows["by_kind"]["CreateMultiple"]["requests"] == 8
    forgets = _sliding(env, _Forgetful(window_s=5), 6_000)
    assert forgets["throttled_429"] >= 1


class _Forgetful(Pace):
    """The same pace, keeping no account of what its own requests spent (only what the
    answers state): a spent window holds it until an answer says otherwise."""

    def _done(self, http: Any, started: float, answered: float, ok: bool) -> None:
        super()._done(http, started, answered, ok)
        with self._cond:
            self._spent.clear()


def test_batches_of_creates_written_at_once_are_not_read_back(env: Env) -> None:
    """Two load batches in flight together share the pace, and nothing reads their rows
    back: a CreateMultiple answers with the ids only (Learn: bulk-operations), and the
    baseline of a created row is taken by the first read that meets it (engine/created.py).
    Each batch is answered with its own ids, in its own order, with no baseline; the rows
    are in Dataverse with the ids we chose."""
    env.admin("dv", "PUT", "latency", {"rtt_ms": 1000})
    env.admin("dv", "DELETE", "stats")
    adapter = env.ctx.dataverse
    side = make_mapping().dataverse
    batches = [[WriteItem("insert", str(uuid.uuid4()), {"name": f"Batch {b} {i}",
                                                         "customertypecode": 3})
                for i in range(2000)] for b in range(2)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda items: adapter.write_many(side, items, ["name"]),
                                batches))
    for items, written in zip(batches, results, strict=True):
        assert [w.record_id for w in written if isinstance(w, Written)] == \
            [it.record_id for it in items]
        assert all(isinstance(w, Written) and w.created and w.modified is None
                   and w.etag is None and w.row is None for w in written)
    kinds = env.admin("dv", "GET", "stats")["by_kind"]
    assert kinds["CreateMultiple"]["requests"] == 4
    assert "batch" not in kinds and "get_page" not in kinds
    stored = {a["accountid"] for a in env.admin("dv", "GET", "records/accounts")["value"]}
    assert {it.record_id for items in batches for it in items} <= stored


def _updates(env: Env, count: int, write_row_ms: float) -> tuple[dict[str, Any], Pace]:
    """``count`` accounts created, then all updated through the adapter in one call, each
    operation costing ``write_row_ms``; the service's statistics of the updates."""
    adapter = env.ctx.dataverse
    adapter.pace, adapter.op_seconds = Pace(), None
    side = make_mapping().dataverse
    made = adapter.write_many(side, [WriteItem("insert", str(uuid.uuid4()), {
        "name": f"Update me {i}", "customertypecode": 3}) for i in range(count)], ["name"])
    adapter.op_seconds = None  # what the creates' rows took is not the cost asked for here
    env.admin("dv", "PUT", "latency", {"write_row_ms": write_row_ms})
    env.admin("dv", "DELETE", "stats")
    adapter.pace = Pace()
    tag = f"Updated at {write_row_ms} ms"
    done = adapter.write_many(side, [WriteItem("update", w.record_id, {"name": f"{tag} {i}"},
                                               w.etag) for i, w in enumerate(made)
                                     if isinstance(w, Written)], ["name"])
    assert all(isinstance(w, Written) and not w.created for w in done) and len(done) == count
    rows = env.admin("dv", "GET", "records/accounts")["value"]
    assert sorted(r["name"] for r in rows if r["name"].startswith(f"{tag} ")) == \
        sorted(f"{tag} {i}" for i in range(count))
    return dict(env.admin("dv", "GET", "stats")), adapter.pace


def test_updates_to_a_slow_service_go_in_parallel_requests_sized_to_their_cost(
        env: Env) -> None:
    """Dataverse runs a ``$batch``'s operations one after the other (Learn:
    execute-batch-operations-using-web-api) and serves parallel requests at once (Learn:
    send-parallel-requests). 1,000 updates at 5 ms an operation: the first 100 go alone and
    time an operation, the other 900 go in requests of about 2 s each (about 400
    operations), in flight together. Against a fast service the 900 go in one request."""
    fast, _ = _updates(env, 1000, 0)
    assert fast["by_kind"]["batch"]["requests"] == 2  # 100 alone, then the other 900
    slow, pace = _updates(env, 1000, 5)
    assert slow["by_kind"]["batch"]["requests"] >= 1 + 2, slow["by_kind"]
    assert slow["by_kind"]["batch"]["ops"] == 1000
    assert pace.peak >= 2


def test_a_new_run_sizes_its_update_requests_from_what_the_last_run_measured(
        env: Env, tmp_path) -> None:
    """What one ``$batch`` write operation took is kept in the state store
    (``bcdv_service_facts``), so a scheduled run in a new process, with more than 200
    updates, sends them at once in requests sized to that time, without first sending 100
    alone to time one (one request and one round trip less). After a full load, before any
    update was timed, a CreateMultiple row's time stands for it."""
    from bcdv.clients.batch import BatchOp
    from bcdv.engine import SyncContext
    from bcdv.settings import endpoints_from_dict

    mapping = make_mapping()
    env.admin("bc", "POST", "generate", {"entity": "customers", "count": 300})
    assert env.run(mapping, "to_dataverse", mode="full").inserted == 300
    ids = [c["id"] for c in env.bc.list("customers", select=["id"])]
    assert len(ids) == 300

    def scheduled_run(phone: str) -> list[int]:
        """Change every customer in BC, then run the pass in a new process's context; the
        sizes of its ``$batch`` write requests to Dataverse."""
        env.tick()
        env.bc.batch([BatchOp("PATCH", env.bc.batch_url("customers", i),
                              {"phoneNumber": phone}, {"If-Match": "*"}) for i in ids])
        env.tick()
        ctx = SyncContext.create(endpoints_from_dict(env.endpoints), env.state.url,
                                 tmp_path / f"staging-{phone[-4:]}")
        sizes: list[int] = []
        batch = ctx.dataverse.client.batch

        def counted(ops: Any, *args: Any, **kwargs: Any) -> Any:
            if any(op.method == "PATCH" for op in ops):
                sizes.append(len(ops))
            return batch(ops, *args, **kwargs)

        ctx.dataverse.client.batch = counted  # type: ignore[method-assign]
        try:
            report = run_pass_in(ctx, mapping)
        finally:
            ctx.close()
        assert report.modified == 300 and report.failed == 0, report.records[:3]
        return sizes

    def run_pass_in(ctx: Any, m: Any) -> Any:
        from bcdv.engine.runner import run_pass
        from bcdv.mapping.model import Direction

        return run_pass(ctx, m, Direction.TO_DATAVERSE)

    service = f"dataverse {env.dv.settings.api_url}"
    # The full load timed its CreateMultiple rows; that is kept for the next run until a
    # $batch write is timed.
    def sized(seconds: float) -> list[int]:
        """The requests 300 updates go in when one operation is known to take ``seconds``
        (``_batch_parts``): sized at once, no 100 alone first. (Not a fixed [300]: how long
        a CreateMultiple row took depends on how busy the machine was.)"""
        size = max(MIN_PART_OPS, min(BULK_ROWS, int(PART_SECONDS / seconds)))
        return [min(size, 300 - start) for start in range(0, 300, size)]

    seeded = env.state.op_seconds(service)
    assert seeded is not None and seeded > 0
    assert scheduled_run("+1 555 0101") == sized(seeded)
    known = env.state.op_seconds(service)
    assert known is not None and known != seeded  # now a $batch write's time
    assert scheduled_run("+1 555 0102") == sized(known)  # known from the run before
    rows = [r["telephone1"] for r in env.admin("dv", "GET", "records/accounts")["value"]]
    assert rows.count("+1 555 0102") == 300


def test_without_any_time_known_the_first_updates_time_a_hundred_alone(env: Env,
                                                                         tmp_path) -> None:
    """A first run that only updates (couplings made by hand or by match, nothing created
    and nothing kept from an earlier run) sends 100 operations alone to time one."""
    from bcdv.clients.batch import BatchOp

    mapping = make_mapping()
    env.admin("bc", "POST", "generate", {"entity": "customers", "count": 300})
    assert env.run(mapping, "to_dataverse", mode="full").inserted == 300
    env.ctx.dataverse.op_seconds = None
    with env.state.engine.begin() as conn:  # forget what the full load kept
        from bcdv.state.schema import service_facts

        conn.execute(service_facts.delete())
    ids = [c["id"] for c in env.bc.list("customers", select=["id"])]
    env.tick()
    env.bc.batch([BatchOp("PATCH", env.bc.batch_url("customers", i),
                          {"phoneNumber": "+1 555 0103"}, {"If-Match": "*"}) for i in ids])
    env.tick()
    sizes: list[int] = []
    batch = env.dv.batch

    def counted(ops: Any, *args: Any, **kwargs: Any) -> Any:
        if any(op.method == "PATCH" for op in ops):
            sizes.append(len(ops))
        return batch(ops, *args, **kwargs)

    env.dv.batch = counted  # type: ignore[method-assign]
    report = env.run(mapping, "to_dataverse")
    assert report.modified == 300 and report.failed == 0, report.records[:3]
    assert sizes == [100, 200]


def test_paced_requests_start_in_the_order_they_asked() -> None:
    """A load keeps several batches in flight and each batch's requests wait in the pace.
    They start in the order they asked, so the batches are answered in the order they were
    sent, and each is stamped while later ones are in flight: taken in any order, several
    batches ended together after the last answer and were all stamped then (2.9 s of a
    52,000-row load's end, against 0.8 s in order). One request at a time here: eight ask
    while a ninth holds the slot, and start one after the other in their order."""

    http = SimpleNamespace(budget=None, throttled=0)
    pace = Pace(start=1, most=1)
    release = threading.Event()
    started: list[int] = []

    def hold(_: None) -> None:
        release.wait(5)

    def request(i: int) -> None:
        started.append(i)
        time.sleep(0.01)

    with ThreadPoolExecutor(max_workers=9) as pool:
        futures = [pool.submit(pace.run, hold, None, http)]  # type: ignore[arg-type]
        while pace.peak < 1:
            time.sleep(0.01)
        for i in range(8):
            futures.append(pool.submit(pace.run, request, i, http))  # type: ignore[arg-type]
            time.sleep(0.05)  # asked after the one before
        release.set()
        for future in futures:
            future.result()
    assert started == list(range(8))
    assert pace.peak == 1


def test_a_first_round_spends_the_window_it_is_told_of() -> None:
    """Before any answer tells what a CreateMultiple costs, the first round is sized by the
    execution time the service states is left, at the cost of a 1,000-row request in
    Microsoft's bulk operation samples (10 ms a row: 10 s). With 120 s left and requests of
    1,084 rows (10.9 s each at that rate), the first round sends the ten the window pays
    for, not half of them: a first window half used is a shape every later window of a
    sliding limit repeats (the sustained benchmark took 169 s for 52,000 rows sent five at
    first, 148 s sent eleven). A window with less left gets fewer; never more than the
    hint."""
    pace = Pace()
    told = ServiceBudget(requests_left=600, seconds_left=120.0, dop_hint=48, at=0.0)
    assert 120.0 // (1084 * 0.010) <= pace._first_round(told) <= 12
    assert pace._first_round(ServiceBudget(requests_left=600, seconds_left=1200.0,
                                           dop_hint=48, at=0.0)) == 48
    assert pace._first_round(ServiceBudget(requests_left=600, seconds_left=30.0,
                                           dop_hint=48, at=0.0)) == pace.start


class _Window:
    """A service protection window as the Dataverse emulator keeps it (and Learn: api-limits
    describes it): each request counts from its arrival, its execution time added when it
    is answered; a request arriving while the window's time is spent is refused (429); an
    answer states the time left, never below 0."""

    def __init__(self, http: Any, limit: float, window: float) -> None:
        self.http, self.limit, self.window = http, limit, window
        self.entries: list[list[float]] = []
        self.refused = 0

    def spent(self, now: float) -> float:
        return sum(d for arrived, d in self.entries if arrived > now - self.window)

    def serve(self, seconds: float) -> None:

        now = time.monotonic()
        if self.spent(now) >= self.limit:
            self.refused += 1
        entry = [now, 0.0]
        self.entries.append(entry)
        time.sleep(seconds)
        entry[1] = seconds
        answered = time.monotonic()
        self.http.budget = ServiceBudget(requests_left=100, dop_hint=8, at=answered,
                                         seconds_left=max(0.0, self.limit
                                                          - self.spent(answered)))


def test_a_window_stated_spent_after_an_overspent_round_holds_the_next_request() -> None:
    """A first round may spend more than the window has left (the service serves what
    arrives before the window is spent), and the service then states 0 left, not the
    deficit. Seen in the sustained benchmark: when the pace's own request of the round
    before left the window, the pace took its 1.7 s as room and sent a request into a
    window still 3 s over, answered 429. Here (1 s of execution per 2 s window): a 0.3 s
    request, then two 0.6 s creates at once (1.2 s: over), then another: it waits until
    the creates leave the window, and the service refuses nothing."""

    http = SimpleNamespace(budget=None, throttled=0)
    service = _Window(http, limit=1.0, window=2.0)
    http.budget = ServiceBudget(requests_left=100, seconds_left=1.0, dop_hint=8,
                                at=time.monotonic())
    pace = Pace(start=2, most=2, window_s=2.0)
    began = time.monotonic()
    pace.run(lambda _: service.serve(0.3), None, http)  # type: ignore[arg-type]
    time.sleep(max(0.0, began + 1.0 - time.monotonic()))
    creates = [threading.Thread(target=pace.run, args=(lambda _: service.serve(0.6), None,
                                                       http)) for _ in range(2)]
    for t in creates:
        t.start()
    for t in creates:
        t.join()
    assert service.spent(time.monotonic()) > service.limit  # the round overspent it
    assert http.budget.seconds_left == 0.0
    pace.run(lambda _: service.serve(0.1), None, http)  # type: ignore[arg-type]
    assert service.refused == 0
    # It went once the creates (sent 1 s in) left the window, not when the first request
    # did (2.5 s in, with the pace's padding).
    assert service.entries[-1][0] - began > 2.9
