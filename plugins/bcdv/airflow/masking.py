"""Keep connection secrets out of ``airflow dags test`` / ``dag.test()`` DEBUG logs.

When a task reads a connection, Airflow asks its supervisor to mask the password by sending
a ``MaskSecret`` message. A real worker's supervisor logs such messages as "(body omitted)",
but the in-process supervisor that ``airflow dags test`` and ``dag.test()`` use logs every
message it sends at DEBUG, value included, before the value is registered with the masker:
with ``AIRFLOW__LOGGING__LOGGING_LEVEL=DEBUG`` the client secret is printed in the clear
(Airflow 3.3.2, ``InProcessSupervisorComms.send``; the drill
tests/airflow/test_secrets_in_dag_runs.py found it). ``install`` makes that one message log
its type only, as the out-of-process supervisor does; every other message is untouched.
"""

from __future__ import annotations

import threading
from typing import Any

_lock = threading.Lock()


class _BodyOmitted:
    """Stands in for the comms' logger while one MaskSecret message is sent."""

    def __init__(self, log: Any) -> None:
        self._log = log

    def debug(self, event: str, **kw: Any) -> None:
        self._log.debug(f"{event} (body omitted)",
                        msg=type(kw.get("msg")).__name__ if "msg" in kw else None)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._log, name)


def install() -> None:
    """Patch the in-process supervisor's ``send`` once per process (no-op if absent)."""
    try:
        from airflow.sdk.execution_time import supervisor
    except ImportError:  # pragma: no cover - not under Airflow
        return
    comms = getattr(supervisor, "InProcessSupervisorComms", None)
    with _lock:
        if comms is None or getattr(comms.send, "_bcdv_body_omitted", False):
            return
        original = comms.send

        def send(self: Any, msg: Any) -> Any:
            if type(msg).__name__ != "MaskSecret":
                return original(self, msg)
            saved = self.log
            self.log = _BodyOmitted(saved)
            try:
                return original(self, msg)
            finally:
                self.log = saved

        send._bcdv_body_omitted = True  # type: ignore[attr-defined]
        comms.send = send
