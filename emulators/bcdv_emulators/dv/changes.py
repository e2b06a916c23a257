"""Dataverse change tracking: ``Prefer: odata.track-changes`` and ``$deltatoken`` links.

Follows https://learn.microsoft.com/power-apps/developer/data-platform/use-change-tracking-synchronize-data-external-systems
and https://learn.microsoft.com/power-apps/developer/data-platform/webapi/query/page-results:

- The token is ``<versionnumber>!<MM/dd/yyyy HH:mm:ss>`` (UTC) like Dataverse's; rows whose
  version is newer come back as entities (by version), then deletions as ``$deletedEntity``
  rows. ``GET {set}/$count?$deltatoken=...`` counts those changes, not the table.
- Both the initial read and a delta read are paged like any query: pages of
  ``odata.maxpagesize`` (at most 5,000) with ``@odata.nextLink`` on every page but the last,
  and ``@odata.deltaLink`` only on the last one. The token handed out on the last page is
  the one taken on the first page, so a row changed while the client pages is reported
  (again) by the next delta read rather than lost.
- Tokens older than ``dv_change_tracking_days`` (default 7) fail, as do
  $filter/$orderby/$expand/$top. The error code for an expired or malformed token
  (0x80044352) is the emulator's choice (unverified).
"""
from __future__ import annotations

import datetime as dt
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

from bcdv_emulators.base import Req, Resp
from bcdv_emulators.dv.schema import CHANGE_TRACKED, EntityDef
from bcdv_emulators.dv.values import DVError

if TYPE_CHECKING:
    from bcdv_emulators.dv.service import DVService

TOKEN_RE = re.compile(r"^(\d+)!(\d{2})/(\d{2})/(\d{4}) (\d{2}):(\d{2}):(\d{2})$")
CURSOR_RE = re.compile(r'<tracking phase="(rows|deleted)" last="([^"]*)" issue="([^"]*)"')


def is_tracking_request(req: Req) -> bool:
    """True for a track-changes read: the preference, a delta token, or a tracking cookie."""
    return ("odata.track-changes" in req.prefer() or req.param("$deltatoken") is not None
            or 'istracking="True"' in (req.param("$skiptoken") or ""))


def _token(svc: DVService) -> str:
    vn = int(svc.db.meta_get("vn", 1000000))
    stamp = dt.datetime.fromtimestamp(svc.now_ms() // 1000, dt.timezone.utc)
    return f"{vn}!{stamp.strftime('%m/%d/%Y %H:%M:%S')}"


def _since(svc: DVService, token: str) -> int:
    """The version a delta token stands for (raises if malformed or expired)."""
    m = TOKEN_RE.match(token)
    if not m:
        raise DVError(400, "0x80044352", "The delta token is invalid.")
    month, day, year, hh, mm, ss = (int(x) for x in m.groups()[1:])
    issued = dt.datetime(year, month, day, hh, mm, ss, tzinfo=dt.timezone.utc).timestamp()
    days = float(svc.settings.option("dv_change_tracking_days", 7))
    if svc.now_ms() / 1000 - issued > days * 86400:
        raise DVError(400, "0x80044352", "The change tracking token has expired. Perform a "
                                         "full synchronization to get a new token.")
    return int(m.group(1))


def _cookie(page: int, phase: str, last: str, issue: str) -> str:
    """The ``$skiptoken`` of a tracking page, shaped like Dataverse's paging cookie."""
    inner = (f'<cookie page="{page}"><tracking phase="{phase}" last="{last}" '
             f'issue="{issue}" /></cookie>')
    twice = quote(quote(inner, safe=""), safe="")
    return f'<cookie pagenumber="{page + 1}" pagingcookie="{twice}" istracking="True" />'


def _cursor(raw: str | None) -> tuple[int, str, str, str] | None:
    """``$skiptoken`` -> (page number, phase, last key, token to issue), or None."""
    if raw is None:
        return None
    m = re.search(r'pagenumber="(\d+)"\s+pagingcookie="([^"]*)"', raw)
    cm = CURSOR_RE.search(unquote(unquote(m.group(2)))) if m else None
    if not m or not cm:
        raise DVError(400, "0x80040203", "Invalid paging cookie.")
    return int(m.group(1)), cm.group(1), cm.group(2), cm.group(3)


def _select_qs(req: Req) -> str:
    sel = req.param("$select")
    return f"$select={quote(sel, safe=',')}&" if sel else ""


def _changed(svc: DVService, ent: EntityDef, since: int, after: int, limit: int
             ) -> list[dict[str, Any]]:
    return svc.db.select(ent.set_name, '"_rv" > ? AND "_rv" > ?', (since, after), '"_rv"',
                         limit)


def _deleted(svc: DVService, ent: EntityDef, since: int, after: int, limit: int | None
             ) -> list[tuple[str, int]]:
    """Ids deleted after ``since`` (latest deletion each) that do not exist again."""
    sql = (f'SELECT id, MAX(vn) AS v FROM _deleted WHERE entity=? AND vn>? AND id NOT IN '
           f'(SELECT "{ent.key}" FROM "{ent.set_name}") GROUP BY id HAVING v>? ORDER BY v')
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    with svc.db.lock:
        return [(r[0], int(r[1])) for r in svc.db.conn.execute(
            sql, (ent.set_name, since, after)).fetchall()]


def count_changes(svc: DVService, ent: EntityDef, token: str) -> Resp:
    """``{set}/$count?$deltatoken=...``: the number of changes since the token."""
    if ent.set_name not in CHANGE_TRACKED:
        raise _not_tracked(ent)
    since = _since(svc, token)
    n = svc.db.count(ent.set_name, '"_rv" > ?', (since,)) + len(_deleted(svc, ent, since, 0,
                                                                          None))
    return Resp(200, str(n).encode(), [("Content-Type", "text/plain")], ent.set_name)


def _not_tracked(ent: EntityDef) -> DVError:
    return DVError(400, "0x80060888", f"Change tracking is not enabled for the entity "
                                      f"'{ent.logical_name}'.")


def track_changes(svc: DVService, req: Req, api: str, ent: EntityDef) -> Resp:
    """Initial (full) or delta read of a change-tracked table, one page."""
    from bcdv_emulators.dv.handlers import page_size
    if ent.set_name not in CHANGE_TRACKED:
        raise _not_tracked(ent)
    for opt in ("$filter", "$orderby", "$expand", "$top"):
        if req.param(opt) is not None:
            raise DVError(400, "0x80060888", f'The "{opt}" query parameter isn\'t supported '
                                             "when Change Tracking is enabled.")
    select = svc.select(ent, req.param("$select"))
    sel_ctx = "(" + ",".join(p.column for p in select) + ")" if select else ""
    page, headers = page_size(svc, req)
    if "odata.track-changes" in req.prefer():
        headers.insert(0, ("Preference-Applied", "odata.track-changes"))
    cursor = _cursor(req.param("$skiptoken"))
    page_no, phase, last, issue = cursor or (1, "rows", "", _token(svc))
    token = req.param("$deltatoken")
    if token is None:
        where, params = (f'"{ent.key}" > ?', [last]) if last else ("", [])
        rows = svc.db.select(ent.set_name, where, params, f'"{ent.key}"', page + 1)
        value = [svc.to_wire(ent, r, select) for r in rows[:page]]
        more = len(rows) > page
        next_cursor = ("rows", rows[page - 1][ent.key]) if more else None
        ctx = f"{api}/$metadata#{ent.set_name}{sel_ctx}"
    else:
        value, next_cursor = _delta_page(svc, api, ent, select, _since(svc, token), phase,
                                         last, page)
        ctx = f"{api}/$metadata#{ent.set_name}{sel_ctx}/$delta"
    doc: dict[str, Any] = {"@odata.context": ctx, "value": value}
    base = f"{api}/{ent.set_name}?{_select_qs(req)}"
    if next_cursor is not None:
        delta = f"$deltatoken={quote(token, safe='')}&" if token is not None else ""
        cookie = _cookie(page_no, next_cursor[0], next_cursor[1], issue)
        doc["@odata.nextLink"] = f"{base}{delta}$skiptoken={quote(cookie, safe='')}"
    else:
        doc["@odata.deltaLink"] = f"{base}$deltatoken={quote(issue, safe='')}"
    return svc._ok(200, doc, headers, ent.set_name)


def _delta_page(svc: DVService, api: str, ent: EntityDef, select: list[Any] | None,
                since: int, phase: str, last: str, page: int
                ) -> tuple[list[dict[str, Any]], tuple[str, str] | None]:
    """One page of changes: changed rows by version, then deletions."""
    value: list[dict[str, Any]] = []
    after = int(last or 0)
    if phase == "rows":
        rows = _changed(svc, ent, since, after, page + 1)
        value = [svc.to_wire(ent, r, select) for r in rows[:page]]
        if len(rows) > page:
            return value, ("rows", str(rows[page - 1]["_rv"]))
        after = 0
    room = page - len(value)
    gone = _deleted(svc, ent, since, after, room + 1)
    value += [{"@odata.context": f"{api}/$metadata#{ent.set_name}/$deletedEntity",
               "id": rid, "reason": "deleted"} for rid, _ in gone[:room]]
    if len(gone) > room:
        return value, ("deleted", str(gone[room - 1][1]) if room else str(after))
    return value, None
