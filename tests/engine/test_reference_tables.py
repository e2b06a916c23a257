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
    (``list``) or in a batch (``list_batched``, whose entity sets are also listed per call)."""
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
    bc = ctx.business_central.client
    batched = bc.list_batched

    def counted_batch(reads: Any) -> Any:
        batches.append([entity_set for entity_set, _ in reads])
        seen.update(("bc", entity_set) for entity_set, _ in reads)
        return batched(reads)

    bc.list_batched = counted_batch
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
