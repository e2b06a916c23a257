"""Contacts of a company that is a vendor: their parent is the account coupled to the vendor.

Business Central sets a contact's ParentCustomerId to the account coupled to its company's
customer *or vendor* (its CDS subscribers; /work/shared/reference/bc-integration-engine.md
§3.4, which is why CONTACT's dependency filter is CUSTOMER|VENDOR and Microsoft Learn lists
the job order "CURRENCY, VENDOR, CONTACT, CUSTOMER, SALESPEOPLE":
https://learn.microsoft.com/dynamics365/business-central/admin-scheduled-synchronization-using-the-synchronization-job-queue-entries).
bcdv's CONTACT lookup goes through CUSTOMER, then VENDOR (``lookup.also``). On the demo data,
Tom Wilson works for Fabrikam, Inc., a vendor in Business Central and a Vendor account in
Dataverse: before, his contact failed on both sides ("must be coupled ... (mapping
CUSTOMER)"); a full sync of every mapping on the demo data now ends with no failure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bcdv.engine import SyncContext, sync_mapping
from bcdv.mapping import load_mappings
from bcdv.service.runs import in_dependency_order
from bcdv.settings import endpoints_from_dict

ROOT = Path(__file__).resolve().parents[2]
ADMIN_OBJECT_ID = "0d5a7c3e-9b1f-4e2d-8c6a-5f4e3d2c1b0a"  # the emulated org's admin


def _pair(ctx: Any, mapping: str, bc_id: str) -> str:
    frame = ctx.state.couplings(mapping)
    return str(frame.loc[frame["bc_id"] == bc_id, "dv_id"].iat[0])


def test_vendor_contacts_couple_to_the_vendors_account(tmp_path: Path) -> None:
    from bcdv_emulators.testing import run_emulators

    mappings = load_mappings(ROOT / "include" / "mappings")
    with run_emulators(tmp_path / "emulators", seed="demo") as endpoints:
        ctx = SyncContext.create(endpoints_from_dict(endpoints),
                                 f"sqlite:///{tmp_path / 'state.db'}", tmp_path / "staging",
                                 mappings)
        try:
            _check(ctx, mappings)
        finally:
            ctx.close()


def _check(ctx: Any, mappings: dict[str, Any]) -> None:
    bc, dv = ctx.business_central.client, ctx.dataverse.client
    # Every mapping, fully, dependencies first (make demo's first run): no record fails.
    reports = [r for m in in_dependency_order(mappings)
               for r in sync_mapping(ctx, m, mode="full", run_id="demo__full")]
    failed = [(r.mapping, rec.name, rec.message) for r in reports for rec in r.records
              if rec.result in ("failed", "skipped")]
    assert failed == []
    assert sum(r.failed for r in reports) == 0

    # Tom Wilson's parent in Dataverse is the account coupled to vendor Fabrikam, Inc.
    (vendor,) = bc.list("vendors", filter="displayName eq 'Fabrikam, Inc.'")
    fabrikam = _pair(ctx, "VENDOR", vendor["id"])
    (tom,) = bc.list("contacts", filter="displayName eq 'Tom Wilson'")
    contact = dv.get("contacts", _pair(ctx, "CONTACT", tom["id"]))
    assert contact["_parentcustomerid_value"] == fabrikam
    assert contact["fullname"] == "Tom Wilson"

    # A person adds a contact under Fabrikam's account in Dataverse: it arrives in Business
    # Central under Fabrikam's company contact (the reverse of the same lookup).
    resp = dv.http.request("POST", dv.url("contacts"), json={
        "firstname": "Ada", "lastname": "Park", "emailaddress1": "ada.park@fabrikam.example.com",
        "parentcustomerid_account@odata.bind": f"/accounts({fabrikam})"}, headers={
        "Content-Type": "application/json", "CallerObjectId": ADMIN_OBJECT_ID})
    resp.raise_for_status()
    again = sync_mapping(ctx, mappings["CONTACT"], mode="full", run_id="demo__contact")
    assert sum(r.failed for r in again) == 0
    (ada,) = bc.list("contacts", filter="displayName eq 'Ada Park'")
    assert ada["companyNumber"] == tom["companyNumber"] != ""
    (company,) = bc.list("contacts", filter=f"number eq '{tom['companyNumber']}'")
    assert company["displayName"] == "Fabrikam, Inc."
    lookup = mappings["CONTACT"].fields[-1].lookup
    assert lookup.mapping == "CUSTOMER" and lookup.mappings == ["CUSTOMER", "VENDOR"]
