"""The query parameters of the list pages: filters and paging live in the URL, so a filtered
page can be shared and every pager link keeps the filters.

``page`` (from 1) and ``size`` (one of ``views.PAGE_SIZES``) page a list; ``from`` and ``to``
are days (``YYYY-MM-DD``, UTC, inclusive); the rest are each page's own filters.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import Request

from bcdv.service import views

# One-shot parameters of a redirect after an action: never carried on to another link.
TRANSIENT = ("msg", "err", "uncoupled_bc", "uncoupled_dv")


def paging(request: Request) -> dict[str, int]:
    """``number`` and ``size`` of the requested page."""
    try:
        number = int(request.query_params.get("page") or 1)
    except ValueError:
        number = 1
    return {"number": max(1, number), "size": views.page_size(request.query_params.get("size"))}


def window(request: Request) -> tuple[datetime | None, datetime | None, str | None]:
    """The ``from``/``to`` day window, and the complaint when a value is not a day (the
    window is then not applied)."""
    try:
        since, until = views.day_window(request.query_params.get("from"),
                                        request.query_params.get("to"))
    except ValueError as exc:
        return None, None, str(exc)
    return since, until, None


def with_query(request: Request, **changes: Any) -> str:
    """This page's URL with some parameters changed (None or '' drops one); a change of
    filter goes back to page 1 unless ``page`` is given."""
    params = {k: v for k, v in request.query_params.items() if k not in TRANSIENT}
    if "page" not in changes:
        params.pop("page", None)
    for key, value in changes.items():
        if value in (None, ""):
            params.pop(key, None)
        else:
            params[key] = str(value)
    query = urlencode(params)
    path = _path(request)
    return f"{path}?{query}" if query else path


def _path(request: Request) -> str:
    """The page's path as the browser sees it (below the app's mount point)."""
    prefix = str(getattr(request.app.state, "url_prefix", "") or "")
    path = request.url.path
    return path if not prefix or path.startswith(prefix + "/") else prefix + path


def hidden_filters(request: Request, *keep: str) -> dict[str, str]:
    """The current values of some parameters, for the hidden fields of an action's form."""
    return {k: request.query_params[k] for k in keep if request.query_params.get(k)}
