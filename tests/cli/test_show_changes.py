"""Issue 13 (must show): ``bcdv sync NAME --dry-run --show-changes`` lists per record the
action, the name, the ids and, for updates, each field ``old -> new``, and the real run that
follows does exactly that (same records, actions and diffs), listed by ``--show-changes``.
"""

from __future__ import annotations

import json
import time
from typing import Any

from tests.engine.conftest import ADMIN_OBJECT_ID

from .demo_env import Demo


def _edit(demo: Demo) -> dict[str, str]:
    """After a full sync: two customers edited in Business Central, one account edited in
    Dataverse by a person. Returns the edited records' names."""
    from bcdv.engine import SyncContext
    from bcdv.settings import endpoints_from_dict

    ctx = SyncContext.create(endpoints_from_dict(demo.endpoints), demo.state_url,
                             demo.root / "staging")
    try:
        couplings = ctx.state.couplings("CUSTOMER")
        done = couplings[couplings["to_dv_result"] == "success"].sort_values("bc_id")
        assert len(done) >= 3, couplings
        bc, dv = ctx.business_central.client, ctx.dataverse.client
        names = {}
        for (_, pair), phone in zip(done.head(2).iterrows(), ("+1 425 555 0199", "+1 425 555 "
                                                              "0188"), strict=True):
            row = bc.get("customers", pair["bc_id"])
            bc.update("customers", pair["bc_id"], {"phoneNumber": phone},
                      etag=row["@odata.etag"])
            names[str(pair["bc_id"])] = row["displayName"]
        time.sleep(1.05)  # Dataverse stamps whole seconds
        third = done.iloc[2]
        dv.http.request("PATCH", dv.url("accounts", third["dv_id"]),
                        json={"address1_city": "Tacoma"},
                        headers={"Content-Type": "application/json", "If-Match": "*",
                                 "CallerObjectId": ADMIN_OBJECT_ID}).raise_for_status()
        names[str(third["dv_id"])] = dv.get("accounts", third["dv_id"])["name"]
        return names
    finally:
        ctx.close()


def _key(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """What must agree between the preview and the run: per record the action, the name,
    the source id, the counterpart of an update and the diff (a create's new id is chosen
    when it is made, so it is not compared)."""
    return sorted((r["direction"], r["action"], r["name"], r["source_id"],
                   r["target_id"] if r["action"] == "update" else None,
                   json.dumps(r["changes"], sort_keys=True)) for r in rows)


def _shown(value: Any) -> str:
    return "(empty)" if value in (None, "") else repr(value)


def _changes(reports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [row for report in reports for row in report["changes"]]


def test_show_changes_preview_matches_the_real_run(fresh: Demo, bcdv: Any) -> None:
    code, _, err = bcdv(fresh, "sync", "customer", "--full")
    assert code in (0, 3), err
    edited = _edit(fresh)

    code, text, _ = bcdv(fresh, "sync", "customer", "--dry-run", "--show-changes")
    assert code == 0
    code, out, _ = bcdv(fresh, "sync", "customer", "--dry-run", "--show-changes", "--json")
    assert code == 0
    preview = _changes(json.loads(out))
    updates = [r for r in preview if r["action"] == "update"]
    assert {r["source_id"] for r in updates} >= set(edited), preview
    for row in updates:
        assert row["changes"], row
        assert row["name"] == edited.get(row["source_id"], row["name"])
        assert f"update             {row['name']}  [bc {row['bc_id']}  dv {row['dv_id']}]" in text
        for field, (old, new) in row["changes"].items():
            assert f"      {field}: {_shown(old)} -> {_shown(new)}" in text
    phones = {r["changes"]["telephone1"][1] for r in updates if "telephone1" in r["changes"]}
    assert phones == {"+1 425 555 0199", "+1 425 555 0188"}
    assert any(r["changes"].get("city", [None, None])[1] == "Tacoma" for r in updates)

    code, out, _ = bcdv(fresh, "sync", "customer", "--show-changes", "--json")
    assert code in (0, 3)
    done = _changes(json.loads(out))
    assert _key(done) == _key(preview)
    assert all(r["result"] == "modified" for r in done if r["action"] == "update")

    # Once run, the next preview has nothing left to update.
    code, out, _ = bcdv(fresh, "sync", "customer", "--dry-run", "--show-changes", "--json")
    assert code == 0
    assert [r for r in _changes(json.loads(out)) if r["action"] == "update"] == []
