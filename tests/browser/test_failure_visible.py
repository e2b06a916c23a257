"""A full sync in which records fail is visible where a data engineer looks: Airflow's own
grid shows the run failed (in ``check_failed_records``, after every commit), the alert
receivers get one message for the run, and the bcdv Errors page names the record, the field
and the API's message.

A real Airflow (API server, scheduler and DAG processor, LocalExecutor) on the emulators'
demo data, where Dataverse refuses one account: the emulator's fault rule answers the create
of Coho Winery (a Business Central customer the full sync creates in Dataverse) with the error
Dataverse gives when a text exceeds its column (an organisation whose maker shortened the
account's Website column to 20 characters): 400, code 0x80044331, "A validation error
occurred.  The length of the 'websiteurl' attribute of the 'account' entity exceeded the
maximum allowed length of '20'." (the format of Learn's Web API error handling page,
https://learn.microsoft.com/en-us/power-apps/developer/data-platform/webapi/compose-http-requests-handle-errors).
bcdv reads the field from that message (bcdv.engine.api_errors) and the value from what it
sent.

- Airflow 3.3 runs DAG-level callbacks in the DAG processor
  (https://airflow.apache.org/docs/apache-airflow/3.3.2/administration-and-deployment/logging-monitoring/callbacks.html),
  so the stack runs one here (the page tests' stack does not).
- The run's state and its task instances come from Airflow's REST API
  (``GET /api/v2/dags/{dag_id}/dagRuns/{run_id}`` and ``.../taskInstances``,
  https://airflow.apache.org/docs/apache-airflow/stable/stable-rest-api-ref.html), and the
  same run is looked at in Airflow's React UI in headless Chromium.

One test function on purpose: the Airflow stack is the expensive part.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from . import stack
from .conftest import ARTIFACTS, Stack

DAG_ID = "bcdv_full_sync"
MAPPINGS = ["CURRENCY", "SALESPEOPLE", "CUSTOMER"]
REFUSED = "Coho Winery"
DV_CODE = "0x80044331"
DV_MESSAGE = ("A validation error occurred.  The length of the 'websiteurl' attribute of the "
              "'account' entity exceeded the maximum allowed length of '20'.")


class Inbox:
    """What the SMTP server and the webhook receiver got."""

    def __init__(self) -> None:
        self.mails: list[Any] = []
        self.posts: list[dict[str, Any]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.mails.append(message_from_bytes(envelope.content))
        return "250 OK"


@pytest.fixture(scope="module")
def receivers() -> Iterator[tuple[Inbox, dict[str, str]]]:
    """A real SMTP server and webhook receiver, and the Airflow environment that makes them
    the alert channels (as tests/airflow/conftest.py ``inbox`` does for ``dag.test()``)."""
    from aiosmtpd.controller import Controller

    box = Inbox()
    smtp = Controller(box, hostname="127.0.0.1", port=stack.free_port())
    smtp.start()

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            box.posts.append(json.loads(body))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    http = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    env = {"AIRFLOW_CONN_BCDV_SMTP": json.dumps({
               "conn_type": "smtp", "host": "127.0.0.1", "port": smtp.port,
               "extra": {"disable_ssl": True, "disable_tls": True,
                         "from_email": "bcdv@example.com"}}),
           "BCDV_ALERT_SMTP_CONN_ID": "bcdv_smtp",
           "BCDV_ALERT_EMAIL_TO": "ops@example.com",
           "AIRFLOW_VAR_BCDV_ALERT_WEBHOOK_URL": f"http://127.0.0.1:{http.server_address[1]}/hook"}
    try:
        yield box, env
    finally:
        smtp.stop()
        http.shutdown()


@pytest.fixture(scope="module")
def failing_stack(tmp_path_factory: pytest.TempPathFactory,
                  receivers: tuple[Inbox, dict[str, str]]) -> Iterator[Stack]:
    """Emulators (demo data; Dataverse refuses Coho Winery's account), an empty state store,
    and `airflow api-server`, `scheduler` and `dag-processor` with the alert channels."""
    from bcdv_emulators.testing import run_emulators

    home = tmp_path_factory.mktemp("airflow-failure")
    with run_emulators(home / "emulators", seed="demo") as endpoints:
        requests.put(f"{endpoints['dataverse']['base_url']}/_emulator/faults", json={"rules": [
            {"entity": "accounts", "match": {"name": REFUSED}, "status": 400, "code": DV_CODE,
             "message": DV_MESSAGE, "methods": ["POST", "PATCH"]}]},
            verify=endpoints["ca_bundle"], timeout=30).raise_for_status()
        state_url = f"sqlite:///{home / 'state.db'}"
        extra = {**receivers[1], "BCDV_TASK_RETRIES": "1", "BCDV_RETRY_DELAY_SECONDS": "1"}
        with stack.api_server(home, endpoints, state_url, extra) as (base, env), \
                stack.process(env, home / "scheduler.log", "scheduler"), \
                stack.process(env, home / "dag-processor.log", "dag-processor"):
            yield Stack(base, home, env, {}, state_url)


def _api(stack_: Stack, method: str, path: str, **kw: Any) -> Any:
    resp = requests.request(method, f"{stack_.base}/api/v2{path}", timeout=30, headers={
        "Authorization": f"Bearer {stack_.token('admin')}"}, **kw)
    assert resp.status_code < 300, f"{method} {path}: {resp.status_code} {resp.text}"
    return resp.json()


def _until(what: str, check: Any, timeout: float, stack_: Stack) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(1)
    logs = "\n".join(f"--- {name} ---\n" + (stack_.home / name).read_text(
        errors="replace")[-3000:] for name in ("scheduler.log", "dag-processor.log"))
    raise AssertionError(f"timed out waiting for {what}\n{logs}")


def test_a_full_sync_with_failed_records_is_visible(browser: Any, failing_stack: Stack,
                                                    receivers: tuple[Inbox, dict[str, str]],
                                                    shots: Any) -> None:
    box = receivers[0]
    af = failing_stack
    _api(af, "PATCH", f"/dags/{DAG_ID}", json={"is_paused": False})
    run_id = _api(af, "POST", f"/dags/{DAG_ID}/dagRuns",
                  json={"logical_date": None, "conf": {"mappings": MAPPINGS}})["dag_run_id"]
    run = _until(f"{DAG_ID} run {run_id}", lambda: (
        lambda r: r if r["state"] in ("success", "failed") else None)(
        _api(af, "GET", f"/dags/{DAG_ID}/dagRuns/{run_id}")), 600, af)

    # (1) Airflow's REST API: the run failed, in its last task only, after every commit.
    assert run["state"] == "failed"
    tis = _api(af, "GET", f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances?limit=200")
    states = {(t["task_id"], t["map_index"]): t["state"] for t in tis["task_instances"]}
    not_ok = {k: s for k, s in states.items() if s != "success"}
    assert not_ok == {("check_failed_records", -1): "failed"}, states
    assert states[("customer.commit", -1)] == "success"
    assert states[("release_locks", -1)] == "success"

    # ... and in Airflow's own UI (React), as a user opens the DAG and the run.
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.add_cookies([{"name": "_token", "value": af.token("admin"),
                          "domain": "127.0.0.1", "path": "/"}])
    page = context.new_page()
    _airflow_ui_shows_the_failed_run(af, page, run_id, shots)

    # (2) One alert for the run: one mail and one webhook post, naming it.
    _until("the run's alert", lambda: box.mails and box.posts, 180, af)
    # The DAG-level callback comes last (after every task's end); a duplicate (a second
    # callback, one per task or per try) would have arrived within this settle time.
    time.sleep(10)
    assert len(box.mails) == 1 and len(box.posts) == 1, (
        [m["Subject"] for m in box.mails], box.posts)
    mail = box.mails[0]
    assert DAG_ID in mail["Subject"] and "failed" in mail["Subject"]
    body = mail.get_payload(decode=True).decode() if not mail.is_multipart() else "".join(
        p.get_payload(decode=True).decode() for p in mail.walk()
        if p.get_content_type() == "text/plain")
    assert run_id in body and "check_failed_records" in body
    assert run_id in json.dumps(box.posts[0])

    # (3) The bcdv Errors page: the record's name, the field (and value) and the API's
    # code and message.
    page.goto(f"{af.base}/bcdv/errors?mapping=CUSTOMER")
    row = page.locator("[data-testid=errors] tbody tr", has_text=REFUSED)
    try:
        row.first.wait_for()
    finally:
        shots(page, "errors")
    assert row.count() == 1
    assert REFUSED in row.locator("td.name").inner_text()
    message = " ".join(row.locator("td.message").inner_text().split())
    assert "websiteurl = www.cohowinery.example.com" in message
    assert DV_CODE in message and " ".join(DV_MESSAGE.split()) in message
    context.close()


def _dump(page: Any, name: str) -> None:
    """The page's HTML beside its screenshot (what the UI showed, to read after a failure)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / f"failure-visible-{name}.html").write_text(page.content())


def _airflow_ui_shows_the_failed_run(af: Stack, page: Any, run_id: str, shots: Any) -> None:
    """The run's page in Airflow's React UI: its state badge says Failed; in the grid beside
    it, the cell of check_failed_records has the failed colour (that of the Failed badge),
    not the success colour of release_locks; in the task list only that task failed; and the
    task's own page shows its log with the verdict."""
    page.goto(f"{af.base}/dags/{DAG_ID}/runs/{run_id}")
    heading = page.locator("h2", has_text=run_id)
    cell = page.locator(f"[data-testid='grid-{run_id}-check_failed_records']")
    rows = page.locator("tbody tr")
    try:
        heading.wait_for(timeout=60_000)
        cell.wait_for(timeout=60_000)
        rows.filter(has_text="release_locks").first.wait_for(timeout=60_000)
    finally:
        _dump(page, "run")
        shots(page, "run")
    header_badge = page.locator("h2 + [data-testid=state-badge]").first
    assert header_badge.inner_text().strip() == "Failed"
    failed = header_badge.evaluate("e => getComputedStyle(e).backgroundColor")
    ok = _badge_colour(page.locator(f"[data-testid='grid-{run_id}-release_locks']"))
    assert _badge_colour(cell) == failed != ok
    states = {}
    for row in rows.all():
        task = row.locator("[data-testid=table-cell-task_display_name]")
        if task.count():
            states[task.inner_text().replace("\n", "").strip()] = row.locator(
                "[data-testid=table-cell-state]").inner_text().strip()
    assert len(states) > 20, states  # the lock, three mappings' stages, release, check
    assert states.get("check_failed_records") == "Failed", states
    assert {s for t, s in states.items() if t != "check_failed_records"} == {"Success"}, states

    cell.click()  # the grid cell opens the task instance, with its log
    verdict = page.get_by_text("records failed in this run", exact=False).first
    try:
        verdict.wait_for(timeout=60_000)
    finally:
        _dump(page, "task")
        shots(page, "task")
    assert "CUSTOMER: 1 failed record" in verdict.inner_text()


def _badge_colour(cell: Any) -> str:
    return str(cell.locator("[data-testid=task-state-badge]").evaluate(
        "e => getComputedStyle(e).backgroundColor"))
