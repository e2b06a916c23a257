"""The bcdv pages in a real Airflow API server, driven in headless Debian Chromium.

One test function on purpose: the Airflow stack (API server + scheduler) is the expensive
part, and pytest-xdist would start one per worker if the steps were separate tests.
"""

from __future__ import annotations

import re
import time
from typing import Any

import requests

from bcdv.state.store import StateStore

CSRF = re.compile(r'name="csrf_token" value="([0-9a-f]+)"')


def test_pages_in_a_real_airflow(browser: Any, airflow_stack: Any, shots: Any) -> None:
    """Refusals first (they change nothing), then an operator's session."""
    started = time.monotonic()
    _anonymous_refused(airflow_stack)
    _viewer_may_read_but_not_act(airflow_stack, browser, shots)
    _forged_posts_refused(airflow_stack)
    _operator_session(airflow_stack, browser, shots)
    print(f"browser steps took {time.monotonic() - started:.1f} s")


def _session(stack: Any, user: str) -> requests.Session:
    s = requests.Session()
    s.cookies.set("_token", stack.token(user), domain="127.0.0.1", path="/")
    return s


def _form_token(session: requests.Session, stack: Any) -> str:
    page = session.get(f"{stack.base}/bcdv/couplings?mapping=CUSTOMER", timeout=30)
    assert page.status_code == 200
    return CSRF.search(page.text).group(1)


def _anonymous_refused(stack: Any) -> None:
    html = requests.get(f"{stack.base}/bcdv/couplings", headers={"Accept": "text/html"},
                        allow_redirects=False, timeout=30)
    assert html.status_code == 303 and "/auth/login" in html.headers["location"]
    for path in ("/bcdv/", "/bcdv/errors", "/bcdv/log", "/bcdv/mappings/CUSTOMER"):
        resp = requests.get(stack.base + path, timeout=30)
        assert resp.status_code == 401, path
        assert "CUSTOMER" not in resp.text
    post = requests.post(f"{stack.base}/bcdv/couplings/uncouple",
                         data={"mapping": "CUSTOMER", "record_id": stack.skipped["bc_id"]},
                         timeout=30)
    assert post.status_code == 401
    bad = requests.get(f"{stack.base}/bcdv/", cookies={"_token": "not-a-jwt"}, timeout=30)
    assert bad.status_code == 401


def _viewer_may_read_but_not_act(stack: Any, browser: Any, shots: Any) -> None:
    viewer = _session(stack, "viewer")
    token = _form_token(viewer, stack)
    resp = viewer.post(f"{stack.base}/bcdv/couplings/uncouple", timeout=30, data={
        "csrf_token": token, "mapping": "CUSTOMER", "record_id": stack.skipped["bc_id"]},
        allow_redirects=False)
    assert resp.status_code == 403 and "permission to trigger" in resp.text
    resp = viewer.post(f"{stack.base}/bcdv/sync", timeout=30, allow_redirects=False, data={
        "csrf_token": token, "mapping": "CUSTOMER", "side": "business_central",
        "record_id": stack.skipped["bc_id"]})
    assert resp.status_code == 403
    assert StateStore(stack.state_url).coupling("CUSTOMER", bc_id=stack.skipped["bc_id"])

    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.add_cookies([{"name": "_token", "value": stack.token("viewer"),
                          "url": stack.base}])
    page = context.new_page()
    page.goto(f"{stack.base}/bcdv/couplings?mapping=CUSTOMER")
    assert "(read only)" in page.inner_text("[data-testid=user]")
    buttons = page.locator("[data-testid=couplings] button")
    assert buttons.count() > 0
    assert all(buttons.nth(i).is_disabled() for i in range(buttons.count()))
    shots(page, "viewer-read-only")
    context.close()


def _forged_posts_refused(stack: Any) -> None:
    admin = _session(stack, "admin")
    token = _form_token(admin, stack)
    target = {"mapping": "CUSTOMER", "record_id": stack.skipped["bc_id"]}
    no_token = admin.post(f"{stack.base}/bcdv/couplings/uncouple", data=target, timeout=30,
                          allow_redirects=False)
    assert no_token.status_code == 403 and "CSRF" in no_token.text
    wrong = admin.post(f"{stack.base}/bcdv/couplings/uncouple", timeout=30,
                       data={**target, "csrf_token": "0" * 64}, allow_redirects=False)
    assert wrong.status_code == 403
    other_user = _session(stack, "operator")
    _form_token(other_user, stack)  # its own nonce cookie; the admin's token is not valid
    stolen = other_user.post(f"{stack.base}/bcdv/couplings/uncouple", timeout=30,
                             data={**target, "csrf_token": token}, allow_redirects=False)
    assert stolen.status_code == 403
    cross = admin.post(f"{stack.base}/bcdv/couplings/uncouple", timeout=30,
                       data={**target, "csrf_token": token}, allow_redirects=False,
                       headers={"Origin": "https://evil.example"})
    assert cross.status_code == 403
    get = admin.get(f"{stack.base}/bcdv/couplings/uncouple", timeout=30)
    assert get.status_code == 405
    page = admin.get(f"{stack.base}/bcdv/", timeout=30)
    assert "script-src 'none'" in page.headers["content-security-policy"]
    assert "frame-ancestors 'self'" in page.headers["content-security-policy"]
    first = _session(stack, "admin").get(f"{stack.base}/bcdv/", timeout=30)
    cookie = first.headers["set-cookie"].lower()
    assert cookie.startswith("bcdv_csrf=") and "httponly" in cookie
    assert "samesite=strict" in cookie and "path=/bcdv" in cookie
    assert StateStore(stack.state_url).coupling("CUSTOMER", bc_id=stack.skipped["bc_id"])


def _row(page: Any, name: str) -> Any:
    return page.locator("[data-testid=couplings] tbody tr", has_text=name)


def _operator_session(stack: Any, browser: Any, shots: Any) -> None:
    store = StateStore(stack.state_url)
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)

    # Sign in through Airflow's own login page, which sends us back to the bcdv page.
    page.goto(f"{stack.base}/bcdv/")
    page.wait_for_url("**/auth/login**")
    shots(page, "01-airflow-login")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", "admin-pass-1")
    page.keyboard.press("Enter")
    page.wait_for_url(f"{stack.base}/bcdv/")

    # Integration table mappings, with counts from the demo runs.
    customer = page.locator("[data-testid=mappings] tr[data-mapping=CUSTOMER]")
    cells = customer.locator("td").all_inner_texts()
    assert cells[0] == "CUSTOMER" and cells[1].startswith("customers ⇄ accounts")
    assert customer.locator("td.tables").get_attribute("data-direction") == "bidirectional"
    assert "statecode eq 0" in cells[2] and "*/30" in cells[3] and "success" in cells[4]
    counts = store.counts("CUSTOMER")  # the demo: 7 couplings, 1 skipped, 3 open errors
    assert cells[5:9] == [str(counts[k]) for k in ("couplings", "skipped", "failed", "errors")]
    assert counts["couplings"] > 1 and counts["skipped"] == 1
    assert re.search(r"→ DV \d{4}-\d\d-\d\d", cells[9]), cells[9]
    assert re.search(r"→ BC \d{4}-\d\d-\d\d", cells[9]), cells[9]
    shots(page, "02-mappings")

    # The link in Airflow's navigation shows the same page inside the Airflow UI.
    page.goto(f"{stack.base}/plugin/bcdv")
    frame = page.frame_locator("iframe")
    frame.locator("h1", has_text="Integration table mappings").wait_for()
    shots(page, "03-inside-airflow-ui")

    # Field mappings of CUSTOMER.
    page.goto(f"{stack.base}/bcdv/")
    page.click("[data-testid=mappings] a:text-is('CUSTOMER')")
    page.wait_for_url("**/bcdv/mappings/CUSTOMER")
    fields = page.locator("[data-testid=fields] tbody tr")
    assert fields.count() >= 8
    assert page.locator("[data-testid=fields] tr", has_text="displayName").count() == 1
    shots(page, "04-field-mappings")

    # Synchronisation errors: the deletion conflict (twice: skipped) and BC's refusals.
    page.goto(f"{stack.base}/bcdv/errors")
    errors = page.locator("[data-testid=errors] tbody tr")
    open_errors = store.errors("CUSTOMER")
    assert errors.count() == len(open_errors)
    deleted = page.locator(f"[data-testid=errors] tr[data-source-id='{stack.skipped['bc_id']}']")
    assert "coupled to a deleted record" in deleted.inner_text()
    assert deleted.locator("td.num").inner_text() == "2"
    refused = [e for e in open_errors if e["direction"] == "to_business_central"]
    for err in refused:  # the demo: BC refuses two accounts (unknown terms, long country)
        assert page.locator(f"tr[data-error-id='{err['id']}']").inner_text().count(
            err["message"][:40]) == 1
    shots(page, "05-errors")

    # Synchronisation log with its chart.
    page.goto(f"{stack.base}/bcdv/log?mapping=CUSTOMER")
    assert page.locator("[data-testid=chart] svg rect[data-series]").count() >= 3
    assert page.locator("[data-testid=jobs] tbody tr", has_text="demo__full").count() == 3
    shots(page, "06-log")

    # Coupled records: search by name and by id.
    page.goto(f"{stack.base}/bcdv/couplings?mapping=CUSTOMER")
    assert page.locator("[data-testid=couplings] tbody tr").count() == counts["couplings"]
    page.fill("[data-testid=search]", "trey")
    page.click("button:has-text('Search')")
    page.wait_for_url("**q=trey**")
    assert page.locator("[data-testid=couplings] tbody tr").count() == 1
    trey = _row(page, "Trey Research")
    bc_id, dv_id = trey.get_attribute("data-bc-id"), trey.get_attribute("data-dv-id")
    page.fill("[data-testid=search]", dv_id[:8])
    page.click("button:has-text('Search')")
    page.wait_for_url(f"**q={dv_id[:8]}**")
    assert _row(page, "Trey Research").count() == 1
    shots(page, "07-search")

    # Uncouple, see it gone, couple it again with the undo button.
    _row(page, "Trey Research").locator("button:has-text('Uncouple')").click()
    page.locator(".flash.ok", has_text="Uncoupled Trey Research").wait_for()
    assert store.coupling("CUSTOMER", bc_id=bc_id) is None
    shots(page, "08-uncoupled")
    page.click("button:has-text('Undo: couple again')")
    page.locator(".flash.ok", has_text="Coupled").wait_for()
    assert store.coupling("CUSTOMER", bc_id=bc_id)["dv_id"] == dv_id

    # Restore the skipped record.
    page.goto(f"{stack.base}/bcdv/couplings?mapping=CUSTOMER&skipped=true")
    skipped = page.locator(f"tr[data-bc-id='{stack.skipped['bc_id']}']")
    assert "yes" in skipped.inner_text()
    skipped.locator("button:has-text('Restore')").click()
    page.locator(".flash.ok", has_text="Restored").wait_for()
    assert store.coupling("CUSTOMER", bc_id=stack.skipped["bc_id"])["skipped"] is False
    shots(page, "09-restored")

    # Sync now: triggers bcdv_sync_record in Airflow; the run page follows it to the end.
    # (coupled again without baselines, the pair has no synced name until it syncs)
    page.goto(f"{stack.base}/bcdv/couplings?mapping=CUSTOMER&q={bc_id}")
    page.locator(f"tr[data-bc-id='{bc_id}'] button:has-text('Sync → Dataverse')").click()
    page.wait_for_url("**/bcdv/runs/**")
    run_id = page.url.rsplit("/runs/", 1)[1]
    page.locator("[data-testid=run-state]", has_text="success").wait_for(timeout=150_000)
    result = page.locator("[data-testid=result]").inner_text()
    assert "CUSTOMER to_dataverse (record)" in result and "failed 0" in result
    assert re.search(r"(modified|unchanged) 1", result), result
    shots(page, "10-sync-now-result")
    run = requests.get(f"{stack.base}/api/v2/dags/bcdv_sync_record/dagRuns/{run_id}",
                       headers={"Authorization": f"Bearer {stack.token('admin')}"},
                       timeout=30).json()
    assert run["state"] == "success" and run["conf"]["record_id"] == bc_id

    # Retry from the errors page: Business Central still refuses the record; the run page
    # shows the failure and the message the API gave.
    assert refused, "the demo data has no record that Business Central refuses"
    page.goto(f"{stack.base}/bcdv/errors?mapping=CUSTOMER")
    page.locator(f"tr[data-error-id='{refused[0]['id']}'] button:has-text('Retry')").click()
    page.wait_for_url("**/bcdv/runs/**")
    page.locator("[data-testid=run-state]", has_text="success").wait_for(timeout=150_000)
    result = page.locator("[data-testid=result]").inner_text()
    assert "CUSTOMER to_business_central (record)" in result and "failed 1" in result
    assert refused[0]["message"][:40] in result
    shots(page, "11-retry-result")
    context.close()
