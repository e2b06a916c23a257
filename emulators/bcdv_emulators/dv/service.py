"""Dataverse Web API v9.2 emulator: routing, auth, reads, paging, annotations.

Routes under ``/api/data/v9.2/`` (v9.0 and v9.1 are accepted too): service document,
``$metadata``, ``WhoAmI``, ``$batch``, ``EntityDefinitions``, ``{set}``, ``{set}(<guid>)``,
``{set}(<altkey>='v')``, ``{set}/$count``, ``{set}/Microsoft.Dynamics.CRM.<Bulk>Multiple``,
``{set}(<id>)/<column>`` and ``{set}(<id>)/<nav>/$ref``.

Options:

- ``dv_alternate_keys``: {"accounts": [["accountnumber"]], ...} alternate keys (none by
  default, as in a fresh org; also settable with ``PUT /_emulator/keys``).
- ``dv_maxpagesize_over_limit``: ``"cap"`` (default, pages of 5,000) or ``"400"``.
"""
from __future__ import annotations

import json
import re
import uuid
from typing import Any
from urllib.parse import quote, unquote

from bcdv_emulators.base import Req, Resp, Service, Throttling, json_resp
from bcdv_emulators.config import TENANT_ID, Settings
from bcdv_emulators.db import Database
from bcdv_emulators.dv import schema
from bcdv_emulators.dv.schema import BY_SET, EntityDef
from bcdv_emulators.dv.values import (
    FORMATTED,
    LOOKUP_NAME,
    NAV_NAME,
    SUCCESS_CT,
    DVError,
    error_resp,
    formatted,
    segment_not_found,
    to_wire,
    wants,
)
from bcdv_emulators.model import Prop
from bcdv_emulators.odata import GUID_RE, Compiler, Dialect, QueryError, parse_orderby, parse_select
from bcdv_emulators.tokens import TokenAuthority

MAX_PAGE = 5000
SEGMENT_RE = re.compile(r"^([A-Za-z_$][\w.$]*)(?:\((.*)\))?$", re.S)
KEY_PART_RE = re.compile(r"\s*([A-Za-z_]\w*)\s*=\s*('(?:[^']|'')*'|[^,]+)\s*(?:,|$)")
QUERY_OPTIONS = {"$select", "$filter", "$orderby", "$top", "$count", "$expand", "$skiptoken",
                 "$deltatoken", "$format", "$apply", "$skip"}
THROTTLE_MESSAGES = {
    "requests": ("0x80072322", "Number of requests exceeded the limit of {requests} over time "
                               "window of {window} seconds."),
    "execution": ("0x80072321", "Combined execution time of incoming requests exceeded limit of "
                                "{ms:,} milliseconds over time window of {window} seconds. "
                                "Decrease number of concurrent requests or reduce the duration "
                                "of requests and try again later."),
    "concurrent": ("0x80072326", "Number of concurrent requests exceeded the limit of "
                                 "{concurrent}."),
}


class DVService(Service):
    """The Dataverse emulator."""

    name = "dataverse"

    def __init__(self, settings: Settings, authority: TokenAuthority) -> None:
        super().__init__(settings, Throttling(requests=6000, window_seconds=300,
                                              execution_ms=1_200_000, concurrent=52))
        self.authority = authority
        # modifiedon: a delta read costs what it returns (see bc/schema.py INDEXES)
        self.db = Database(settings.data_dir / "dv.sqlite", schema.ENTITIES, nocase=True,
                           indexes={e.set_name: [("modifiedon",)] for e in schema.ENTITIES
                                    if "modifiedon" in e.by_name})
        self.db.conn.execute("CREATE TABLE IF NOT EXISTS _deleted (entity TEXT, id TEXT, "
                             "vn INTEGER)")
        self.db.conn.execute("CREATE INDEX IF NOT EXISTS ix_deleted ON _deleted(entity, vn)")
        self.alt_keys: dict[str, list[list[str]]] = {
            k: [list(x) for x in v]
            for k, v in dict(settings.option("dv_alternate_keys", {})).items()}
        self.index_keys()
        from bcdv_emulators.dv.writes import Writer
        self.writer = Writer(self)

    def index_keys(self) -> None:
        """An SQLite index per alternate key, so key lookups stay O(log n) in bulk upserts."""
        for set_name, keys in self.alt_keys.items():
            ent = BY_SET.get(set_name)
            for cols in keys:
                if ent is None or any(c not in ent.by_name for c in cols):
                    raise ValueError(f"invalid alternate key {set_name}{cols}")
                name = f"ak_{set_name}_{'_'.join(cols)}"
                with self.db.lock:
                    self.db.conn.execute(f'CREATE INDEX IF NOT EXISTS "{name}" ON "{set_name}" '
                                         f'({", ".join(chr(34) + c + chr(34) for c in cols)})')

    # --- hooks ----------------------------------------------------------------------------
    def now_ms(self) -> int:
        """Service clock, whole seconds, in epoch ms."""
        return int(self.state.now()) * 1000

    def has_data(self) -> bool:
        """True once a seed was loaded."""
        return self.db.count("businessunits") > 0

    def reset_data(self, seed: str) -> None:
        """Wipe and seed."""
        from bcdv_emulators.seeds import seed_dv
        self.db.wipe()
        with self.db.tx():
            seed_dv(self.db, seed)

    def records(self, entity: str) -> list[dict[str, Any]] | None:
        """All rows of an entity set as served."""
        ent = BY_SET.get(entity)
        if ent is None:
            return None
        return [self.to_wire(ent, r) for r in self.db.select(ent.set_name,
                                                             order=f'"{ent.key}"')]

    def error(self, status: int, code: str, message: str,
              headers: list[tuple[str, str]] | None = None) -> Resp:
        """Dataverse error shape."""
        return error_resp(status, code, message, headers)

    def fault_error(self, status: int) -> Resp:
        """Injected faults."""
        if status == 429:
            return self.throttle_error("requests", self.state.faults.retry_after)
        msgs = {500: "An unexpected error occurred.", 502: "Bad Gateway",
                503: "The service is temporarily unavailable. Please try again later.",
                504: "The request timed out."}
        return error_resp(status, "0x80040216" if status == 500 else "0x80040265",
                          msgs.get(status, "Injected fault."))

    def throttle_error(self, facet: str, retry_after: int) -> Resp:
        """Service protection 429 with the documented code and message."""
        t = self.state.throttling
        code, msg = THROTTLE_MESSAGES[facet]
        return error_resp(429, code, msg.format(requests=t.requests, window=int(t.window_seconds),
                                                ms=t.execution_ms, concurrent=t.concurrent),
                          [("Retry-After", str(retry_after))])

    def caller(self, req: Req) -> str:
        """Limits are per user: key on the bearer."""
        auth = req.header("authorization") or ""
        return auth[-32:] if auth else "anonymous"

    def extra_headers(self, req: Req, resp: Resp) -> list[tuple[str, str]]:
        """Headers of real Dataverse responses: the service protection budget left in the
        caller's window, after this request (Learn: api-limits, "HTTP response headers"), and
        the recommended degree of parallelism (send-parallel-requests); formats as in the
        WhoAmI answer Learn shows (webapi/use-ps-and-vscode-web-api: ``x-ms-dop-hint: 48``,
        ``x-ms-ratelimit-time-remaining-xrm-requests: 1,200.00``,
        ``x-ms-ratelimit-burst-remaining-xrm-requests: 5999``)."""
        left, secs = self.remaining(self.caller(req))
        rid = str(uuid.uuid4())
        return [("OData-Version", "4.0"), ("REQ_ID", rid), ("x-ms-service-request-id", rid),
                ("x-ms-ratelimit-burst-remaining-xrm-requests", str(left)),
                ("x-ms-ratelimit-time-remaining-xrm-requests", f"{secs:,.2f}"),
                ("x-ms-dop-hint", str(self.state.throttling.recommended_dop())),
                ("Set-Cookie", "ARRAffinity=" + uuid.uuid4().hex * 2 + "; path=/; secure; "
                               "HttpOnly"),
                ("Cache-Control", "no-cache"), ("Allow", "OPTIONS,GET,HEAD,POST")]

    def _admin(self, req: Req) -> Resp:
        if req.path.rstrip("/") == "/_emulator/keys":
            if req.method == "PUT":
                try:
                    doc = json.loads(req.body or b"{}")
                    self.alt_keys = {k: [list(x) for x in v] for k, v in doc.items()
                                     if k in BY_SET}
                    self.index_keys()
                except (ValueError, TypeError, AttributeError):
                    return json_resp(400, {"error": "body must be {set: [[columns]]}"})
            return json_resp(200, self.alt_keys)
        return super()._admin(req)

    # --- serialisation --------------------------------------------------------------------
    def app_user(self, req: Req) -> dict[str, Any]:
        """The systemuser of the calling application."""
        appid = (req.claims or {}).get("appid", "")
        rows = self.db.select("systemusers", '"applicationid" = ?', (appid,), limit=1)
        if not rows:
            raise DVError(403, "0x80072560", f"The user is not a member of the organization. "
                                             f"Application {appid} has no application user.")
        return self._impersonated(req) or rows[0]

    def _impersonated(self, req: Req) -> dict[str, Any] | None:
        """Impersonation (Dataverse's CallerObjectId / MSCRMCallerID headers): the request
        runs as that systemuser, so modifiedby/createdby name it. The application user holds
        the act-on-behalf privilege (System Administrator role) in the emulated org."""
        object_id = req.header("callerobjectid")
        user_id = req.header("mscrmcallerid")
        if not (object_id or user_id):
            return None
        column, value = (("azureactivedirectoryobjectid", object_id) if object_id
                         else ("systemuserid", user_id))
        value = (value or "").strip().strip("{}").lower()
        rows = self.db.select("systemusers", f'"{column}" = ?', (value,), limit=1)
        if not rows:
            raise DVError(404, "0x80040217",
                          f"systemuser With {'ObjectId' if object_id else 'Id'} = {value} "
                          "Does Not Exist")
        if rows[0].get("isdisabled"):
            raise DVError(403, "0x8004e308",
                          f"The user with SystemUserId={rows[0]['systemuserid']} is disabled.")
        return rows[0]

    def to_wire(self, ent: EntityDef, row: dict[str, Any], select: list[Any] | None = None,
                annotations: list[str] | None = None) -> dict[str, Any]:
        """Stored row -> entity JSON (``@odata.etag`` first, PK always present)."""
        out: dict[str, Any] = {}
        if "versionnumber" in ent.by_name:
            out["@odata.etag"] = f'W/"{row.get("versionnumber")}"'
        props = select if select else [p for p in ent.props if not p.hidden]
        symbol = "$"
        if annotations and row.get("_transactioncurrencyid_value"):
            cur = self.db.get("transactioncurrencies", "transactioncurrencyid",
                              row["_transactioncurrencyid_value"])
            symbol = cur["currencysymbol"] if cur else "$"
        for p in props:
            value = row.get(p.column)
            if annotations:
                self._annotate(out, ent, p, row, value, annotations, symbol)
            out[p.column] = to_wire(p, value)
        if ent.key not in out:
            out[ent.key] = row[ent.key]
        return out

    def _annotate(self, out: dict[str, Any], ent: EntityDef, p: Prop, row: dict[str, Any],
                  value: Any, pats: list[str], symbol: str) -> None:
        if p.kind == "lookup":
            if value is None:
                return
            target_set = row.get(f"_{p.name}_type") or next(iter(p.targets.values()))[0]
            target = BY_SET.get(target_set)
            if target is None:
                return
            if wants(pats, FORMATTED):
                trow = self.db.get(target.set_name, target.key, value)
                if trow is not None:
                    out[f"{p.column}@{FORMATTED}"] = trow.get(target.primary_name) or ""
            if wants(pats, NAV_NAME):
                nav = next((n for n, sets in p.targets.items() if target_set in sets), p.name)
                out[f"{p.column}@{NAV_NAME}"] = nav
            if wants(pats, LOOKUP_NAME):
                out[f"{p.column}@{LOOKUP_NAME}"] = target.logical_name
            return
        if wants(pats, FORMATTED):
            text = formatted(p, value, symbol)
            if text is not None:
                out[f"{p.column}@{FORMATTED}"] = text

    # --- entry ----------------------------------------------------------------------------
    def handle(self, req: Req) -> Resp:
        """Authenticate, route and answer."""
        try:
            with self.db_lock:
                return self._route(req)
        except DVError as exc:
            return error_resp(exc.status, exc.code, exc.message, exc.headers)

    def authenticate(self, req: Req) -> None:
        """401 + WWW-Authenticate for missing, malformed, expired or wrong-audience tokens."""
        auth = req.header("authorization") or ""
        scheme, _, token = auth.partition(" ")
        claims = self.authority.verify(token.strip(), self.settings.dv_audiences) \
            if scheme.lower() == "bearer" and token.strip() else None
        if claims is None:
            raise DVError(401, "0x80072560" if token else "0x8006088a",
                          "The user is not authenticated." if not token else
                          "The access token is invalid, expired or for another resource.",
                          [("WWW-Authenticate", "Bearer authorization_uri=https://login."
                            f"microsoftonline.com/{TENANT_ID}/oauth2/authorize, resource_id="
                            f"{self.settings.dv_url}/")])
        req.claims = claims

    def _route(self, req: Req) -> Resp:
        m = re.match(r"^/api/data/v9\.[012](/.*)?$", req.path)
        if not m:
            raise DVError(404, "0x80060888", f"Resource not found for the segment "
                                             f"'{req.path.strip('/').split('/')[0]}'.")
        self.authenticate(req)
        rest = (m.group(1) or "/")[1:]
        api = req.base_url + req.path[: len(req.path) - len(m.group(1) or "")]
        return self.dispatch(req, api, rest)

    def dispatch(self, req: Req, api: str, rest: str) -> Resp:
        """Serve a path relative to the API root (also used by $batch)."""
        if rest in ("", "/"):
            return self._ok(200, {"@odata.context": f"{api}/$metadata", "value": [
                {"name": e.set_name, "kind": "EntitySet", "url": e.set_name}
                for e in schema.ENTITIES]})
        if rest == "$metadata":
            from bcdv_emulators.dv.metadata import metadata_xml
            return Resp(200, metadata_xml(self).encode(), [("Content-Type", "application/xml")])
        if rest == "WhoAmI":
            user = self.app_user(req)
            return self._ok(200, {
                "@odata.context": f"{api}/$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse",
                "BusinessUnitId": user["_businessunitid_value"], "UserId": user["systemuserid"],
                "OrganizationId": self.org_id()})
        if rest == "$batch":
            from bcdv_emulators.dv.batch import run_batch
            return run_batch(self, req, api)
        if rest.startswith("EntityDefinitions"):
            from bcdv_emulators.dv.metadata import entity_definitions
            return entity_definitions(self, req, api, rest)
        segs = [unquote(s) for s in _split_path(rest)]
        m = SEGMENT_RE.match(segs[0])
        if not m:
            raise segment_not_found(segs[0])
        name, key = m.group(1), m.group(2)
        ent = BY_SET.get(name)
        if ent is None:
            raise segment_not_found(name)
        for k, _ in req.query:
            if k.startswith("$") and k not in QUERY_OPTIONS:
                raise DVError(400, "0x80060888", f"The query parameter {k} is not supported.")
        from bcdv_emulators.dv import handlers
        return handlers.entity_request(self, req, api, ent, key, segs[1:])

    def org_id(self) -> str:
        """The organisation id."""
        return str(self.db.meta_get("organizationid", ""))

    def _ok(self, status: int, doc: Any, headers: list[tuple[str, str]] | None = None,
            entity: str = "-") -> Resp:
        body = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
        return Resp(status, body, [("Content-Type", SUCCESS_CT), *(headers or [])], entity)

    # --- keys -----------------------------------------------------------------------------
    def parse_key(self, ent: EntityDef, key: str) -> tuple[str, Any]:
        """``<guid>`` -> ("id", guid); ``col='v'[,...]`` -> ("alt", {col: value})."""
        raw = key.strip()
        if GUID_RE.match(raw):
            return "id", raw.lower()
        if raw.startswith(f"{ent.key}=") and GUID_RE.match(raw.split("=", 1)[1].strip()):
            return "id", raw.split("=", 1)[1].strip().lower()
        parts: dict[str, Any] = {}
        pos = 0
        while pos < len(raw):
            km = KEY_PART_RE.match(raw, pos)
            if not km:
                raise DVError(400, "0x80060888", "Bad Request - Error in query syntax.")
            col, val = km.group(1), km.group(2).strip()
            if val.startswith("'"):
                parts[col] = val[1:-1].replace("''", "'")
            elif re.fullmatch(r"-?\d+", val):
                parts[col] = int(val)
            elif GUID_RE.match(val):
                parts[col] = val.lower()
            else:
                raise DVError(400, "0x80060888", "Bad Request - Error in query syntax.")
            pos = km.end()
        if not parts:
            raise DVError(400, "0x80060888", "Bad Request - Error in query syntax.")
        wanted = sorted(parts)
        if not any(sorted(k) == wanted for k in self.alt_keys.get(ent.set_name, [])):
            raise invalid_key_segment(ent)
        for col in parts:
            if col not in ent.by_name:
                raise invalid_key(ent, col)
        return "alt", parts

    def find(self, ent: EntityDef, kind: str, value: Any) -> dict[str, Any] | None:
        """A row by primary or alternate key."""
        if kind == "id":
            return self.db.get(ent.set_name, ent.key, value)
        where = " AND ".join(f'"{c}" = ?' for c in value)
        rows = self.db.select(ent.set_name, where, tuple(value.values()), limit=1)
        return rows[0] if rows else None

    # --- query helpers --------------------------------------------------------------------
    def resolver(self, ent: EntityDef):  # type: ignore[no-untyped-def]
        """$select/$filter name -> Prop (lookups by ``_x_value`` only)."""
        def resolve(name: str) -> Any:
            """Column or ``_x_value`` name -> Prop (None if unknown or hidden)."""
            p = ent.by_name.get(name)
            if p is not None and p.kind != "lookup" and not p.hidden:
                return p
            p = ent.by_column.get(name)
            return p if p is not None and not p.hidden else None
        return resolve

    def query_error(self, exc: QueryError) -> DVError:
        """QueryError -> DVError (0x80060888)."""
        return DVError(400, "0x80060888", exc.message)

    def where(self, ent: EntityDef, flt: str | None) -> tuple[str, list[Any]]:
        """$filter -> SQL."""
        if flt is None:
            return "", []
        dialect = Dialect(f"Microsoft.Dynamics.CRM.{ent.logical_name}", self.resolver(ent),
                          case_insensitive=True, like_wildcards=True, query_functions=True)
        try:
            return Compiler(dialect).compile(flt)
        except QueryError as exc:
            raise self.query_error(exc) from None

    def select(self, ent: EntityDef, sel: str | None) -> list[Any] | None:
        """$select -> props."""
        if sel is None:
            return None
        try:
            return parse_select(sel, self.resolver(ent),
                                f"Microsoft.Dynamics.CRM.{ent.logical_name}") or None
        except QueryError as exc:
            raise self.query_error(exc) from None

    def orderby(self, ent: EntityDef, ob: str | None) -> list[tuple[Any, bool]]:
        """$orderby -> [(prop, desc)]."""
        if ob is None:
            return []
        try:
            return parse_orderby(ob, self.resolver(ent),
                                 f"Microsoft.Dynamics.CRM.{ent.logical_name}")
        except QueryError as exc:
            raise self.query_error(exc) from None


def invalid_key_segment(ent: EntityDef) -> DVError:
    """A key segment whose columns are not the primary key nor a defined alternate key.

    https://learn.microsoft.com/power-apps/developer/data-platform/use-alternate-key-reference-record
    """
    typ = f"Microsoft.Dynamics.CRM.{ent.logical_name}"
    return DVError(400, "0x80060888", f"The key in the request URI is not valid for resource "
                                      f"'{typ}'. Ensure that the names and number of key "
                                      f"properties match the declared or alternate key "
                                      f"properties for the resource '{typ}'.")


def invalid_key(ent: EntityDef, col: str) -> DVError:
    """A key segment naming an unknown column."""
    return DVError(400, "0x80060888", f"Could not find a property named '{col}' on type "
                                      f"'Microsoft.Dynamics.CRM.{ent.logical_name}'.")


def _split_path(rest: str) -> list[str]:
    """Split on '/' outside quotes and parentheses (alternate key values may contain '/')."""
    out, cur, depth, quoted = [], "", 0, False
    for ch in rest:
        if ch == "'" and depth:
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")":
            depth -= 1
        if ch == "/" and depth == 0 and not quoted:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    out.append(cur)
    return out


def encode_cookie(ent: EntityDef, page: int, last: str, first: str, tracking: bool,
                  extra: str = "") -> str:
    """The opaque ``$skiptoken`` paging cookie, shaped like Dataverse's."""
    inner = (f'<cookie page="{page}"><{ent.key} last="{{{last.upper()}}}" '
             f'first="{{{first.upper()}}}" />{extra}</cookie>')
    once = quote(inner, safe="")
    twice = quote(once, safe="")
    return (f'<cookie pagenumber="{page + 1}" pagingcookie="{twice}" '
            f'istracking="{"True" if tracking else "False"}" />')


def decode_cookie(token: str) -> tuple[int, str | None]:
    """-> (next page number, last key) from a ``$skiptoken``; raises DVError if malformed."""
    m = re.search(r'pagenumber="(\d+)"\s+pagingcookie="([^"]*)"', token)
    if not m:
        raise DVError(400, "0x80040203", "Invalid paging cookie.")
    inner = unquote(unquote(m.group(2)))
    lm = re.search(r'last="\{([0-9A-Fa-f-]{36})\}"', inner)
    return int(m.group(1)), lm.group(1).lower() if lm else None
