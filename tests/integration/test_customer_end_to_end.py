"""CUSTOMER end to end against the emulators: a BC customer becomes a Dataverse account."""

from __future__ import annotations

from typing import Any

from bcdv.engine import sync_mapping
from bcdv.mapping import Direction

FIELD_PAIRS = [("displayName", "name"), ("addressLine1", "address1_line1"),
               ("city", "address1_city"), ("postalCode", "address1_postalcode"),
               ("country", "address1_country"), ("email", "emailaddress1"),
               ("phoneNumber", "telephone1"), ("website", "websiteurl"),
               ("creditLimit", "creditlimit")]


def _blank(v: Any) -> Any:
    return None if v in ("", None) else v


def _by_pass(reports: list[Any]) -> dict[str, Any]:
    return {r.direction: r for r in reports}


def test_new_customer_becomes_account_and_second_run_changes_nothing(ctx, mappings) -> None:
    mapping = mappings["CUSTOMER"]
    bc = ctx.business_central.client
    dv = ctx.dataverse.client
    created = bc.create("customers", {
        "displayName": "Northwind Traders", "addressLine1": "1 Harbour Road",
        "city": "Seattle", "postalCode": "98101", "country": "US",
        "email": "orders@northwind.example", "phoneNumber": "+1 206 555 0100",
        "website": "www.northwind.example", "creditLimit": 25000})

    first = _by_pass(sync_mapping(ctx, mapping, mode="full"))
    assert first["to_dataverse"].failed == 0
    assert first["to_dataverse"].inserted >= 1

    coupling = ctx.state.couplings("CUSTOMER", bc_ids=[created["id"]])
    assert len(coupling) == 1 and not coupling.at[0, "pending"]
    account = dv.get("accounts", coupling.at[0, "dv_id"])
    assert account is not None
    for bc_field, dv_field in FIELD_PAIRS:
        assert _blank(account[dv_field]) == _blank(created[bc_field]), dv_field

    failed_first = {r.source_id for rep in first.values() for r in rep.records
                    if r.result == "failed"}
    second = sync_mapping(ctx, mapping)
    for report in second:
        assert (report.inserted, report.modified) == (0, 0)
        # Only records that failed the first time fail again (the demo data has a few that
        # cannot be transferred); the same error twice makes them Skipped, as in BC.
        again = {r.source_id for r in report.records if r.result in ("failed", "skipped")}
        assert again <= failed_first
    # Nothing was written: the account is exactly as the first run left it.
    again = dv.get("accounts", coupling.at[0, "dv_id"])
    assert again["@odata.etag"] == account["@odata.etag"]


def test_changed_customer_updates_only_its_account(ctx, mappings) -> None:
    mapping = mappings["CUSTOMER"]
    bc = ctx.business_central.client
    dv = ctx.dataverse.client
    sync_mapping(ctx, mapping, mode="full")
    customers = bc.list("customers", filter="blocked eq ' '")
    target = customers[0]
    bc.update("customers", target["id"], {"phoneNumber": "+1 425 555 0199"},
              etag=target["@odata.etag"])

    reports = _by_pass(sync_mapping(ctx, mapping))
    to_dv = reports["to_dataverse"]
    assert (to_dv.inserted, to_dv.modified, to_dv.failed) == (0, 1, 0)
    dv_id = ctx.state.couplings("CUSTOMER", bc_ids=[target["id"]]).at[0, "dv_id"]
    assert dv.get("accounts", dv_id)["telephone1"] == "+1 425 555 0199"
    # The write to Dataverse does not echo back as a change to Business Central.
    assert reports["to_business_central"].modified == 0
    third = sync_mapping(ctx, mapping)
    assert all(r.inserted == r.modified == 0 for r in third)


def test_dry_run_writes_nothing(ctx, mappings) -> None:
    mapping = mappings["CUSTOMER"]
    before = len(ctx.dataverse.client.list("accounts"))
    dry = sync_mapping(ctx, mapping, mode="full", dry_run=True)
    assert dry[0].inserted > 0 and dry[0].modified > 0  # creates, and matched pairs updated
    assert len(ctx.dataverse.client.list("accounts")) == before
    assert ctx.state.coupling_count("CUSTOMER") == 0
    real = sync_mapping(ctx, mapping, mode="full", run_id="real")
    assert real[0].direction == Direction.TO_DATAVERSE.value
    # The dry run's plan for the first pass is exactly what the real run then did.
    planned = {(r.source_id, r.action) for r in dry[0].records} | {
        ("counts", dry[0].inserted, dry[0].modified, dry[0].unchanged)}
    done = {(r.source_id, r.action) for r in real[0].records} | {
        ("counts", real[0].inserted, real[0].modified, real[0].unchanged)}
    assert planned == done
