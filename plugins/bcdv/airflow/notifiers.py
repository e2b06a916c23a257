"""Alerts: one message per failed run.

A run whose records failed beyond a mapping's threshold (default: any new failure) fails in
its last task, ``check_failed_records`` (see :func:`bcdv.airflow.dag_factory.outcome_check`),
so it is a failed run like any other. The DAGs attach :class:`BcdvAlertNotifier` (kind
``failure``) as their DAG-level ``on_failure_callback``, which runs once per DAG run after
retries are exhausted: a failed run sends exactly one message, whichever tasks failed. The
message names the DAG, run, mappings, each pass's counters (from the state store's job log of
this run id) and the first record errors and task error. Dry runs never fail the check, so
they never alert. (Kind ``threshold``, an ``on_success_callback`` alerting a successful run
whose failed records reach a configured threshold, remains for users' own DAGs; the shipped
DAGs no longer need it.)

Configured without code, each key read from an Airflow Variable first, then from the
environment variable of the same name in upper case:

==============================  =================================================================
``bcdv_alert_email_to``          recipients, comma separated (no e-mail when empty)
``bcdv_alert_smtp_conn_id``      SMTP connection (default ``smtp_default``; extras disable_ssl,
                                 disable_tls, from_email as in the SMTP provider)
``bcdv_alert_webhook_url``       webhook URL (Slack incoming webhook, Teams connector, any)
``bcdv_alert_webhook_conn_id``   or a connection holding it (host = URL, or extra ``url``)
``bcdv_alert_webhook_format``    ``slack`` (``{"text": ...}``, default) or ``teams`` (MessageCard)
``bcdv_failed_records_threshold``  failed records per mapping and run that fail the run (and so
                                 alert) when the mapping has no
                                 ``alerts.failed_records_threshold``; default 0: any failure
==============================  =================================================================
"""

from __future__ import annotations

import json
import logging
import smtplib
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from airflow.sdk import BaseNotifier

log = logging.getLogger(__name__)
MAX_ERRORS = 5


def setting(key: str, default: str | None = None) -> str | None:
    """An alert setting: Airflow Variable ``key``, else the settings' ``KEY`` (environment),
    else ``default``."""
    value: Any = None
    try:
        from airflow.sdk import Variable

        value = Variable.get(key, default=None)
    except Exception:  # no Variable backend here (e.g. outside a task): env only
        value = None
    if value in (None, ""):  # the Variable from its env form, where no backend is reachable
        from bcdv.airflow.connections import airflow_env
        from bcdv.settings import load_settings

        value = (airflow_env(f"AIRFLOW_VAR_{key.upper()}")
                 or load_settings().alerts.get(key.lower()))
    return str(value) if value not in (None, "") else default


# -- what happened in a run -----------------------------------------------------------------
@dataclass
class RunSummary:
    """Per-mapping counters and the first errors of one DAG run, from the state store."""

    passes: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    task_error: str | None = None
    failed_task: str | None = None
    failed_message: str | None = None

    def failed_by_mapping(self) -> dict[str, int]:
        """Failed records per mapping (real passes; a dry run's planned failures are not)."""
        out: dict[str, int] = {}
        for p in self.passes:
            if not p.get("dry_run"):
                out[p["mapping"]] = out.get(p["mapping"], 0) + int(p.get("failed") or 0)
        return out


def _error_file(dag_id: str, run_id: str) -> Path:
    from bcdv.settings import load_settings

    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{dag_id}__{run_id}")
    return load_settings().staging_dir / "_task_errors" / f"{safe}.json"


def record_task_error(dag_id: str, run_id: str, task_id: str, exc: BaseException) -> None:
    """Keep a failed task's error for the run's alert (the latest one; secrets masked)."""
    from bcdv.airflow.hooks import safe_message

    path = _error_file(dag_id, run_id)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"task_id": task_id, "message": safe_message(exc)}))
    except OSError:
        log.warning("could not keep the task error for the alert", exc_info=True)


def run_summary(dag_id: str, run_id: str) -> RunSummary:
    """Counters and first errors of a run (every mapping it synchronised)."""
    from bcdv.airflow.hooks import state_url
    from bcdv.state.store import StateStore

    summary = RunSummary()
    try:
        store = StateStore(state_url())
        jobs = [j for j in store.jobs(None, limit=2000) if j.get("run_id") == run_id]
        summary.passes = [j for j in reversed(jobs) if j.get("type") != "coupling"]
        job_ids = {j["id"] for j in jobs}
        for name in dict.fromkeys(j["mapping"] for j in summary.passes):
            summary.errors += [e for e in store.errors(name, limit=500)
                               if e.get("job_id") in job_ids]
        summary.errors = summary.errors[:MAX_ERRORS]
    except Exception as exc:  # the alert still goes out, saying what it could not read
        summary.task_error = f"(state store not readable: {type(exc).__name__})"
    path = _error_file(dag_id, run_id)
    if path.exists():
        data = json.loads(path.read_text())
        summary.task_error = f"{data['task_id']}: {data['message']}"
        summary.failed_task = str(data["task_id"])
        summary.failed_message = str(data["message"])
    return summary


def format_message(title: str, summary: RunSummary, mappings: list[str]) -> str:
    """The plain-text alert."""
    lines = [title]
    names = list(dict.fromkeys([*mappings, *(p["mapping"] for p in summary.passes)]))
    if names:
        lines.append(f"Mapping(s): {', '.join(names)}")
    for p in summary.passes:
        counts = " | ".join(f"{k} {p.get(k) or 0}" for k in
                            ("inserted", "modified", "unchanged", "skipped", "failed"))
        lines.append(f"- {p['mapping']} {p['direction']} ({p.get('status')}): {counts}")
    if summary.task_error:
        lines.append(f"Task error: {summary.task_error}")
    if summary.errors:
        lines.append("First record errors:")
        for e in summary.errors:
            lines.append(f"- {e['mapping']} {e['direction']} {e['source_id']}: "
                         f"{str(e['message'])[:300]}")
    return "\n".join(lines)


def failure_title(dag_id: str, run_id: str, summary: RunSummary, ti: Any = None) -> str:
    """The subject of a failed run's alert; a run failed by its records says so."""
    from bcdv.airflow.tasks import CHECK_TASK

    if summary.failed_task == CHECK_TASK and summary.failed_message:
        reason = summary.failed_message.split(". ", 1)[0]
        reason = reason.split("Exception: ", 1)[-1]  # the exception's class name is noise
        return f"bcdv: {dag_id} run {run_id} failed: {reason}"
    task = getattr(ti, "task_id", None) if ti is not None else None
    return f"bcdv: {dag_id} run {run_id} failed" + (f" (task {task})" if task else "")


# -- delivery -----------------------------------------------------------------------------
def send_email(subject: str, body: str) -> bool:
    """Send through the configured SMTP connection; False when no recipients are set."""
    recipients = [r.strip() for r in (setting("bcdv_alert_email_to") or "").split(",")
                  if r.strip()]
    if not recipients:
        return False
    from airflow.sdk import BaseHook

    from bcdv.airflow import masking

    masking.install()
    conn = BaseHook.get_connection(setting("bcdv_alert_smtp_conn_id", "smtp_default"))
    extra = conn.extra_dejson or {}
    msg = EmailMessage()
    msg["Subject"] = subject
    msg["From"] = extra.get("from_email") or conn.login or "bcdv@localhost"
    msg["To"] = ", ".join(recipients)
    msg.set_content(body)
    use_ssl = not _flag(extra.get("disable_ssl"))
    port = conn.port or (465 if use_ssl else 25)
    smtp_cls = smtplib.SMTP_SSL if use_ssl else smtplib.SMTP
    with smtp_cls(conn.host or "localhost", port, timeout=30) as smtp:
        if not use_ssl and not _flag(extra.get("disable_tls")):
            smtp.starttls()
        if conn.login and conn.password:
            smtp.login(conn.login, conn.password)
        smtp.send_message(msg)
    return True


def _flag(value: Any) -> bool:
    return str(value).lower() in ("1", "true", "yes", "on")


def webhook_url() -> str | None:
    """The webhook URL: Variable/env ``bcdv_alert_webhook_url`` or the connection's."""
    url = setting("bcdv_alert_webhook_url")
    if url:
        return url
    conn_id = setting("bcdv_alert_webhook_conn_id")
    if not conn_id:
        return None
    from airflow.sdk import BaseHook

    from bcdv.airflow import masking

    masking.install()
    conn = BaseHook.get_connection(conn_id)
    extra = conn.extra_dejson or {}
    if extra.get("url"):
        return str(extra["url"])
    host = conn.host or ""
    if "://" in host:
        return host
    port = f":{conn.port}" if conn.port else ""
    return f"{conn.schema or 'https'}://{host}{port}"


def webhook_payload(title: str, body: str, fmt: str) -> dict[str, Any]:
    """Slack-compatible ``{"text": ...}`` or a Teams MessageCard."""
    if fmt == "teams":
        return {"@type": "MessageCard", "@context": "https://schema.org/extensions",
                "summary": title, "themeColor": "D13438", "title": title,
                "text": body.replace("\n", "<br>")}
    return {"text": body}


def send_webhook(title: str, body: str) -> bool:
    """POST the alert; False when no webhook is configured."""
    url = webhook_url()
    if not url:
        return False
    import requests

    fmt = (setting("bcdv_alert_webhook_format", "slack") or "slack").lower()
    resp = requests.post(url, json=webhook_payload(title, body, fmt), timeout=30)
    resp.raise_for_status()
    return True


def deliver(title: str, body: str) -> list[str]:
    """Send by every configured channel; a channel's failure does not stop the others."""
    sent = []
    for name, send in (("email", send_email), ("webhook", send_webhook)):
        try:
            if send(title, body):
                sent.append(name)
        except Exception as exc:
            log.error("bcdv alert by %s failed: %s", name, type(exc).__name__)
    log.info("bcdv alert %r sent by: %s", title, ", ".join(sent) or "nothing configured")
    return sent


# -- the notifier -----------------------------------------------------------------------------
class BcdvAlertNotifier(BaseNotifier):
    """DAG-level callback: ``kind="failure"`` alerts a failed run; ``kind="threshold"``
    alerts a successful run whose failed records reach a mapping's threshold.

    Args:
        kind: ``failure`` or ``threshold``.
        mappings: the mapping names the DAG synchronises (for the message).
        thresholds: per mapping, its ``alerts.failed_records_threshold`` (None = use the
            ``bcdv_failed_records_threshold`` setting).
    """

    def __init__(self, kind: str = "failure", mappings: list[str] | None = None,
                 thresholds: dict[str, int | None] | None = None) -> None:
        super().__init__()
        if kind not in ("failure", "threshold"):
            raise ValueError(f"unknown alert kind {kind!r}; allowed: failure, threshold")
        self.kind = kind
        self.mappings = list(mappings or [])
        self.thresholds = dict(thresholds or {})

    def render_template_fields(self, context: Any, jinja_env: Any = None) -> None:
        """Nothing to render (no template fields); also works with a serialized DAG."""
        return None

    def notify(self, context: Any) -> None:
        """Build the message from the run's records and send it (at most once per call)."""
        dag = context.get("dag")
        dag_id = getattr(dag, "dag_id", None) or str(context.get("dag_id", "?"))
        run_id = str(context.get("run_id") or getattr(context.get("dag_run"), "run_id", ""))
        summary = run_summary(dag_id, run_id)
        if self.kind == "failure":
            title = failure_title(dag_id, run_id, summary, context.get("ti"))
        else:
            over = self.over_threshold(summary)
            if not over:
                return
            detail = ", ".join(f"{m}: {n} failed records (threshold {t})"
                               for m, (n, t) in over.items())
            title = f"bcdv: {dag_id} run {run_id}: {detail}"
        body = format_message(title, summary, self.mappings)
        if context.get("reason") and self.kind == "failure":
            body += f"\nReason: {context['reason']}"
        deliver(title, body)

    def over_threshold(self, summary: RunSummary) -> dict[str, tuple[int, int]]:
        """Mappings whose failed records in this run reach their threshold."""
        default = setting("bcdv_failed_records_threshold")
        out: dict[str, tuple[int, int]] = {}
        for name, failed in summary.failed_by_mapping().items():
            limit = self.thresholds.get(name) or (int(default) if default else None)
            if limit and failed >= limit:
                out[name] = (failed, limit)
        return out


def alert_callbacks(mappings: list[str], thresholds: dict[str, int | None]) -> dict[str, Any]:
    """The DAG keyword arguments that attach both alerts."""
    return {"on_failure_callback": BcdvAlertNotifier("failure", mappings, thresholds),
            "on_success_callback": BcdvAlertNotifier("threshold", mappings, thresholds)}
