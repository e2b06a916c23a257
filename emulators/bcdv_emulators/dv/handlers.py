"""Dataverse entity-set requests: list/paging, retrieve, create, update/upsert, delete."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from bcdv_emulators.base import Req, Resp
from bcdv_emulators.dv.schema import EntityDef, nav_map
from bcdv_emulators.dv.service import MAX_PAGE, decode_cookie, encode_cookie
from bcdv_emulators.dv.values import (
    DVError,
    annotation_filter,
    not_found,
    parse_json_body,
    segment_not_found,
    wants,
)

if TYPE_CHECKING:
    from bcdv_emulators.dv.service import DVService

TOTAL_COUNT = "Microsoft.Dynamics.CRM.totalrecordcount"


def _json_body(req: Req, ent: EntityDef) -> Any:
    ctype = (req.header("content-type") or "application/json").lower()
    if "json" not in ctype:
        raise DVError(415, "0x80040203", f"The content type '{ctype}' is not supported.")
    return parse_json_body(req.body, ent.set_name)


def _annotations(req: Req) -> tuple[list[str], list[tuple[str, str]]]:
    prefs = req.prefer()
    raw = prefs.get("odata.include-annotations")
    if raw is None:
        return [], []
    return annotation_filter(raw), [("Preference-Applied",
                                     f'odata.include-annotations="{raw}"')]


def entity_request(svc: DVService, req: Req, api: str, ent: EntityDef, key: str | None,
                   rest: list[str]) -> Resp:
    """Dispatch one request on an entity set."""
    m = req.method
    if key is None:
        if rest == ["$count"] and m == "GET" and req.param("$deltatoken") is not None:
            from bcdv_emulators.dv.changes import count_changes
            return count_changes(svc, ent, req.param("$deltatoken") or "")
        if rest == ["$count"] and m == "GET":
            where, params = svc.where(ent, req.param("$filter"))
            return Resp(200, str(min(svc.db.count(ent.set_name, where, params), 5000)).encode(),
                        [("Content-Type", "text/plain")], ent.set_name)
        if rest and rest[0].startswith("Microsoft.Dynamics.CRM.") and m == "POST":
            from bcdv_emulators.dv.bulk import bulk
            return bulk(svc, req, api, ent, rest[0].split(".")[-1])
        if rest:
            raise segment_not_found(rest[0])
        if m == "GET":
            from bcdv_emulators.dv.changes import is_tracking_request, track_changes
            if is_tracking_request(req):
                return track_changes(svc, req, api, ent)
            return list_rows(svc, req, api, ent)
        if m == "POST":
            return create(svc, req, api, ent)
        raise DVError(405, "0x80060888", f"The HTTP method '{m}' is not allowed on the "
                                         f"collection '{ent.set_name}'.")
    kind, kval = svc.parse_key(ent, key)
    if rest:
        return _property_request(svc, req, ent, kind, kval, rest)
    if m == "GET":
        row = svc.find(ent, kind, kval)
        if row is None:
            raise not_found(ent.logical_name, _shown(kind, kval))
        inm = req.header("if-none-match")
        ann, applied = _annotations(req)
        if inm and inm.strip() == f'W/"{row.get("versionnumber")}"' and not ann and \
                req.param("$expand") is None:
            return Resp(304, b"", [], ent.set_name)
        return _single(svc, req, api, ent, row, 200, applied)
    if m == "PATCH":
        return patch(svc, req, api, ent, kind, kval)
    if m == "DELETE":
        row = svc.find(ent, kind, kval)
        if row is None:
            raise not_found(ent.logical_name, _shown(kind, kval))
        _check_if_match(req.header("if-match"), row)
        with svc.db.tx():
            svc.writer.delete(ent, row)
        return Resp(204, b"", [], ent.set_name)
    raise DVError(405, "0x80060888", f"The HTTP method '{m}' is not allowed.")


def _shown(kind: str, kval: Any) -> str:
    return kval if kind == "id" else ",".join(f"{k}={v}" for k, v in kval.items())


def _check_if_match(header: str | None, row: dict[str, Any]) -> None:
    if header is None or header.strip() == "*":
        return
    current = f'W/"{row.get("versionnumber")}"'
    values = [v.strip() for v in header.split(",")]
    if current not in values and current[2:] not in values:
        raise DVError(412, "0x80060882", "The version of the existing record doesn't match the "
                                         "RowVersion property provided.")


def _single(svc: DVService, req: Req, api: str, ent: EntityDef, row: dict[str, Any],
            status: int, headers: list[tuple[str, str]]) -> Resp:
    select = svc.select(ent, req.param("$select"))
    ann, applied = _annotations(req)
    ctx = f"{api}/$metadata#{ent.set_name}"
    if select:
        ctx += "(" + ",".join(p.column for p in select) + ")"
    expand = parse_expand(svc, ent, req.param("$expand"))
    doc = {"@odata.context": ctx + "/$entity",
           **with_expand(svc, ent, row, select, ann, expand)}
    hdrs = [*headers, ("ETag", f'W/"{row.get("versionnumber")}"')]
    if applied and applied[0] not in hdrs:
        hdrs += applied
    return svc._ok(status, doc, hdrs, ent.set_name)


def create(svc: DVService, req: Req, api: str, ent: EntityDef) -> Resp:
    """POST: 204 + OData-EntityId, or 201 + body with return=representation."""
    user = svc.app_user(req)
    changes = svc.writer.parse_body(ent, _json_body(req, ent), creating=True)
    with svc.db.tx():
        row = svc.writer.create(ent, changes, user)
    return _written(svc, req, api, ent, row, created=True)


def _written(svc: DVService, req: Req, api: str, ent: EntityDef, row: dict[str, Any],
             created: bool) -> Resp:
    loc = f"{api}/{ent.set_name}({row[ent.key]})"
    if req.prefer().get("return") == "representation":
        return _single(svc, req, api, ent, row, 201 if created else 200,
                       [("Preference-Applied", "return=representation")])
    return Resp(204, b"", [("OData-EntityId", loc)], ent.set_name)


def patch(svc: DVService, req: Req, api: str, ent: EntityDef, kind: str, kval: Any) -> Resp:
    """PATCH: update, update-only (If-Match), create-only (If-None-Match: *) or upsert."""
    user = svc.app_user(req)
    body = _json_body(req, ent)
    if_match, if_none = req.header("if-match"), req.header("if-none-match")
    with svc.db.tx():
        row = svc.find(ent, kind, kval)
        if if_none is not None and if_none.strip() == "*" and row is not None:
            raise DVError(412, "0x80040237", "A record with matching key values already exists.")
        if row is None:
            if if_match is not None:
                raise not_found(ent.logical_name, _shown(kind, kval))
            changes = svc.writer.parse_body(ent, body, creating=True)
            new = svc.writer.create(ent, changes, user, (kind, kval))
            return _written(svc, req, api, ent, new, created=True)
        _check_if_match(if_match, row)
        changes = svc.writer.parse_body(ent, body, creating=False)
        if kind == "alt":
            for col in kval:
                changes.pop(col, None)  # key columns in the body are stripped on update
        new = svc.writer.update(ent, row, changes, user)
    return _written(svc, req, api, ent, new, created=False)


def _property_request(svc: DVService, req: Req, ent: EntityDef, kind: str, kval: Any,
                      rest: list[str]) -> Resp:
    row = svc.find(ent, kind, kval)
    if row is None:
        raise not_found(ent.logical_name, _shown(kind, kval))
    name = rest[0]
    navs = nav_map(ent)
    if len(rest) == 2 and rest[1] == "$ref" and name in navs and req.method == "DELETE":
        prop = navs[name]
        user = svc.app_user(req)
        changes: dict[str, Any] = {prop.column: None}
        if f"_{prop.name}_type" in ent.by_name:
            changes[f"_{prop.name}_type"] = None
        with svc.db.tx():
            svc.writer.update(ent, row, changes, user)
        return Resp(204, b"", [], ent.set_name)
    p = ent.by_name.get(name)
    if len(rest) != 1 or p is None or p.kind == "lookup" or p.hidden:
        raise segment_not_found(name)
    if req.method == "GET":
        from bcdv_emulators.dv.values import to_wire
        return svc._ok(200, {"value": to_wire(p, row.get(p.column))}, entity=ent.set_name)
    if req.method in ("PUT", "DELETE"):
        user = svc.app_user(req)
        value = None
        if req.method == "PUT":
            body = _json_body(req, ent)
            if not isinstance(body, dict) or "value" not in body:
                raise DVError(400, "0x80040203", "The request body must contain 'value'.")
            value = body["value"]
        changes = svc.writer.parse_body(ent, {name: value}, creating=False)
        with svc.db.tx():
            svc.writer.update(ent, row, changes, user)
        return Resp(204, b"", [], ent.set_name)
    raise DVError(405, "0x80060888", f"The HTTP method '{req.method}' is not allowed.")


def list_rows(svc: DVService, req: Req, api: str, ent: EntityDef) -> Resp:
    """GET collection with $select/$filter/$orderby/$top/$count and cookie paging.

    Paging follows
    https://learn.microsoft.com/power-apps/developer/data-platform/webapi/query/page-results:
    pages of ``odata.maxpagesize`` (at most 5,000) linked by ``@odata.nextLink``; ``$top``
    alone truncates without a nextLink, and is ignored when ``odata.maxpagesize`` is given.
    """
    if req.param("$skip") is not None:
        raise DVError(400, "0x80060888", "The query parameter $skip is not supported.")
    if req.param("$apply") is not None:
        raise DVError(400, "0x80060888", "The query parameter $apply is not supported by this "
                                         "emulator.")
    where, params = svc.where(ent, req.param("$filter"))
    select = svc.select(ent, req.param("$select"))
    order = svc.orderby(ent, req.param("$orderby"))
    top_raw = req.param("$top")
    top = None
    if top_raw is not None:
        if not top_raw.isdigit():
            raise DVError(400, "0x80060888", f"Invalid value '{top_raw}' for $top query option "
                                             "found. The $top query option requires a "
                                             "non-negative integer value.")
        top = int(top_raw)
    count_opt = (req.param("$count") or "false").lower()
    if count_opt not in ("true", "false"):
        raise DVError(400, "0x80060888", f"'{count_opt}' is not a valid count option.")
    ann, applied = _annotations(req)
    page, headers = page_size(svc, req)
    headers = list(applied) + headers
    if "odata.maxpagesize" in req.prefer():
        # "Don't use $top with the Prefer: odata.maxpagesize request header. If you include
        # both, $top is ignored." (Learn: Page results using OData)
        top = None
    cols = [(p.column, desc) for p, desc in order]
    order_sql = ", ".join(f'"{c}" {"DESC" if d else "ASC"}' for c, d in [*cols, (ent.key, False)])
    offset, page_no = 0, 1
    token = req.param("$skiptoken")
    if token is not None and top is None:
        page_no, last = decode_cookie(token)
        if cols:
            offset = (page_no - 1) * page
        elif last is not None:
            where = f"({where}) AND " if where else ""
            where += f'"{ent.key}" > ?'
            params = [*params, last]
    limit = min(top, MAX_PAGE) if top is not None else page
    rows = svc.db.select(ent.set_name, where, params, order_sql, limit + 1, offset)
    more = top is None and len(rows) > limit
    rows = rows[:limit]
    ctx = f"{api}/$metadata#{ent.set_name}"
    if select:
        ctx += "(" + ",".join(p.column for p in select) + ")"
    doc: dict[str, Any] = {"@odata.context": ctx}
    # Learn (webapi/query/count-rows): @odata.count is capped at 5,000; the totalrecordcount
    # annotations come only when odata.include-annotations asks for them (-1 without $count).
    total = -1
    if count_opt == "true":
        cwhere, cparams = svc.where(ent, req.param("$filter"))
        total = svc.db.count(ent.set_name, cwhere, cparams)
        doc["@odata.count"] = min(total, 5000)
    if wants(ann, TOTAL_COUNT):
        doc[f"@{TOTAL_COUNT}"] = min(total, 5000)
    if wants(ann, TOTAL_COUNT + "limitexceeded"):
        doc[f"@{TOTAL_COUNT}limitexceeded"] = total > 5000
    doc["@Microsoft.Dynamics.CRM.globalmetadataversion"] = "8675309"
    expand = parse_expand(svc, ent, req.param("$expand"))
    doc["value"] = [with_expand(svc, ent, r, select, ann, expand) for r in rows]
    if more and rows:
        cookie = encode_cookie(ent, page_no, rows[-1][ent.key], rows[0][ent.key], False)
        keep = [(k, v) for k, v in req.query if k != "$skiptoken"]
        qs = "&".join(f"{quote(k, safe='$')}={quote(v, safe=chr(39) + '(),:$*')}"
                      for k, v in keep)
        doc["@odata.nextLink"] = (f"{api}/{ent.set_name}?{qs + '&' if qs else ''}"
                                  f"$skiptoken={quote(cookie, safe='')}")
    resp = svc._ok(200, doc, headers, ent.set_name)
    resp.read_rows = len(rows)
    return resp


def page_size(svc: DVService, req: Req) -> tuple[int, list[tuple[str, str]]]:
    """``Prefer: odata.maxpagesize`` -> (page size, its Preference-Applied header)."""
    raw = req.prefer().get("odata.maxpagesize")
    if raw is None:
        return MAX_PAGE, []
    if not raw.isdigit() or int(raw) < 1:
        raise DVError(400, "0x80060888", f"The value '{raw}' of odata.maxpagesize is not "
                                         "valid.")
    asked = int(raw)
    if asked > MAX_PAGE and svc.settings.option("dv_maxpagesize_over_limit", "cap") == "400":
        raise DVError(400, "0x80060888", f"The maxpagesize {asked} exceeds the maximum of "
                                         f"{MAX_PAGE}.")
    page = min(asked, MAX_PAGE)
    return page, [("Preference-Applied", f"odata.maxpagesize={page}")]


def parse_expand(svc: DVService, ent: EntityDef, raw: str | None
                 ) -> list[tuple[str, Any, list[Any] | None]]:
    """$expand of single-valued navigation properties, with an optional nested $select.

    -> [(navigation name, lookup Prop, selected target props)]; collection-valued
    navigation properties are not emulated (400).
    """
    if raw is None:
        return []
    import re

    from bcdv_emulators.dv.schema import BY_SET
    navs = nav_map(ent)
    out = []
    for m in re.finditer(r"\s*([A-Za-z_]\w*)\s*(?:\(([^()]*)\))?\s*(?:,|$)", raw):
        if not m.group(0).strip():
            continue
        name, opts = m.group(1), m.group(2)
        prop = navs.get(name)
        if prop is None:
            raise DVError(400, "0x80060888", f"Could not find a property named '{name}' on type "
                                             f"'Microsoft.Dynamics.CRM.{ent.logical_name}'.")
        target = BY_SET[prop.targets[name][0]]
        select = None
        if opts:
            om = re.fullmatch(r"\s*\$select=([\w,\s]+)\s*", opts)
            if not om:
                raise DVError(400, "0x80060888", f"Only $select is supported inside $expand "
                                                 f"({name}).")
            select = svc.select(target, om.group(1))
        out.append((name, prop, select))
    if not out or sum(len(m.group(0)) for m in re.finditer(
            r"\s*([A-Za-z_]\w*)\s*(?:\(([^()]*)\))?\s*(?:,|$)", raw)) < len(raw.strip()):
        raise DVError(400, "0x80060888", f"Syntax error in $expand '{raw}'.")
    return out


def with_expand(svc: DVService, ent: EntityDef, row: dict[str, Any], select: list[Any] | None,
                ann: list[str], expand: list[tuple[str, Any, list[Any] | None]]
                ) -> dict[str, Any]:
    """Entity JSON plus expanded single-valued navigation properties (null if unset)."""
    from bcdv_emulators.dv.schema import BY_SET
    out = svc.to_wire(ent, row, select, ann)
    for name, prop, sel in expand:
        value = row.get(prop.column)
        ttype = row.get(f"_{prop.name}_type")
        target = BY_SET[prop.targets[name][0]]
        if value is None or (ttype and ttype not in prop.targets[name]):
            out[name] = None
            continue
        trow = svc.db.get(target.set_name, target.key, value)
        out[name] = svc.to_wire(target, trow, sel, ann) if trow is not None else None
    return out
