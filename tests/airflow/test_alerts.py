"""Alerts through a real SMTP server (aiosmtpd) and a real HTTP receiver (the ``inbox``
fixture of conftest): one message per failed run, including a run failed by records over the
failed-records threshold, none for a clean run."""

from __future__ import annotations

import json
import os
from typing import Any


def _body(mail: Any) -> str:
    return mail.get_payload(decode=True).decode() if not mail.is_multipart() else \
        mail.get_payload(0).get_payload(decode=True).decode()


def test_failed_run_sends_exactly_one_message_by_each_channel(sync_env, inbox, af,
                                                             monkeypatch) -> None:
    conn = json.loads(os.environ["AIRFLOW_CONN_BCDV_BUSINESS_CENTRAL"])
    conn["password"] = "wrong-secret-value"
    monkeypatch.setenv("AIRFLOW_CONN_BCDV_BUSINESS_CENTRAL", json.dumps(conn))

    run = af.mapping_dag("customer").test()
    assert run.state == "failed"
    assert len(inbox.mails) == 1 and len(inbox.posts) == 1, (inbox.mails, inbox.posts)
    mail = inbox.mails[0]
    assert mail["To"] == "ops@example.com, data@example.com"
    assert "bcdv_sync_customer" in mail["Subject"] and "failed" in mail["Subject"]
    body = _body(mail)
    text = inbox.posts[0]["text"]  # Slack-compatible by default
    for content in (body, text):
        assert "Mapping(s): CUSTOMER" in content
        assert "to_dataverse.extract" in content  # the failed task
        assert "CUSTOMER to_dataverse (failed): inserted 0" in content  # the counts
        assert "invalid_client" in content or "AADSTS" in content  # the first error
        assert "wrong-secret-value" not in content


def test_clean_run_sends_nothing(sync_env, inbox, af) -> None:
    run = af.mapping_dag("customer").test()
    assert run.state == "success", af.task_states(run)
    assert inbox.mails == [] and inbox.posts == []


def test_run_over_the_failed_records_threshold_fails_and_sends_one_teams_card(
        sync_env, inbox, af, monkeypatch) -> None:
    """Records failing beyond the threshold fail the run in its last task: one alert (the
    failure's), never a second one for the threshold."""
    import requests

    endpoints = sync_env["endpoints"]
    resp = requests.put(f"{endpoints['dataverse']['base_url']}/_emulator/faults", json={
        "rules": [{"entity": "accounts", "match": {"name": "Trey Research"}, "status": 400,
                   "code": "0x80040203", "message": "Invalid argument: refused by the test.",
                   "methods": ["POST", "PATCH"]}]}, verify=endpoints["ca_bundle"], timeout=30)
    resp.raise_for_status()
    monkeypatch.setenv("AIRFLOW_VAR_BCDV_FAILED_RECORDS_THRESHOLD", "1")
    monkeypatch.setenv("BCDV_ALERT_WEBHOOK_FORMAT", "teams")
    run = af.mapping_dag("customer").test(run_conf={"full": True})
    states = af.task_states(run)
    assert run.state == "failed", states
    assert (states["commit"], states["check_failed_records"]) == ("success", "failed")
    from bcdv.state.store import StateStore

    store = StateStore(sync_env["state_url"])
    failed = sum(j["failed"] for j in store.jobs("CUSTOMER") if j["run_id"] == run.run_id)
    assert failed >= 1
    first_error = store.errors("CUSTOMER")[0]["message"]
    assert len(inbox.mails) == 1 and len(inbox.posts) == 1
    card = inbox.posts[0]
    assert card["@type"] == "MessageCard"
    noun = "record" if failed == 1 else "records"
    assert f"CUSTOMER: {failed} failed {noun} (threshold: any failure)" in card["title"]
    body = _body(inbox.mails[0])
    assert "First record errors:" in body and first_error[:80] in body
    assert "bcdv errors list -m CUSTOMER" in body
