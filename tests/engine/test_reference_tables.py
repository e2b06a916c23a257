"""Issue 14: the reference tables a mapping's lookups need (currencies, salespeople, payment
terms, users, ...) are read once per run of the mapping, shared by its two passes, and read
again by the next run (a run never sees another run's copy). Business Central's go in one
JSON ``$batch`` of GETs (Learn: business-central dynamics-batch-requests)."""
from __future__ import annotations

from collections import Counter
from typing import Any

from bcdv.engine import sync_mapping


def _count_lists(ctx: Any) -> tuple[Counter[tuple[str, str]], list[list[str]]]:
    """Count every whole-table read each client makes, by entity set, whether alone
    (``list``) or in a batch (Business Central's ``_read_tables``, whose entity sets are also
    listed per call, and Dataverse's ``_whoami_and_tables``)."""
    seen: Counter[tuple[str, str]] = Counter()
    batches: list[list[str]] = []
    for system, client in (("bc", ctx.business_central.client),
                           ("dv", ctx.dataverse.client)):
        original = client.list

        def counted(entity_set: str, *args: Any, _o: Any = original, _s: str = system,
                    **kwargs: Any) -> Any:
            seen[(_s, entity_set)] += 1
            return _o(entity_set, *args, **kwargs)

        client.list = counted
    bc, dv = ctx.business_central.client, ctx.dataverse.client
    # Every batched table read of either client goes through these two (with the first
    # page of the records, or the rows compared with, as further operations).
    batched, with_whoami = bc._read_tables, dv._whoami_and_tables

    def counted_batch(reads: Any, more: Any, **kwargs: Any) -> Any:
        if reads:
            batches.append([entity_set for entity_set, _ in reads])
        seen.update(("bc", entity_set) for entity_set, _ in reads)
        return batched(reads, more, **kwargs)

    def counted_whoami(reads: Any, more: Any, **kwargs: Any) -> Any:
        seen.update(("dv", entity_set) for entity_set, _ in reads)
        return with_whoami(reads, more, **kwargs)

    bc._read_tables, dv._whoami_and_tables = counted_batch, counted_whoami
    return seen, batches


def test_a_run_reads_each_reference_table_once_for_both_passes(ctx, mappings) -> None:
    ctx.mappings = mappings
    customer = mappings["CUSTOMER"]
    seen, batches = _count_lists(ctx)
    first = sync_mapping(ctx, customer, mode="full", run_id="first")
    assert [r.direction for r in first] == ["to_dataverse", "to_business_central"]
    assert all(r.failed == 0 for r in first), [r.records for r in first]
    reference = {k: n for k, n in seen.items() if k[1] not in ("customers", "accounts")}
    assert {"currencies", "transactioncurrencies"} <= {k[1] for k in reference}, reference
    assert all(n == 1 for n in reference.values()), sorted(reference.items())
    # Business Central's several tables went in one request, none on its own.
    bc_tables = sorted(k[1] for k in reference if k[0] == "bc")
    assert len(bc_tables) > 1 and [sorted(b) for b in batches] == [bc_tables], batches
    seen.clear()
    batches.clear()
    sync_mapping(ctx, customer, mode="full", run_id="second")  # a new run reads them again
    again = {k: n for k, n in seen.items() if k[1] not in ("customers", "accounts")}
    assert again == reference
    assert [sorted(b) for b in batches] == [bc_tables]
    assert ctx.reference_tables is None


def _requests(client: Any) -> list[tuple[str, str]]:
    """Record every (method, URL) ``client`` sends."""
    sent: list[tuple[str, str]] = []
    original = client.http.request

    def request(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        sent.append((method, url))
        return original(method, url, *args, **kwargs)

    client.http.request = request
    return sent


def test_a_business_central_pass_takes_its_signpost_from_its_reference_batch(ctx,
                                                                           mappings) -> None:
    """The signpost (BC's clock before the first read) comes from the $batch that reads the
    pass's reference tables and the first page of its records: no separate request for it.
    It is the batch's Date header less the request's round trip, so the watermark logic
    still sees a clock taken before the page was read (tests/engine/test_first_request.py).
    """
    ctx.mappings = mappings
    bc = ctx.business_central.client
    sent = _requests(bc)
    reports = sync_mapping(ctx, mappings["CUSTOMER"], mode="full", run_id="signpost")
    assert all(r.failed == 0 for r in reports), [r.records for r in reports]
    assert sent[0][0] == "POST" and sent[0][1].endswith("/$batch"), sent[:3]
    # The old signpost, a GET of the company itself, is gone.
    assert not [s for s in sent if s == ("GET", bc.company_url)], sent
    # The pass's job row has a signpost before its first read of the records.
    job = ctx.state.job(reports[0].job_id)
    assert job is not None and job["signpost"] is not None


def test_a_dataverse_pass_asks_whoami_and_its_tables_in_one_batch(ctx, mappings) -> None:
    """A pass whose source is Dataverse sends WhoAmI (its signpost and the app user) and the
    Dataverse reference tables it needs (transaction currencies for the CUSTOMER mapping) in
    one $batch (Learn: execute-batch-operations-using-web-api: GET requests in a batch go
    outside change sets), then reads the records."""
    from bcdv.engine.runner import run_pass
    from bcdv.mapping.model import Direction

    ctx.mappings = mappings
    dv = ctx.dataverse.client
    sent = _requests(dv)
    seen, _ = _count_lists(ctx)
    report = run_pass(ctx, mappings["CUSTOMER"], Direction.TO_BUSINESS_CENTRAL, mode="full",
                      run_id="dv-signpost")
    assert report.failed == 0, report.records
    assert sent[0][0] == "POST" and sent[0][1].endswith("/$batch"), sent[:3]
    assert not [s for s in sent if s[1].endswith("/WhoAmI")], sent
    assert seen[("dv", "transactioncurrencies")] == 1, seen
    assert ctx.dataverse.user_id  # WhoAmI's answer was read from the batch


def test_the_plan_stage_uses_the_tables_extract_read(ctx, mappings) -> None:
    """On Airflow extract and plan are separate tasks: extract stages the tables it read with
    the signpost in the pass directory, and plan reads them from there, not the service."""
    from bcdv.engine.extract import REFERENCES_FILE, extract
    from bcdv.engine.plan import plan
    from bcdv.mapping.model import Direction

    ctx.mappings = mappings
    customer = mappings["CUSTOMER"]
    state = extract(ctx, customer, Direction.TO_DATAVERSE, mode="full", run_id="staged")
    assert state.extracted > 0 and (state.path / REFERENCES_FILE).exists()
    seen, batches = _count_lists(ctx)
    plan(ctx, customer, state)
    assert batches == [] and not [k for k in seen if k[0] == "bc"], seen
    assert sum(state.planned.values()) == state.extracted
