"""Secrets and tokens never reach a log record, at any level.

The clients register the client secret and every token they obtain; :func:`install` makes
each log record of the process (ours, urllib3's, msal's, requests', Airflow's stdlib loggers)
pass through :func:`redact` when it is created, whichever handler later writes it. Bearer
tokens, JWTs and ``client_secret=...``-style pairs are redacted even when not registered.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any
from urllib.parse import quote_plus

MASK = "***"
_MIN_SECRET = 6  # shorter values would mask ordinary words

_BEARER = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9\-._~+/]+=*")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
_PAIRS = re.compile(r"(?i)(\b(?:client_secret|access_token|refresh_token|id_token|"
                    r"client_assertion|password)[\"']?\s*[=:]\s*[\"']?)[^&\s\"',;}]+")

_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None
_lock = threading.Lock()


def register_secret(value: str | None) -> None:
    """Redact ``value`` (and its URL-encoded form) from every log record from now on."""
    global _pattern
    if not value or len(value) < _MIN_SECRET:
        return
    encoded = quote_plus(value, safe="")
    forms = {value, quote_plus(value), encoded, encoded.replace("~", "%7E")}
    with _lock:
        if forms <= _secrets:
            return
        _secrets.update(forms)
        ordered = sorted(_secrets, key=len, reverse=True)
        _pattern = re.compile("|".join(re.escape(s) for s in ordered))


def redact(text: str) -> str:
    """``text`` with registered secrets, bearer tokens, JWTs and secret pairs masked."""
    pattern = _pattern
    if pattern is not None:
        text = pattern.sub(MASK, text)
    text = _BEARER.sub(lambda m: m.group(1) + MASK, text)
    text = _JWT.sub(MASK, text)
    return _PAIRS.sub(lambda m: m.group(1) + MASK, text)


def scrub(record: logging.LogRecord) -> None:
    """Redact a record in place: its formatted message and its exception text."""
    try:
        message = record.getMessage()
    except Exception:  # a broken format string: logging reports it itself
        return
    clean = redact(message)
    if clean != message:
        record.msg, record.args = clean, None
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)


class RedactingFilter(logging.Filter):
    """A logging filter that redacts each record (never drops one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        scrub(record)
        return True


_FILTER = RedactingFilter()


def install() -> None:
    """Redact every log record of the process from now on (idempotent).

    A record factory sees records of every logger whatever its handlers; the filter is also
    put on the root logger's handlers for records made by an earlier factory.
    """
    with _lock:
        current = logging.getLogRecordFactory()
        if not getattr(current, "_bcdv_redacting", False):
            def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
                record = current(*args, **kwargs)
                scrub(record)
                return record

            factory._bcdv_redacting = True  # type: ignore[attr-defined]
            logging.setLogRecordFactory(factory)
    for handler in logging.getLogger().handlers:
        if _FILTER not in handler.filters:
            handler.addFilter(_FILTER)
