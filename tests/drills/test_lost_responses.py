"""A write the service applied but whose answer never came back (the connection dropped after
the commit): the next run must neither lose nor duplicate the record, on either side."""

from __future__ import annotations

import contextlib

import pytest

from .harness import DrillEnv, drill_mapping

KINDS = {"bc": ["batch", "create", "update"], "dv": ["batch", "bulk", "create", "update"]}


def _counts(drill: DrillEnv, names: list[str]) -> dict[str, tuple[int, int]]:
    bc, dv = drill.by_name("bc"), drill.by_name("dv")
    return {n: (len(bc.get(n, [])), len(dv.get(n, []))) for n in names}


@pytest.mark.parametrize("target, twins", [
    pytest.param("bc", False, id="bc-creates"),
    pytest.param("bc", True, id="bc-creates-identical-twins"),
    pytest.param("dv", False, id="dv-creates"),
    pytest.param("dv", True, id="dv-creates-identical-twins"),
])
def test_lost_create_responses_make_no_duplicate(drill: DrillEnv, target: str,
                                                 twins: bool) -> None:
    """Every create batch of the pass loses its answer once; the rerun converges 1:1."""
    mapping = drill_mapping()
    names = ["Twin Ltd"] * 2 if twins else [f"Lost Create {i}" for i in range(4)]
    for name in names:  # made on the other side, so the pass creates them on ``target``
        if target == "bc":
            drill.dv_new(name, telephone1="+1 425 555 0100")
        else:
            drill.bc_new(name, phoneNumber="+1 425 555 0100")
    drill.tick()
    drill.admin(target, "PUT", "faults", {"lost_response_count": 3,
                                          "lost_kinds": KINDS[target]})
    with contextlib.suppress(Exception):
        drill.sync(mapping, run_id="lost__1")
    lost = drill.injected()[target]["lost_response"]
    drill.admin(target, "DELETE", "faults")
    drill.tick()
    drill.sync(mapping, run_id="lost__2")
    drill.sync(mapping, run_id="lost__3")
    counts = _counts(drill, sorted(set(names)))
    per_name = 2 if twins else 1
    print(f"\nLOST CREATES target={target} twins={twins} lost_responses={lost} "
          f"records={len(names)} copies={counts}")
    assert lost >= 1
    assert counts == dict.fromkeys(set(names), (per_name, per_name))
    assert len(drill.state.couplings(mapping.name)) == len(names)


@pytest.mark.parametrize("target", ["bc", "dv"])
def test_lost_update_responses_lose_no_change(drill: DrillEnv, target: str) -> None:
    mapping = drill_mapping()
    names = [f"Lost Update {i}" for i in range(3)]
    for name in names:
        drill.bc_new(name, city="Before")
    drill.tick()
    drill.sync(mapping, run_id="lost__setup")
    source = "dv" if target == "bc" else "bc"
    for name in names:
        row = drill.by_name(source)[name][0]
        if source == "bc":
            drill.bc_edit(row["id"], city="After")
        else:
            drill.dv_edit(row["accountid"], address1_city="After")
    drill.tick()
    drill.admin(target, "PUT", "faults", {"lost_response_count": 2,
                                          "lost_kinds": KINDS[target]})
    with contextlib.suppress(Exception):
        drill.sync(mapping, run_id="lost__1")
    lost = drill.injected()[target]["lost_response"]
    drill.admin(target, "DELETE", "faults")
    drill.tick()
    drill.sync(mapping, run_id="lost__2")
    bc, dv = drill.by_name("bc"), drill.by_name("dv")
    print(f"\nLOST UPDATES target={target} lost_responses={lost} records={len(names)}")
    assert lost >= 1
    for name in names:
        assert [r["city"] for r in bc[name]] == ["After"]
        assert [r["address1_city"] for r in dv[name]] == ["After"]
    # and nothing left to do
    again = drill.sync(mapping, run_id="lost__3")
    assert all(r.inserted == r.modified == r.failed == 0 for r in again.values())
