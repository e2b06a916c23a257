"""Issue 11 regression: a dry run predicts the real run's actions and counters exactly, for
every mode, including the pass back of a bidirectional full synchronisation (which must see
what the forced first pass would write)."""
from __future__ import annotations

import pytest

from .conftest import make_mapping


def _counters(reports) -> dict[str, tuple[int, ...]]:
    return {d: (r.inserted, r.modified, r.unchanged, r.failed, r.skipped)
            for d, r in reports.items()}


def _actions(env, reports) -> dict[str, list[tuple[str, str]]]:
    """Per pass, (record name, planned action) of every record (from the staged plans)."""
    from bcdv.engine.actions import read_plan

    out = {}
    for direction, rep in reports.items():
        plans = list((env.ctx.staging).rglob(f"*/{direction}/plan.jsonl"))
        mine = [p for p in plans if rep.job_id in (p.parent / "meta.json").read_text()]
        out[direction] = sorted((a.name or "", a.kind) for p in mine for a in read_plan(p))
    return out


def _messy(env, mapping) -> None:
    """Data nobody designed for the happy path: matches with different values, records on
    one side only, a person's edit since the last sync. (A value the service refuses is
    planned as a write and fails only when sent: a dry run cannot know the service's
    validation, and says so in its reasons.)"""
    _, dv_id = env.coupled_pair(mapping, name="Synced Before", phoneNumber="1")
    env.tick()
    env.dv_edit(dv_id, telephone1="person edit")
    env.bc_new("Match Me", phoneNumber="555", city="BC City")
    env.dv_new("MATCH ME", telephone1="555", address1_city="DV City")
    env.bc_new("Only In BC", city="Oslo")
    env.dv_new("Only In Dataverse", telephone1="777")


@pytest.mark.parametrize("update", ["none", "merge", "dataverse_wins"])
def test_dry_run_predicts_a_bidirectional_full_sync_exactly(env, update) -> None:
    mapping = make_mapping(sync_only_coupled=False, conflicts={"update": update},
                           coupling={"match": [{"fields": ["displayName", "phoneNumber"]}]})
    _messy(env, mapping)
    dry = env.sync(mapping, mode="full", dry_run=True)
    real = env.sync(mapping, mode="full")
    assert _actions(env, dry) == _actions(env, real)
    assert _counters(dry) == _counters(real)
    assert real["to_business_central"].unchanged > 0  # what the first pass created/updated


def test_dry_run_predicts_an_incremental_bidirectional_run_exactly(env) -> None:
    mapping = make_mapping(sync_only_coupled=False, conflicts={"update": "merge"},
                           coupling={"match": [{"fields": ["displayName", "phoneNumber"]}]})
    _messy(env, mapping)
    env.sync(mapping, mode="full")
    env.tick()
    env.bc_new("New In BC")
    env.dv_new("New In Dataverse")
    dry = env.sync(mapping, dry_run=True)
    real = env.sync(mapping)
    assert _counters(dry) == _counters(real)
    assert _actions(env, dry) == _actions(env, real)
