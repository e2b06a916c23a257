"""Fixtures for running the DAGs with ``dag.test()`` against the emulators.

Each pytest-xdist worker gets its own SQLite metadata database (set before Airflow is
imported), migrated once per session.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")
# Per process: concurrent pytest sessions in one checkout never share a SQLite database.
META_DB = ROOT / ".airflow" / f"tests-{WORKER}-{os.getpid()}.db"
if "airflow" not in sys.modules:  # Airflow reads its configuration once, at import
    os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{META_DB}"


@pytest.fixture(scope="session")
def airflow_db() -> Iterator[str]:
    """A migrated metadata database for this worker, removed at the end of the session."""
    META_DB.parent.mkdir(parents=True, exist_ok=True)
    exe = Path(sys.executable).with_name("airflow")
    proc = subprocess.run([str(exe), "db", "migrate"], env=dict(os.environ),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    yield os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    for suffix in ("", "-wal", "-shm"):
        Path(f"{META_DB}{suffix}").unlink(missing_ok=True)


@pytest.fixture
def sync_env(airflow_db: str, tmp_path: Path,
             monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """Emulators with the demo data, Airflow connections to them, a fresh state store and
    staging directory; fast retries (1 retry after 1 s)."""
    from bcdv.airflow.connections import connection_env
    from bcdv_emulators.testing import run_emulators

    state = f"sqlite:///{tmp_path / 'state.db'}"
    with run_emulators(tmp_path / "emulators", seed="demo") as endpoints:
        env = {**connection_env(endpoints), "BCDV_STATE_URL": state,
               "BCDV_STAGING_DIR": str(tmp_path / "staging"),
               "BCDV_MAPPINGS_DIR": str(ROOT / "include" / "mappings"),
               "BCDV_TASK_RETRIES": "1", "BCDV_RETRY_DELAY_SECONDS": "1"}
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        for key in list(os.environ):
            if key.startswith(("BCDV_ALERT_", "AIRFLOW_VAR_BCDV_")) or key in (
                    "BCDV_ENDPOINTS", "BCDV_FAILED_RECORDS_THRESHOLD"):
                monkeypatch.delenv(key)
        yield {"endpoints": endpoints, "state_url": state, "tmp": tmp_path}


def mapping_dag(name: str):  # type: ignore[no-untyped-def]
    """Build a mapping DAG now (the environment of the test applies)."""
    from bcdv.airflow.dag_factory import mapping_dag as build

    return build(f"{name}.yaml", dag_file=str(ROOT / "dags" / f"bcdv_sync_{name}.py"))


def operation_dag(kind: str):  # type: ignore[no-untyped-def]
    """Build bcdv_full_sync / bcdv_sync_record / bcdv_sync_all_modified now."""
    from bcdv.airflow import operation_dags

    builder = getattr(operation_dags, f"{kind}_dag")
    return builder(dag_file=str(ROOT / "dags" / f"bcdv_{kind}.py"))


def task_states(dag_run: Any) -> dict[str, str]:
    """task id (with map index) -> state of a finished run."""
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = dag_run.get_task_instances(session=session)
        return {(t.task_id if t.map_index < 0 else f"{t.task_id}[{t.map_index}]"): str(t.state)
                for t in tis}


@pytest.fixture
def af():  # type: ignore[no-untyped-def]
    """The helpers above, for tests (conftest modules are not importable by name)."""
    from types import SimpleNamespace

    return SimpleNamespace(mapping_dag=mapping_dag, operation_dag=operation_dag,
                           task_states=task_states)


# -- the alert receivers -----------------------------------------------------------------
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
    """A real SMTP server and webhook receiver configured as the alert channels (mail to two
    recipients; the webhook URL as an Airflow Variable)."""
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
