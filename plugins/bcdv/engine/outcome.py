"""A failed record's fate: failed, or Skipped after the same error twice (BC's rule).

The one place the rule lives. The plan applies it to the failures it decides itself (an
unresolved conflict, values that cannot be transferred); the load stage applies it to the
failures the service answers. The state store only records what it is told.
"""

from __future__ import annotations

from typing import Literal

from bcdv.state.errors import same_error

SKIPPED_NOTE = " (the same error twice: the record is now Skipped)"


def failure_result(failed_before: bool, prior_error: str | None,
                   error: str) -> Literal["failed", "skipped"]:
    """``skipped`` when the pair's previous sync in this direction failed with the same error
    (the same by ``bcdv.state.errors.error_identity``, not by raw text: every API answer
    carries its own correlation id), else ``failed``."""
    return "skipped" if failed_before and same_error(prior_error, error) else "failed"


def skipped_message(error: str) -> str:
    """The message of a failure that made its coupling Skipped."""
    return f"{error}{SKIPPED_NOTE}"
