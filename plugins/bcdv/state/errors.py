"""What identifies a record error across attempts (BC: the same error twice makes a record
Skipped).

The services' messages carry parts that change with every request: Business Central ends
each message with ``  CorrelationId:  <guid>.``, Dataverse adds activity ids, timestamps and
request or session numbers. Two failures are the same error when their code, field and
message agree once those parts are removed. The error row itself keeps the full text.
"""

from __future__ import annotations

import re

_GUID = r"\{?[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\}?"
_LABEL = (r"(?:correlation|activity|request|session|trace|operation|transaction|"
          r"client[- ]?request|x-ms-[a-z-]+)[ _-]?(?:id|number|no\.?)?")
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # A labelled id, a GUID or a token with a digit: "CorrelationId:  <guid>.",
    # "ActivityId: ...", "request id: 81234567", "Session ID 51235", "trace 4bf9...".
    (re.compile(rf"\b{_LABEL}\s*(?:[:=#]\s*)?(?:{_GUID}|(?=[0-9A-Za-z_-]*\d)[0-9A-Za-z_-]+)\.?",
                re.IGNORECASE), " "),
    # Timestamps: ISO 8601 (any precision, offset or Z) and US-style dates with a time.
    (re.compile(r"\b(?:time ?stamp|date)\s*[:=]\s*", re.IGNORECASE), " "),
    (re.compile(r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?"
                r"(?:Z|[+-]\d{2}:?\d{2})?"), "<time>"),
    (re.compile(r"\b\d{1,2}/\d{1,2}/\d{2,4}(?:,?\s+\d{1,2}:\d{2}(?::\d{2})?(?:\s*[AP]M)?)?",
                re.IGNORECASE), "<time>"),
    (re.compile(r"\b\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?(?:\s*[AP]M)?", re.IGNORECASE), "<time>"),
    # Ids without a label: GUIDs and long hex or digit runs (trace ids, ticks, epoch ms).
    (re.compile(_GUID), "<id>"),
    (re.compile(r"\b(?![0-9a-fA-F]*\b0x)[0-9a-fA-F]{16,}\b"), "<id>"),
    (re.compile(r"\b\d{10,}\b"), "<id>"),
)
_SPACES = re.compile(r"\s+")


def normalise_message(message: str | None) -> str:
    """``message`` without the parts that change with every request (ids, timestamps),
    whitespace collapsed and trailing punctuation dropped."""
    text = message or ""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    text = _SPACES.sub(" ", text).strip()
    # Removing a trailing id leaves its sentence's punctuation behind: ". ." or ",".
    text = re.sub(r"(?:\s*[.,;:])+$", "", text)
    return re.sub(r"\s+([.,;:])", r"\1", text)


def error_identity(message: str | None, *, code: str | None = None,
                   field: str | None = None) -> str:
    """The key two failures of a record are compared by: code, field and normalised
    message (see ``normalise_message``)."""
    return "\x1f".join((code or "", field or "", normalise_message(message)))


def same_error(first: str | None, second: str | None) -> bool:
    """Whether two error messages are the same error (both present, same identity)."""
    return bool(first) and bool(second) and error_identity(first) == error_identity(second)
