"""Alerts through a real SMTP server (aiosmtpd) and a real HTTP receiver: one message per
failed run, one per run over the failed-records threshold, none for a clean run."""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Iterator
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Inbox:
    """What the SMTP server and the webhook receiver got."""

    def __init__(self) -> None:
        self.mails: list[Any] = []
        self.posts: list[dict[str, Any]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.mails.append(message_from_bytes(envelope.content))
        return "250 OK"


@pytest.fixture
def inbox(sync_env, monkeypatch: pytest.MonkeyPatch) -> Iterator[Inbox]:
    from aiosmtpd.controller import Controller

    box = Inbox()
    smtp = Controller(box, hostname="127.0.0.1", port=_free_port())
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
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("AIRFLOW_CONN_BCDV_SMTP", json.dumps({
        "conn_type": "smtp", "host": "127.0.0.1", "port": smtp.port,
        "extra": {"disable_ssl": True, "disable_tls": True, "from_email": "bcdv@example.com"}}))
    monkeypatch.setenv("BCDV_ALERT_SMTP_CONN_ID", "bcdv_smtp")
    monkeypatch.setenv("BCDV_ALERT_EMAIL_TO", "ops@example.com, data@example.com")
    # The webhook URL as an Airflow Variable (its environment form).
    monkeypatch.setenv("AIRFLOW_VAR_BCDV_ALERT_WEBHOOK_URL",
                       f"http://127.0.0.1:{http.server_address[1]}/hook")
    try:
        yield box
    finally:
        smtp.stop()
        http.shutdown()


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


def test_run_over_the_failed_records_threshold_sends_one_teams_card(sync_env, inbox, af,
                                                                     monkeypatch) -> None:
    monkeypatch.setenv("AIRFLOW_VAR_BCDV_FAILED_RECORDS_THRESHOLD", "1")
    monkeypatch.setenv("BCDV_ALERT_WEBHOOK_FORMAT", "teams")
    run = af.mapping_dag("customer").test(run_conf={"full": True})
    assert run.state == "success", af.task_states(run)
    from bcdv.state.store import StateStore

    store = StateStore(sync_env["state_url"])
    failed = sum(j["failed"] for j in store.jobs("CUSTOMER") if j["run_id"] == run.run_id)
    assert failed >= 1
    first_error = store.errors("CUSTOMER")[0]["message"]
    assert len(inbox.mails) == 1 and len(inbox.posts) == 1
    card = inbox.posts[0]
    assert card["@type"] == "MessageCard"
    assert f"CUSTOMER: {failed} failed records (threshold 1)" in card["title"]
    body = _body(inbox.mails[0])
    assert "First record errors:" in body and first_error[:80] in body
    assert "to_business_central" in body
