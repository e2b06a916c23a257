"""Latency profiles, request statistics and scaled service protection limits (for benchmarks).

No timed assertions: the delay a request was given is read back from the server (the
``x-bcdv-emulator-delay-ms`` header and ``GET /_emulator/stats``), and overlap is the
server's own count of requests waiting at once.

Limits and 429 shapes follow Learn:
https://learn.microsoft.com/power-apps/developer/data-platform/api-limits (Dataverse: 429,
Retry-After in seconds, codes 0x80072322/0x80072321/0x80072326) and
https://learn.microsoft.com/dynamics365/business-central/dev-itpro/api-reference/v2.0/dynamics-rate-limits
(Business Central: 429 Application_TooManyRequests; 6,000 requests per 5 minutes).
"""
from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
import requests

from bcdv_emulators.perf import PRESETS, Latency, parse_latency, parse_throttle
from bcdv_emulators.testing import run_emulators

from .conftest import Api, admin, get_token

T = "Microsoft.Dynamics.CRM.account"


@pytest.fixture
def no_latency(ep: dict[str, Any]) -> Iterator[None]:
    """Latency off and statistics cleared before and after a test (shared emulators)."""
    for svc in ("business_central", "dataverse"):
        admin(ep, svc, "DELETE", "latency")
        admin(ep, svc, "DELETE", "stats")
    yield
    for svc in ("business_central", "dataverse"):
        admin(ep, svc, "DELETE", "latency")
        admin(ep, svc, "PUT", "throttling", {"scale": 1})


def stats(ep: dict[str, Any], service: str) -> dict[str, Any]:
    """GET /_emulator/stats of one service."""
    r = admin(ep, service, "GET", "stats")
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_parse_latency_presets_and_pairs() -> None:
    assert parse_latency("none", "dataverse") == Latency()
    assert parse_latency("cloud", "dataverse") == PRESETS["cloud"]["dataverse"]
    assert parse_latency("cloud", "business_central").rtt_ms > 0
    assert parse_latency("rtt_ms=80,row_ms=4,read_row_ms=0.5", "dataverse") == Latency(80, 0.5, 4)
    assert parse_latency({"preset": "cloud", "rtt_ms": 5}, "dataverse").write_row_ms == \
        PRESETS["cloud"]["dataverse"].write_row_ms
    for bad in ("fast", "rtt_ms=-1", "speed=3"):
        with pytest.raises(ValueError):
            parse_latency(bad, "dataverse")
    assert parse_throttle("requests=60,window_seconds=2.5") == {"requests": 60,
                                                                 "window_seconds": 2.5}


def test_delay_per_request_and_per_row_is_served_and_reported(
        ep: dict[str, Any], dv: Api, no_latency: None) -> None:
    doc = {"rtt_ms": 20, "read_row_ms": 1, "write_row_ms": 3}
    assert admin(ep, "dataverse", "PUT", "latency", doc).json() == doc
    page = dv.get("accounts?$select=name", headers={"Prefer": "odata.maxpagesize=4"})
    assert page.status_code == 200
    rows = len(page.json()["value"])
    assert rows == 4
    assert float(page.headers["x-bcdv-emulator-delay-ms"]) == pytest.approx(20 + rows * 1)
    bulk = dv.post("accounts/Microsoft.Dynamics.CRM.CreateMultiple", json={"Targets": [
        {"@odata.type": T, "name": f"Latency {i}"} for i in range(5)]})
    assert bulk.status_code == 200, bulk.text
    assert float(bulk.headers["x-bcdv-emulator-delay-ms"]) == pytest.approx(20 + 5 * 3)
    s = stats(ep, "dataverse")
    assert s["delay_ms"] == {"rtt": pytest.approx(40), "rows": pytest.approx(4 + 15)}
    # The time the service protection window counted: the delay is served inside it.
    assert s["by_kind"]["get_page"]["served_ms"] >= 20 + rows
    assert s["by_kind"]["CreateMultiple"]["served_ms"] >= 20 + 5 * 3
    admin(ep, "dataverse", "DELETE", "latency")
    plain = dv.get("WhoAmI")
    assert "x-bcdv-emulator-delay-ms" not in plain.headers


def test_cloud_preset_and_limits_from_start_options(tmp_path: Path) -> None:
    with run_emulators(tmp_path / "emu", seed="empty", latency="cloud",
                       throttle_scale=0.01) as ep:
        for svc in ("business_central", "dataverse"):
            assert admin(ep, svc, "GET", "latency").json() == asdict(PRESETS["cloud"][svc])
            limits = admin(ep, svc, "GET", "throttling").json()
            assert limits["requests"] == 60 and limits["window_seconds"] == 300
            assert limits["enabled"] is True
        assert admin(ep, "dataverse", "GET", "throttling").json()["concurrent"] == 1
        assert admin(ep, "business_central", "GET", "throttling").json()["processing"] == 1
        # reset keeps the start options as the defaults
        admin(ep, "dataverse", "DELETE", "latency")
        admin(ep, "dataverse", "POST", "reset", {"seed": "empty"})
        assert admin(ep, "dataverse", "GET", "latency").json() == \
            asdict(PRESETS["cloud"]["dataverse"])


def test_slow_requests_overlap(ep: dict[str, Any], cust: Api, no_latency: None) -> None:
    """Two requests each waiting a 3 s round trip are in their wait at the same time: the
    wait neither blocks the server nor sits under its database lock."""
    clients = [Api(cust.base, cust.token, cust.ca) for _ in range(2)]
    for c in clients:  # connections (TLS handshakes) made before the clock matters
        assert c.get("customers?$top=1").status_code == 200
    admin(ep, "business_central", "PUT", "latency", {"rtt_ms": 3000})
    admin(ep, "business_central", "DELETE", "stats")
    barrier = threading.Barrier(2)
    statuses: list[int] = []

    def call(c: Api) -> None:
        barrier.wait()
        statuses.append(c.get("customers?$top=2").status_code)

    threads = [threading.Thread(target=call, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200, 200]
    s = stats(ep, "business_central")
    assert s["by_kind"]["get_page"]["requests"] == 2
    assert s["peak_in_flight"] == 2
    assert s["peak_delaying"] == 2


def test_stats_count_requests_by_kind(ep: dict[str, Any], cust: Api, dv: Api,
                                      no_latency: None) -> None:
    first = cust.get("customers", headers={"Prefer": "odata.maxpagesize=3"})
    assert first.status_code == 200
    one = first.json()["value"][0]
    assert cust.get(f"customers({one['id']})").status_code == 200
    created = cust.post("customers", json={"displayName": "Stats Customer"})
    assert created.status_code == 201, created.text
    new = created.json()
    assert cust.patch(f"customers({new['id']})", json={"phoneNumber": "555 0101"},
                      headers={"If-Match": new["@odata.etag"]}).status_code == 200
    root, company = cust.base.rsplit("/companies", 1)
    batch = {"requests": [
        {"id": str(i), "method": "POST", "url": f"companies{company}/customers",
         "headers": {"Content-Type": "application/json"},
         "body": {"displayName": f"Stats Batch {i}"}} for i in range(3)] + [
        {"id": "9", "method": "GET", "url": f"companies{company}/customers?$top=2"}]}
    r = requests.post(f"{root}/$batch", json=batch,
                      headers={"Authorization": f"Bearer {cust.token}",
                               "Content-Type": "application/json"}, verify=cust.ca,
                      timeout=60)
    assert r.status_code == 200, r.text
    assert [x["status"] for x in r.json()["responses"]] == [201, 201, 201, 200]
    s = stats(ep, "business_central")
    k = s["by_kind"]
    assert k["get_page"]["requests"] == 1 and k["get_page"]["rows_read"] == 3
    assert k["get"]["requests"] == 1
    assert {f: v for f, v in k["post"].items() if f != "served_ms"} == {
        "requests": 1, "rows_read": 0, "rows_written": 1, "ops": 0, "errors": 0,
        "throttled_429": 0}
    assert k["patch"]["requests"] == 1 and k["patch"]["rows_written"] == 1
    assert k["batch"]["requests"] == 1 and k["batch"]["ops"] == 4
    assert k["batch"]["rows_written"] == 3 and k["batch"]["rows_read"] == 2
    assert s["batch_ops"] == {"POST": 3, "GET": 1}
    assert s["requests"] == 5
    ids = dv.post("accounts/Microsoft.Dynamics.CRM.CreateMultiple", json={"Targets": [
        {"@odata.type": T, "name": f"Stats {i}"} for i in range(4)]}).json()["Ids"]
    r = dv.post("accounts/Microsoft.Dynamics.CRM.UpdateMultiple", json={"Targets": [
        {"@odata.type": T, "accountid": i, "telephone1": "555"} for i in ids[:3]]})
    assert r.status_code == 204
    d = stats(ep, "dataverse")["by_kind"]
    assert d["CreateMultiple"]["requests"] == 1 and d["CreateMultiple"]["rows_written"] == 4
    assert d["UpdateMultiple"]["rows_written"] == 3
    assert admin(ep, "dataverse", "DELETE", "stats").json()["requests"] == 0


def test_scaled_limits_answer_429_with_retry_after(ep: dict[str, Any], cust: Api, dv: Api,
                                                  no_latency: None) -> None:
    for svc in ("business_central", "dataverse"):
        limits = admin(ep, svc, "PUT", "throttling", {"scale": 0.001}).json()
        assert limits["requests"] == 6 and limits["enabled"] is True
    dv_answers = [dv.get("WhoAmI") for _ in range(7)]
    assert [r.status_code for r in dv_answers] == [200] * 6 + [429]
    last = dv_answers[-1]
    assert int(last.headers["Retry-After"]) >= 1
    assert last.json()["error"]["code"] == "0x80072322"
    assert "limit of 6 over time window of 300 seconds" in last.json()["error"]["message"]
    bc_answers = [cust.get("customers?$top=1") for _ in range(7)]
    assert [r.status_code for r in bc_answers] == [200] * 6 + [429]
    assert int(bc_answers[-1].headers["Retry-After"]) >= 1
    assert bc_answers[-1].json()["error"]["code"] == "Application_TooManyRequests"
    for svc in ("business_central", "dataverse"):
        s = stats(ep, svc)
        assert s["throttled_429"] == 1 and s["requests"] == 7
    explicit = admin(ep, "dataverse", "PUT", "throttling",
                     {"scale": 1, "requests": 100, "window_seconds": 2}).json()
    assert explicit["requests"] == 100 and explicit["window_seconds"] == 2
    assert explicit["concurrent"] == 52


def test_cli_stats_and_latency(ep: dict[str, Any], emu_dir: Path, no_latency: None) -> None:
    from bcdv_emulators.cli import admin as cli_admin
    from bcdv_emulators.cli import main
    assert main(["latency", str(emu_dir), "--service", "dv", "--set", "rtt_ms=7"]) == 0
    assert cli_admin(emu_dir, "dv", "GET", "latency")["dataverse"]["rtt_ms"] == 7
    assert main(["latency", str(emu_dir), "--off"]) == 0
    assert cli_admin(emu_dir, "all", "GET", "latency")["dataverse"]["rtt_ms"] == 0
    assert main(["stats", str(emu_dir), "--reset"]) == 0
    assert cli_admin(emu_dir, "bc", "GET", "stats")["business_central"]["requests"] == 0
    assert get_token(ep, ep["dataverse"]["scope"])
    assert cli_admin(emu_dir, "identity", "GET", "stats")["identity"]["by_kind"]["token"][
        "requests"] >= 1


def test_generate_fills_one_side_without_counting_requests(tmp_path: Path) -> None:
    """``POST /_emulator/generate``: bench data straight into the database, one side only."""
    with run_emulators(tmp_path / "emu", seed="empty") as ep:
        r = admin(ep, "business_central", "POST", "generate", {"entity": "customers",
                                                               "count": 7})
        assert r.json() == {"generated": 7, "entity": "customers"}
        assert admin(ep, "dataverse", "POST", "generate",
                     {"entity": "accounts", "count": 3, "start": 11}).status_code == 200
        assert admin(ep, "dataverse", "POST", "generate",
                     {"entity": "customers", "count": 1}).status_code == 400
        assert stats(ep, "business_central")["requests"] == 0
        bc = Api(f"{ep['business_central']['base_url']}/companies("
                 f"{ep['business_central']['company_id']})",
                 get_token(ep, ep["business_central"]["scope"]), ep["ca_bundle"])
        rows = bc.get("customers?$select=number,displayName,blocked").json()["value"]
        assert sorted(x["number"] for x in rows) == [f"B{i:07d}" for i in range(1, 8)]
        assert all(x["blocked"] == "_x0020_" for x in rows)  # blank, as BC serves it
        dv = Api(ep["dataverse"]["api_url"], get_token(ep, ep["dataverse"]["scope"]),
                 ep["ca_bundle"])
        accounts = dv.get("accounts?$select=accountnumber&$filter=customertypecode eq 3"
                          " and statecode eq 0").json()["value"]
        assert sorted(a["accountnumber"] for a in accounts) == ["BA0000011", "BA0000012",
                                                               "BA0000013"]
        # the generated rows are ordinary records: a PATCH with their etag works
        one = bc.get("customers?$top=1").json()["value"][0]
        assert bc.patch(f"customers({one['id']})", json={"phoneNumber": "1"},
                        headers={"If-Match": one["@odata.etag"]}).status_code == 200
