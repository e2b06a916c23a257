"""Dataverse change tracking: ``Prefer: odata.track-changes`` and ``$deltatoken`` links.

The token is ``<versionnumber>!<MM/dd/yyyy HH:mm:ss>`` (UTC) like Dataverse's; rows whose
version is newer come back as entities, deletions as ``$deletedEntity`` rows. Tokens older
than ``dv_change_tracking_days`` (default 7) fail, as do $filter/$orderby/$expand/$top. The
error code for an expired token (0x80044352) is the emulator's choice (unverified).
"""
from __future__ import annotations

import datetime as dt
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from bcdv.emulators.base import Req, Resp
from bcdv.emulators.dv.schema import CHANGE_TRACKED, EntityDef
from bcdv.emulators.dv.service import MAX_PAGE, decode_cookie, encode_cookie
from bcdv.emulators.dv.values import DVError

if TYPE_CHECKING:
    from bcdv.emulators.dv.service import DVService

TOKEN_RE = re.compile(r"^(\d+)!(\d{2})/(\d{2})/(\d{4}) (\d{2}):(\d{2}):(\d{2})$")


def _token(svc: "DVService") -> str:
    vn = int(svc.db.meta_get("vn", 1000000))
    stamp = dt.datetime.fromtimestamp(svc.now_ms() // 1000, dt.timezone.utc)
    return f"{vn}!{stamp.strftime('%m/%d/%Y %H:%M:%S')}"


def _delta_link(svc: "DVService", api: str, ent: EntityDef, req: Req) -> str:
    sel = req.param("$select")
    qs = f"$select={quote(sel, safe=',')}&" if sel else ""
    return f"{api}/{ent.set_name}?{qs}$deltatoken={quote(_token(svc), safe='')}"


def track_changes(svc: "DVService", req: Req, api: str, ent: EntityDef) -> Resp:
    """Initial (full) or delta read of a change-tracked table."""
    if ent.set_name not in CHANGE_TRACKED:
        raise DVError(400, "0x80060888", f"Change tracking is not enabled for the entity "
                                         f"'{ent.logical_name}'.")
    for opt in ("$filter", "$orderby", "$expand", "$top"):
        if req.param(opt) is not None:
            raise DVError(400, "0x80060888", f'The "{opt}" query parameter isn\'t supported '
                                             "when Change Tracking is enabled.")
    select = svc.select(ent, req.param("$select"))
    sel_ctx = "(" + ",".join(p.column for p in select) + ")" if select else ""
    prefs = req.prefer()
    page = MAX_PAGE
    headers = [("Preference-Applied", "odata.track-changes")]
    if prefs.get("odata.maxpagesize", "").isdigit() and int(prefs["odata.maxpagesize"]) > 0:
        page = min(int(prefs["odata.maxpagesize"]), MAX_PAGE)
        headers.append(("Preference-Applied", f"odata.maxpagesize={page}"))
    token = req.param("$deltatoken")
    if token is None:
        where, params = "", []
        skip = req.param("$skiptoken")
        if skip is not None:
            _, last = decode_cookie(skip)
            if last:
                where, params = f'"{ent.key}" > ?', [last]
        rows = svc.db.select(ent.set_name, where, params, f'"{ent.key}"', page + 1)
        doc: dict[str, Any] = {"@odata.context": f"{api}/$metadata#{ent.set_name}{sel_ctx}",
                               "value": [svc.to_wire(ent, r, select) for r in rows[:page]]}
        if len(rows) > page:
            cookie = encode_cookie(ent, 1, rows[page - 1][ent.key], rows[0][ent.key], True)
            sel = req.param("$select")
            qs = f"$select={quote(sel, safe=',')}&" if sel else ""
            doc["@odata.nextLink"] = (f"{api}/{ent.set_name}?{qs}"
                                      f"$skiptoken={quote(cookie, safe='')}")
        else:
            doc["@odata.deltaLink"] = _delta_link(svc, api, ent, req)
        return svc._ok(200, doc, headers, ent.set_name)
    m = TOKEN_RE.match(token)
    if not m:
        raise DVError(400, "0x80044352", "The delta token is invalid.")
    since = int(m.group(1))
    month, day, year, hh, mm, ss = (int(x) for x in m.groups()[1:])
    issued = dt.datetime(year, month, day, hh, mm, ss, tzinfo=dt.timezone.utc).timestamp()
    days = float(svc.settings.option("dv_change_tracking_days", 7))
    if svc.now_ms() / 1000 - issued > days * 86400:
        raise DVError(400, "0x80044352", "The change tracking token has expired. Perform a "
                                         "full synchronization to get a new token.")
    changed = svc.db.select(ent.set_name, '"_rv" > ?', (since,), '"_rv"')
    deleted = svc.db.conn.execute("SELECT id FROM _deleted WHERE entity=? AND vn>? ORDER BY vn",
                                  (ent.set_name, since)).fetchall()
    live = {r[ent.key] for r in changed}
    value = [svc.to_wire(ent, r, select) for r in changed]
    value += [{"@odata.context": f"{api}/$metadata#{ent.set_name}/$deletedEntity",
               "id": d[0], "reason": "deleted"} for d in deleted if d[0] not in live]
    doc = {"@odata.context": f"{api}/$metadata#{ent.set_name}{sel_ctx}/$delta",
           "@odata.deltaLink": _delta_link(svc, api, ent, req), "value": value}
    return svc._ok(200, doc, headers, ent.set_name)
