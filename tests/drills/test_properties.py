"""Property-based drill (Hypothesis, stateful): random creates, edits and deletes on both
sides, synced with and without random faults, keep the invariants after every clean sync:

- every coupled pair agrees on every bidirectional field, or the pair is reported (an open
  error row: a conflict);
- a second sync with no new edits plans nothing;
- no record is coupled twice, and no record exists twice;
- no change is lost: each side holds the latest value written to either side (a field
  changed on both sides since the last sync is a conflict, then only reported).
"""

from __future__ import annotations

import itertools
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from .conftest import SEED
from .harness import DrillEnv, Model, drill_mapping, fault_doc

FIELDS = sorted(Model.FIELDS)
VALUES = st.sampled_from(["Redmond", "Seattle", "Bellevue", "Tacoma", "Oslo", "Lyon"])
FAULT_RATE = 0.25  # higher than the fault drill: few requests per example
PHONES = st.integers(0, 9999).map(lambda n: f"+1 425 555 {n:04d}")


class SyncMachine(RuleBasedStateMachine):
    """Both systems as a model: name -> wanted values; the real ones must follow it."""

    env: DrillEnv  # set by the test (emulators are started once per test, reset per example)
    figures: dict[str, int]

    def __init__(self) -> None:
        super().__init__()
        env = self.env
        for svc in ("bc", "dv", "id"):
            env.admin(svc, "POST", "reset", {"seed": "empty"})
        self.run = next(_runs)
        env.state_url = f"sqlite:///{env.staging.parent / f'state-{self.run}.db'}"
        env.renew()
        self.mapping = drill_mapping()
        self.want: dict[str, dict[str, str]] = {}
        self.edited: dict[str, dict[str, set[str]]] = {}  # name -> side -> fields since sync
        self.deleted: set[str] = set()
        self.conflicted: set[str] = set()
        self.serial = 0
        self.figures["examples"] += 1

    # -- edits ----------------------------------------------------------------------------
    def _new(self, side: str, city: str, phone: str) -> None:
        self.serial += 1
        name = f"Prop {self.run}-{self.serial} {side}"
        if side == "bc":
            self.env.bc_new(name, city=city, phoneNumber=phone)
        else:
            self.env.dv_new(name, address1_city=city, telephone1=phone)
        self.want[name] = {"city": city, "phoneNumber": phone}
        self.figures["creates"] += 1

    @rule(city=VALUES, phone=PHONES)
    def create_in_business_central(self, city: str, phone: str) -> None:
        self._new("bc", city, phone)

    @rule(city=VALUES, phone=PHONES)
    def create_in_dataverse(self, city: str, phone: str) -> None:
        self._new("dv", city, phone)

    def _live(self, side: str) -> list[tuple[str, dict[str, Any]]]:
        rows = self.env.by_name(side)
        return [(n, rows[n][0]) for n in sorted(self.want)
                if n in rows and n not in self.deleted]

    @precondition(lambda self: bool(self.want))
    @rule(data=st.data(), side=st.sampled_from(["bc", "dv"]), field=st.sampled_from(FIELDS))
    def edit(self, data: st.DataObject, side: str, field: str) -> None:
        live = self._live(side)
        if not live:
            return
        name, row = data.draw(st.sampled_from(live))
        value = data.draw(VALUES if field == "city" else PHONES)
        if side == "bc":
            self.env.bc_edit(row["id"], **{field: value})
        else:
            self.env.dv_edit(row["accountid"], **{Model.FIELDS[field]: value})
        sides = self.edited.setdefault(name, {"bc": set(), "dv": set()})
        sides[side].add(field)
        if field in sides["bc"] & sides["dv"]:
            self.conflicted.add(name)  # the same field on both sides: a conflict to report
        self.want[name][field] = value
        self.figures["edits"] += 1

    @precondition(lambda self: bool(self.want))
    @rule(data=st.data(), side=st.sampled_from(["bc", "dv"]))
    def delete(self, data: st.DataObject, side: str) -> None:
        live = self._live(side)
        if not live:
            return
        name, row = data.draw(st.sampled_from(live))
        if side == "bc":
            self.env.bc.delete("customers", row["id"], etag=row.get("@odata.etag", "*"))
        else:
            self.env.dv.delete("accounts", row["accountid"])
        self.deleted.add(name)
        self.figures["deletes"] += 1

    # -- syncs ----------------------------------------------------------------------------
    @rule(seed=st.integers(0, 10_000), full=st.booleans())
    def sync_with_faults(self, seed: int, full: bool) -> None:
        """A run while a quarter of requests fail: it may fail, nothing may be lost."""
        self.env.tick()
        self.env.faults(fault_doc(FAULT_RATE, seed))
        try:
            self.env.sync(self.mapping, mode="full" if full else "modified")
        except Exception:
            self.figures["failed_runs"] += 1
        finally:
            counts = self.env.injected()
            self.figures["injected"] += sum(v for c in counts.values()
                                            for k, v in c.items() if ":" not in k)
            for svc in ("bc", "dv", "id"):
                self.env.admin(svc, "DELETE", "faults/injected")
            self.env.faults(None)
        self.figures["runs"] += 1

    @rule(full=st.booleans())
    def sync_and_check(self, full: bool) -> None:
        """A clean run (then a second one), and every invariant."""
        self.env.tick()
        self.env.sync(self.mapping, mode="full" if full else "modified")
        self.env.tick()
        again = self.env.sync(self.mapping, mode="modified")
        self.figures["runs"] += 2
        self.check(again)
        self.edited.clear()

    def check(self, again: dict[str, Any]) -> None:
        env = self.env
        bc, dv = env.by_name("bc"), env.by_name("dv")
        couplings = env.state.couplings(self.mapping.name)
        assert not couplings["bc_id"].dropna().duplicated().any(), "a BC record coupled twice"
        assert not couplings["dv_id"].dropna().duplicated().any(), "an account coupled twice"
        for name in self.want:
            assert len(bc.get(name, [])) <= 1 and len(dv.get(name, [])) <= 1, (
                f"{name} duplicated: {len(bc.get(name, []))} in BC, {len(dv.get(name, []))}"
                " in Dataverse")
        errors = env.state.errors(self.mapping.name)
        reported = {e.get("bc_id") for e in errors} | {e.get("dv_id") for e in errors}
        for name, want in self.want.items():
            if name in self.deleted:
                continue
            b, d = bc.get(name, [None])[0], dv.get(name, [None])[0]
            assert b is not None and d is not None, f"{name} missing on a side"
            agree = all(b.get(f) == d.get(Model.FIELDS[f]) for f in FIELDS)
            if name in self.conflicted:
                assert agree or {b["id"], d["accountid"]} & reported, (
                    f"{name}: sides disagree and no conflict is reported")
                continue
            for field, value in want.items():
                assert b.get(field) == value, f"{name}.{field} lost in BC: {b.get(field)}"
                assert d.get(Model.FIELDS[field]) == value, (
                    f"{name}.{field} lost in Dataverse: {d.get(Model.FIELDS[field])}")
        # A pass over a deletion or a conflict may fail again; nothing else may be planned.
        for direction, report in again.items():
            assert report.inserted == 0 and report.modified == 0, (
                f"second sync planned writes in {direction}: {report.records}")
        self.figures["checks"] += 1

    @invariant()
    def nothing_exists_twice(self) -> None:
        for side in ("bc", "dv"):
            twice = [n for n, rows in self.env.by_name(side).items() if len(rows) > 1]
            assert not twice, f"duplicated in {side}: {twice}"


_runs = itertools.count(1)


def _run(drill: DrillEnv, examples: int, steps: int) -> None:
    SyncMachine.env = drill
    SyncMachine.figures = dict.fromkeys(["examples", "runs", "failed_runs", "injected",
                                         "creates", "edits", "deletes", "checks"], 0)
    test = SyncMachine.TestCase
    test.settings = settings(max_examples=examples, stateful_step_count=steps, deadline=None,
                             derandomize=True, database=None,
                             suppress_health_check=list(HealthCheck))
    try:
        test("runTest").runTest()
    finally:
        print(f"\nPROPERTIES seed={SEED} {SyncMachine.figures}")


def test_random_edits_and_faults_keep_the_sync_invariants(drill: DrillEnv) -> None:
    _run(drill, examples=int(os.environ.get("BCDV_PROPERTY_EXAMPLES", "5")), steps=10)


@pytest.mark.soak
def test_random_edits_and_faults_keep_the_sync_invariants_soak(drill: DrillEnv) -> None:
    _run(drill, examples=40, steps=20)



