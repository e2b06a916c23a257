"""The run page of a mapping DAG's runs, in a real Airflow (API server + LocalExecutor
scheduler) driven by headless Debian Chromium: from the synchronisation log to the run, the
field changes old -> new of each updated record checked against what the APIs now hold, the
filter by action (only updates, the count right), paging over a job of more records than a
page, and a record Dataverse refused, with the API's error, reached from the errors page too.

The stack is this module's own: the emulators' demo data plus 40 Business Central customers
(so the first, full run inserts more records than a page holds), an empty state store, and a
copy of the mappings where CUSTOMER has no schedule (its DAG, unpaused, then runs only what
the test triggers). Two runs of ``bcdv_sync_customer``: a full synchronisation, then an
incremental one after three customers changed in Business Central, one of which Dataverse
refuses.

Behaviour relied on (cited):
- Airflow's REST API: ``POST /api/v2/dags/{dag_id}/dagRuns`` triggers a run with ``conf``;
  ``GET .../dagRuns/{run_id}`` and ``.../taskInstances`` read it; ``GET
  /api/v2/dags/~/dagRuns`` lists the runs of every DAG the user may read
  (https://airflow.apache.org/docs/apache-airflow/stable/stable-rest-api-ref.html); a list
  answers at most ``[api] maximum_page_limit`` (100) rows a call
  (https://airflow.apache.org/docs/apache-airflow/stable/configurations-ref.html#maximum-page-limit).
- Dataverse's error for a refused write: 400 with ``error.code`` and ``error.message``
  (https://learn.microsoft.com/power-apps/developer/data-platform/webapi/compose-http-requests-handle-errors);
  the emulator's fault rule answers the update of one account so.
- The account's ``telephone1`` and ``address1_city`` columns are what CUSTOMER maps
  ``phoneNumber`` and ``city`` to (include/mappings/customer.yaml).
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import requests

from bcdv.service import views
from bcdv.state import StateStore

from . import stack
from .conftest import Stack

DAG_ID = "bcdv_sync_customer"
EXTRA = 40  # Business Central customers added to the demo's
REFUSED = "Run Page Customer 07"
DV_CODE = "0x80044331"
DV_MESSAGE = ("A validation error occurred.  The length of the 'telephone1' attribute of the "
              "'account' entity exceeded the maximum allowed length of '12'.")
CHANGED = {"Run Page Customer 03": ("+1 206 555 0303", "Tacoma"),
           "Run Page Customer 05": ("+1 206 555 0505", "Spokane"),
           REFUSED: ("+1 206 555 0707", "Yakima")}


@dataclass
class RunStack(Stack):
    """The stack and the emulators' endpoints."""

    endpoints: dict[str, Any] = field(default_factory=dict)


def _clients(endpoints: dict[str, Any]) -> tuple[Any, Any]:
    from bcdv.clients.business_central import BusinessCentralClient
    from bcdv.clients.dataverse import DataverseClient
    from bcdv.settings import endpoints_from_dict

    settings = endpoints_from_dict(endpoints)
    return BusinessCentralClient(settings.business_central), DataverseClient(settings.dataverse)


@pytest.fixture(scope="module")
def run_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunStack]:
    """Emulators (demo data + 40 customers), mappings without CUSTOMER's schedule, and
    `airflow api-server` + `scheduler`, with bcdv_sync_customer unpaused."""
    from bcdv_emulators.testing import run_emulators

    home = tmp_path_factory.mktemp("airflow-runs")
    with run_emulators(home / "emulators", seed="demo") as endpoints:
        bc, dv = _clients(endpoints)
        try:
            for n in range(EXTRA):
                bc.create("customers", {"displayName": f"Run Page Customer {n:02d}",
                                        "phoneNumber": f"+1 425 555 01{n:02d}",
                                        "city": "Seattle"})
        finally:
            bc.close()
            dv.close()
        mappings = home / "mappings"
        shutil.copytree(stack.ROOT / "include" / "mappings", mappings)
        customer = mappings / "customer.yaml"
        text = customer.read_text()
        assert re.search(r'^schedule: ".*"$', text, re.M)
        customer.write_text(re.sub(r'^schedule: ".*"$', "schedule: null", text, flags=re.M))
        state_url = f"sqlite:///{home / 'state.db'}"
        extra = {"BCDV_MAPPINGS_DIR": str(mappings), "BCDV_TASK_RETRIES": "0"}
        with stack.api_server(home, endpoints, state_url, extra) as (base, env):
            st = RunStack(base, home, env, {}, state_url, endpoints)
            _api(st, "PATCH", f"/dags/{DAG_ID}", json={"is_paused": False})
            with stack.process(env, home / "scheduler.log", "scheduler"):
                yield st


def _api(st: Stack, method: str, path: str, **kw: Any) -> Any:
    resp = requests.request(method, f"{st.base}/api/v2{path}", timeout=30, headers={
        "Authorization": f"Bearer {st.token('admin')}"}, **kw)
    assert resp.status_code < 300, f"{method} {path}: {resp.status_code} {resp.text}"
    return resp.json()


def _run(st: Stack, conf: dict[str, Any]) -> dict[str, Any]:
    """Trigger a run of the CUSTOMER DAG and wait until it ends."""
    run_id = _api(st, "POST", f"/dags/{DAG_ID}/dagRuns",
                  json={"logical_date": None, "conf": conf})["dag_run_id"]
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        run = _api(st, "GET", f"/dags/{DAG_ID}/dagRuns/{run_id}")
        if run["state"] in ("success", "failed"):
            return dict(run)
        time.sleep(1)
    raise AssertionError(f"{DAG_ID} run {run_id} did not end; scheduler log:\n"
                         + (st.home / "scheduler.log").read_text(errors="replace")[-4000:])


def _to_dv_job(store: StateStore, run_id: str) -> dict[str, Any]:
    [job] = [j for j in views.jobs_of_run(store, run_id) if j["direction"] == "to_dataverse"
             and j["type"] == "synchronization"]
    return job


@pytest.fixture(scope="module")
def page(browser: Any, run_stack: RunStack) -> Iterator[Any]:
    """A signed-in admin's tab."""
    with stack.signed_in_tab(browser, run_stack.base) as tab:
        yield tab


def test_run_page_of_a_mapping_dag(page: Any, run_stack: RunStack, shots: Any) -> None:
    """Two real runs, then the pages (one test: one Airflow stack)."""
    st = run_stack
    store = StateStore(st.state_url)

    full = _run(st, {"full": True})
    assert full["state"] == "success", full
    seeded = _to_dv_job(store, full["dag_run_id"])
    inserts = views.count_records_of_job(store, seeded["id"], action="insert")
    assert inserts >= EXTRA > 25, views.record_actions_of_job(store, seeded["id"])

    before = _change_customers(st)
    incremental = _run(st, {})
    job = _to_dv_job(store, incremental["dag_run_id"])

    _log_links_to_the_run(page, st, incremental, job, shots)
    _updates_show_their_changes(page, st, job, before, shots)
    _refused_record_shows_its_error(page, st, job, before, shots)
    _paging(page, st, store, full, seeded, inserts, shots)
    _errors_page_links_to_the_run(page, st, incremental, job, shots)
    _dry_run_preview(page, st, store, before, shots)
    _user_dag_run_id_and_no_run(page, st, store, job)


def _change_customers(st: RunStack) -> dict[str, dict[str, Any]]:
    """Dataverse refuses the update of one account; three customers change in Business
    Central. Returns each changed record's ids and its account before the run."""
    bc, dv = _clients(st.endpoints)
    store = StateStore(st.state_url)
    out: dict[str, dict[str, Any]] = {}
    try:
        base = dv.url("accounts").split("/api/data")[0]
        requests.put(f"{base}/_emulator/faults", json={"rules": [
            {"entity": "accounts", "match": {"name": REFUSED}, "status": 400,
             "code": DV_CODE, "message": DV_MESSAGE, "methods": ["PATCH", "POST"]}]},
            verify=st.endpoints["ca_bundle"], timeout=30).raise_for_status()
        for name, (phone, city) in CHANGED.items():
            [customer] = bc.list("customers", filter=f"displayName eq '{name}'")
            bc_id = str(customer["id"]).lower()
            coupling = store.coupling("CUSTOMER", bc_id=bc_id)
            assert coupling is not None, name
            account = dv.get("accounts", coupling["dv_id"])
            out[name] = {"bc_id": bc_id, "dv_id": coupling["dv_id"], "account": account}
            bc.update("customers", customer["id"], {"phoneNumber": phone, "city": city},
                      etag=customer["@odata.etag"])
    finally:
        bc.close()
        dv.close()
    return out


def _account(st: RunStack, dv_id: str) -> dict[str, Any]:
    bc, dv = _clients(st.endpoints)
    try:
        return dict(dv.get("accounts", dv_id))
    finally:
        bc.close()
        dv.close()


def _log_links_to_the_run(page: Any, st: RunStack, run: dict[str, Any], job: dict[str, Any],
                          shots: Any) -> None:
    page.goto(f"{st.base}/bcdv/log?mapping=CUSTOMER")
    link = page.locator(f"[data-testid=jobs] tr[data-job-id='{job['id']}'] "
                        "[data-testid=run-link]")
    assert link.inner_text().strip() == run["dag_run_id"]
    shots(page, "01-log")
    link.click()
    page.wait_for_url("**/bcdv/runs/**")
    query = parse_qs(urlparse(page.url).query)
    assert query["job"] == [job["id"]]
    assert page.locator("[data-testid=run-id]").inner_text() == run["dag_run_id"]
    assert page.locator("[data-testid=run-dag]").inner_text() == DAG_ID
    assert page.locator("[data-testid=run-state]").inner_text() == run["state"]
    tasks = _api(st, "GET", f"/dags/{DAG_ID}/dagRuns/{run['dag_run_id']}/taskInstances")
    shown = page.locator("[data-testid=tasks] tbody tr").all_inner_texts()
    assert len(shown) == tasks["total_entries"] > 0
    names = " ".join(shown)
    assert all(t["task_id"] in names for t in tasks["task_instances"])
    # Both passes of the run, with their counters.
    results = page.locator("[data-testid=result]")
    assert results.count() >= 2
    chosen = page.locator(f"[data-testid=result][data-job-id='{job['id']}']").inner_text()
    assert f"modified {job['modified']}" in chosen and f"failed {job['failed']}" in chosen
    shots(page, "02-run")


def _updates_show_their_changes(page: Any, st: RunStack, job: dict[str, Any],
                                before: dict[str, dict[str, Any]], shots: Any) -> None:
    nav = page.locator("[data-testid=actions]")
    update_link = nav.locator("a[data-action=update]")
    assert re.fullmatch(r"update \(3\)", update_link.inner_text().strip())
    update_link.click()
    page.wait_for_url("**action=update**")
    rows = page.locator("[data-testid=run-records] tbody tr[data-action]")
    assert rows.count() == 3
    assert set(rows.evaluate_all("rs => rs.map(r => r.dataset.action)")) == {"update"}
    assert page.locator("[data-testid=pager] [data-testid=total]").first.inner_text() \
        .replace("\u2013", "-") == "1-3 of 3 records"
    shots(page, "03-updates")
    for name, (phone, city) in CHANGED.items():
        if name == REFUSED:
            continue
        bc_id = before[name]["bc_id"]
        row = page.locator(f"[data-testid=run-records] tr[data-source-id='{bc_id}']")
        assert name in row.locator("td.name").inner_text()
        now = _account(st, before[name]["dv_id"])
        old = before[name]["account"]
        for column, new in (("telephone1", phone), ("address1_city", city)):
            diff = row.locator(f".diff[data-field={column}]")
            assert diff.locator(".old").inner_text() == old[column]
            assert diff.locator(".new").inner_text() == now[column] == new


def _refused_record_shows_its_error(page: Any, st: RunStack, job: dict[str, Any],
                                    before: dict[str, dict[str, Any]], shots: Any) -> None:
    refused = before[REFUSED]
    row = page.locator(f"[data-testid=run-records] tr[data-source-id='{refused['bc_id']}']")
    assert "failed" in row.inner_text()
    page.locator("[data-testid=failed-records]").click()
    page.wait_for_url("**failed=true**")
    assert "action=" not in page.url
    rows = page.locator("[data-testid=run-records] tbody tr[data-action]")
    assert rows.count() == job["failed"] == 1
    text = " ".join(rows.first.inner_text().split())
    assert REFUSED in text and " ".join(DV_MESSAGE.split()) in text
    # The planned change is shown; Dataverse still holds the old values.
    now = _account(st, refused["dv_id"])
    assert now["telephone1"] == refused["account"]["telephone1"] != CHANGED[REFUSED][0]
    errors = page.locator(f"[data-testid=result][data-job-id='{job['id']}'] "
                          "[data-testid=run-error]").all_inner_texts()
    assert any(REFUSED in e and DV_CODE in e for e in errors), errors
    shots(page, "04-failed")


def _paging(page: Any, st: RunStack, store: StateStore, run: dict[str, Any],
            job: dict[str, Any], inserts: int, shots: Any) -> None:
    page.goto(f"{st.base}/bcdv/log?mapping=CUSTOMER&size=100")
    page.locator(f"[data-testid=jobs] tr[data-job-id='{job['id']}'] "
                 "[data-testid=run-link]").click()
    page.wait_for_url("**/bcdv/runs/**")
    page.locator("[data-testid=actions] a[data-action=insert]").click()
    page.wait_for_url("**action=insert**")
    page.select_option("[data-testid=size]", "25")
    page.click("[data-testid=records-of-job] button:has-text('Show')")
    page.wait_for_url("**size=25**")
    pages = -(-inserts // 25)
    pager = page.locator("[data-testid=pager]").first
    assert pager.locator("[data-testid=total]").inner_text().replace("\u2013", "-") == \
        f"1-25 of {inserts} records"
    assert pager.locator("[data-testid=page-of]").inner_text() == f"page 1 of {pages}"
    seen: list[str] = []
    for number in range(1, pages + 1):
        ids = page.locator("[data-testid=run-records] tbody tr[data-action=insert]") \
            .evaluate_all("rs => rs.map(r => r.dataset.sourceId)")
        assert len(ids) == (25 if number < pages else inserts - 25 * (pages - 1))
        seen += ids
        query = parse_qs(urlparse(page.url).query)
        assert query.get("action") == ["insert"] and query.get("job") == [job["id"]]
        if number < pages:
            page.locator("[data-testid=pager] [data-testid=next]").first.click()
            page.wait_for_url(f"**page={number + 1}**")
    expected = [r["source_id"] for r in views.records_of_job(store, job["id"],
                                                              action="insert")]
    assert seen == expected  # every insert once, in plan order
    shots(page, "05-paging")


def _errors_page_links_to_the_run(page: Any, st: RunStack, run: dict[str, Any],
                                  job: dict[str, Any], shots: Any) -> None:
    page.goto(f"{st.base}/bcdv/errors?mapping=CUSTOMER")
    row = page.locator("[data-testid=errors] tbody tr", has_text=REFUSED)
    assert row.count() == 1
    row.locator("[data-testid=error-run]").click()
    page.wait_for_url("**/bcdv/runs/**")
    assert page.locator("[data-testid=run-id]").inner_text() == run["dag_run_id"]
    rows = page.locator("[data-testid=run-records] tbody tr[data-action]")
    assert rows.count() == 1 and REFUSED in rows.first.inner_text()
    shots(page, "06-from-errors")


def _dry_run_preview(page: Any, st: RunStack, store: StateStore,
                     before: dict[str, dict[str, Any]], shots: Any) -> None:
    """A dry run lists what a real run would do: the refused record's update again, with
    its planned changes, and nothing written."""
    dry = _run(st, {"dry_run": True})
    job = _to_dv_job(store, dry["dag_run_id"])
    assert job["dry_run"]
    refused = before[REFUSED]
    page.goto(f"{st.base}/bcdv/log?mapping=CUSTOMER")
    page.locator(f"[data-testid=jobs] tr[data-job-id='{job['id']}'] "
                 "[data-testid=run-link]").click()
    page.wait_for_url("**/bcdv/runs/**")
    assert "dry run" in page.locator("[data-testid=records-of-job] h2").inner_text()
    page.locator("[data-testid=actions] a[data-action=update]").click()
    page.wait_for_url("**action=update**")
    rows = page.locator("[data-testid=run-records] tbody tr[data-action]")
    assert rows.count() == 1
    row = page.locator(f"[data-testid=run-records] tr[data-source-id='{refused['bc_id']}']")
    diff = row.locator(".diff[data-field=telephone1]")
    old = refused["account"]["telephone1"]
    assert (diff.locator(".old").inner_text(), diff.locator(".new").inner_text()) == (
        old, CHANGED[REFUSED][0])
    assert _account(st, refused["dv_id"])["telephone1"] == old
    shots(page, "07-dry-run")


def _user_dag_run_id_and_no_run(page: Any, st: RunStack, store: StateStore,
                                job: dict[str, Any]) -> None:
    """A job of an operator in a user's DAG carries ``<dag>.<task>__<run id>``: the page
    finds the DAG and the Airflow run from it (here the CUSTOMER DAG stands in for the
    user's DAG); a run id Airflow does not know still shows its jobs."""
    from sqlalchemy import update

    from bcdv.state.schema import jobs

    airflow_run = str(job["run_id"])
    own = f"{DAG_ID}.sync_customer__{airflow_run}"
    with store.engine.begin() as conn:
        conn.execute(update(jobs).where(jobs.c.id == job["id"]).values(run_id=own))
    try:
        page.goto(f"{st.base}/bcdv/runs/{requests.utils.quote(own, safe='')}")
        assert page.locator("[data-testid=run-dag]").inner_text() == DAG_ID
        assert page.locator("[data-testid=run-id]").inner_text() == airflow_run
        ids = page.locator("[data-testid=result]").evaluate_all(
            "rs => rs.map(r => r.dataset.jobId)")
        assert job["id"] in ids and len(ids) >= 2  # the operator's job and the DAG's
    finally:
        with store.engine.begin() as conn:
            conn.execute(update(jobs).where(jobs.c.id == job["id"]).values(
                run_id=airflow_run))
    page.goto(f"{st.base}/bcdv/runs/cli__not-in-airflow")
    assert page.locator("[data-testid=run-state]").inner_text() == "unknown"
    assert "no run" in page.locator("[data-testid=run-error-note]").inner_text()
