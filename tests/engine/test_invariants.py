"""Randomised invariants of two-way sync (seeded, reproducible): whatever both sides do
between runs, a run leaves every coupled pair equal in its bidirectional fields, and the
run after it writes nothing (no echo, no ping-pong)."""

from __future__ import annotations

import random

import pytest

from bcdv.engine.values import canon

from .conftest import make_mapping

PAIRS = [("phoneNumber", "telephone1"), ("city", "address1_city"),
         ("state", "address1_stateorprovince")]


def _equal(env, mapping, bc_id: str) -> list[str]:
    dv_id = env.coupling(mapping, bc_id=bc_id)["dv_id"]
    bc, dv = env.bc_get(bc_id), env.dv_get(dv_id)
    return [b for b, d in PAIRS if canon(bc[b]) != canon(dv[d])]


@pytest.mark.parametrize(("policy", "seed"), [("business_central_wins", 7),
                                              ("dataverse_wins", 11), ("merge", 23)])
def test_random_edits_converge_and_then_stay_quiet(env, policy: str, seed: int) -> None:
    rng = random.Random(seed)
    mapping = make_mapping(conflicts={"update": policy})
    pairs = [env.coupled_pair(mapping, name=f"Inv {i}", phoneNumber=f"{i}", city="C", state="S")
             for i in range(4)]
    env.sync(mapping)
    for round_no in range(3):
        for bc_id, dv_id in pairs:
            side = rng.choice(["bc", "dv", "both", "none"])
            b_field, d_field = rng.choice(PAIRS)
            value = f"r{round_no}-{rng.randint(0, 99)}"
            if side in ("bc", "both"):
                env.bc_edit(bc_id, **{b_field: value})
            if side in ("dv", "both"):
                # merge: different fields on each side (the same field on both is a real
                # conflict, tested elsewhere); the wins policies: the same field
                other = (rng.choice([d for b, d in PAIRS if b != b_field])
                         if policy == "merge" else d_field)
                env.dv_edit(dv_id, **{other: value + "dv"})
        reports = env.sync(mapping)
        assert all(r.failed == 0 for r in reports.values()), reports
        for bc_id, _ in pairs:
            assert _equal(env, mapping, bc_id) == [], (round_no, bc_id)
        quiet = env.sync(mapping)
        assert all(r.inserted == r.modified == r.failed == 0 for r in quiet.values()), quiet
