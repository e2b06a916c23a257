"""Issue 14: a pass's first request reads its reference tables and the first page of its
records together, so its signpost comes from a request that read records.

The signpost is where the next incremental pass starts reading. It must not be later than
the moment the page was read, or a record changed between that moment and the answer would
never be read. Business Central answers with a Date header when the answer is sent (RFC 9110
section 6.6.1: the time the message was generated), after the page was read and, on a busy
tenant, long after; the serving fits in the request's round trip. So the signpost is the
Date less the round trip, less the usual slack.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone
from typing import Any

import pytest

from bcdv.engine.adapters import SIGNPOST_SLACK

from .conftest import Env, make_mapping

# Business Central's cost of reading a row (the emulator's latency profile, Learn:
# dynamics-rate-limits gives no figure; chosen so 120 rows take 3.6 s, past the slack).
READ_ROW_MS = 30


def test_a_signpost_is_not_later_than_a_slow_first_page_read(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    mapping = make_mapping(sync_only_coupled=False)
    env.admin("bc", "POST", "generate", {"entity": "customers", "count": 120})
    late = env.bc_new("Late Change Ltd", phoneNumber="+1 555 0100")
    env.tick()
    env.admin("bc", "PUT", "latency", {"read_row_ms": READ_ROW_MS})
    edited = threading.Event()

    def edit_while_the_page_is_served() -> None:
        # The page's rows are read at once, then the service takes ~3.6 s to send them:
        # a person's change in that time is newer than the page and older than its Date.
        time.sleep(1.0)
        env.bc_edit(late["id"], phoneNumber="+1 555 0199")
        edited.set()

    # When the pass sends its first request (the engine's own start before it takes its
    # time on a loaded machine): the signpost may not be later, less the slack.
    sent: list[datetime] = []
    client = env.ctx.business_central.client
    first_read = client.first_read

    def timed_first_read(*args: Any, **kwargs: Any) -> Any:
        sent.append(datetime.now(timezone.utc))
        return first_read(*args, **kwargs)

    monkeypatch.setattr(client, "first_read", timed_first_read)
    person = threading.Thread(target=edit_while_the_page_is_served)
    person.start()
    first = env.run(mapping, "to_dataverse")
    person.join()
    assert edited.is_set()
    env.admin("bc", "DELETE", "latency")
    assert first.failed == 0 and first.inserted == 121, first.records
    job = env.state.job(first.job_id)
    assert job is not None and job["signpost"] is not None
    signpost = datetime.fromisoformat(str(job["signpost"]))
    if signpost.tzinfo is None:
        signpost = signpost.replace(tzinfo=timezone.utc)
    # No later than the request was sent, less the slack (the Date alone, less the slack,
    # would be about 1.6 s after the page was read).
    assert len(sent) == 1 and signpost <= sent[0] - SIGNPOST_SLACK, (signpost, sent)

    env.tick()
    second = env.run(mapping, "to_dataverse")
    assert second.failed == 0, second.records
    coupling = env.coupling(mapping, bc_id=late["id"])
    assert coupling is not None
    row = env.dv_get(coupling["dv_id"])
    assert row is not None and row["telephone1"] == "+1 555 0199", row


def test_an_incremental_pass_reads_its_records_in_its_first_request(env: Env) -> None:
    """With no reference tables to read, the first request is the page itself (no signpost
    GET before it)."""
    mapping = make_mapping(sync_only_coupled=False)
    for name in ("North Ltd", "South Ltd"):
        env.bc_new(name)
    assert env.run(mapping, "to_dataverse").inserted == 2
    env.tick()
    changed = env.bc_new("East Ltd")
    env.admin("bc", "DELETE", "stats")
    report = env.run(mapping, "to_dataverse")
    assert report.inserted == 1 and report.failed == 0, report.records
    stats = env.admin("bc", "GET", "stats")
    assert stats["requests"] == 1, stats["by_kind"]
    assert env.coupling(mapping, bc_id=changed["id"]) is not None
