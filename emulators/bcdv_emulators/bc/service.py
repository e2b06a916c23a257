"""Business Central API v2.0 emulator: routing, auth, reads, paging and envelopes.

URL forms (section A.1): ``/v2.0/{tenant}/{environment}/api/v2.0/...`` and
``/v2.0/{environment}/api/v2.0/...``; company-scoped sets as ``companies({id})/customers`` or
``customers?company={id}``. A wrong environment gives the XML ``NoEnvironment`` 404.

Options:

- ``bc_maxpagesize_over_limit``: ``"cap"`` (default) serves at most 20,000 rows per page when
  ``odata.maxpagesize`` or ``$top`` ask for more; ``"413"`` answers 413 instead (section A.10
  lists 413 as possible and unverified).
"""
from __future__ import annotations

import json
import re
import uuid
from typing import Any
from urllib.parse import quote

from bcdv_emulators.base import Req, Resp, Service, Throttling, strict_json
from bcdv_emulators.bc import schema
from bcdv_emulators.bc.schema import BY_SET, NAVIGATION, EntityDef
from bcdv_emulators.bc.values import SUCCESS_CT, BCError, error_resp, etag, normalise_enum, to_wire
from bcdv_emulators.bc.writes import Writer
from bcdv_emulators.config import BC_RESOURCE, ENVIRONMENT, TENANT_DOMAIN, TENANT_ID, Settings
from bcdv_emulators.db import Database
from bcdv_emulators.odata import GUID_RE, Compiler, Dialect, QueryError, parse_orderby, parse_select
from bcdv_emulators.tokens import TokenAuthority

MAX_PAGE = 20_000
SEGMENT_RE = re.compile(r"^([A-Za-z$][\w$]*)(?:\((.*)\))?$")
QUERY_OPTIONS = {"$filter", "$select", "$expand", "$orderby", "$top", "$skip", "$count",
                 "$skiptoken", "$schemaversion", "$format"}
NO_ENV_XML = ('<error xmlns="http://docs.oasis-open.org/odata/ns/metadata"><code>NoEnvironment'
              '</code><message>Environment does not exist.</message></error>')


class BCService(Service):
    """The Business Central emulator."""

    name = "business_central"

    def __init__(self, settings: Settings, authority: TokenAuthority) -> None:
        super().__init__(settings, Throttling(requests=6000, window_seconds=300,
                                              execution_ms=0, concurrent=100, processing=5))
        self.authority = authority
        self.db = Database(settings.data_dir / "bc.sqlite", schema.ENTITIES, nocase=False,
                           scope_column="_company", indexes=schema.INDEXES)
        self.writer = Writer(self)
        from bcdv_emulators.bc.webhooks import Webhooks
        self.webhooks = Webhooks(self)

    def close(self) -> None:
        """Stop background work and close the database."""
        self.webhooks.close()
        self.db.close()

    # --- service hooks --------------------------------------------------------------------
    def now_ms(self) -> float:
        """Service clock in epoch milliseconds."""
        return self.state.now() * 1000

    def reset_data(self, seed: str) -> None:
        """Wipe and seed (see :mod:`bcdv_emulators.seeds`)."""
        from bcdv_emulators.seeds import seed_bc
        self.db.wipe()
        with self.db.tx():
            seed_bc(self.db, seed)

    def company_id(self) -> str:
        """Id of the first (seeded) company."""
        rows = self.db.select("companies", order='"name"', limit=1)
        return rows[0]["id"] if rows else ""

    def lcy_code(self, company: str) -> str:
        """The company's local currency code (General Ledger Setup)."""
        return str(self.db.meta_get(f"lcy:{company}", "USD"))

    def records(self, entity: str) -> list[dict[str, Any]] | None:
        """All rows of an entity set as served."""
        ent = BY_SET.get(entity)
        if ent is None:
            return None
        order = '"_company", "id"' if ent.company_scoped else '"id"'
        return [self.to_wire(ent, r, r.get("_company", "")) for r in
                self.db.select(ent.set_name, order=order)]

    def error(self, status: int, code: str, message: str,
              headers: list[tuple[str, str]] | None = None) -> Resp:
        """BC error shape."""
        return error_resp(status, code, message, headers)

    def fault_error(self, status: int) -> Resp:
        """Injected faults with BC-like codes."""
        codes = {429: ("Application_TooManyRequests",
                       "Too many requests reached. Actual (101). Maximum (100)."),
                 500: ("Internal_ServerError", "An unexpected error occurred."),
                 502: ("Internal_BadGateway", "Bad Gateway."),
                 503: ("Internal_ServiceUnavailable", "The service is temporarily unavailable."),
                 504: ("Internal_GatewayTimeout", "The request timed out.")}
        code, msg = codes.get(status, ("Unknown", "Injected fault."))
        return error_resp(status, code, msg)

    def throttle_error(self, facet: str, retry_after: int) -> Resp:
        """BC's 429 (documented body; Retry-After sent, see section E)."""
        t = self.state.throttling
        if facet == "concurrent":
            msg = (f"Too many requests reached. Actual ({t.concurrent + 1}). "
                   f"Maximum ({t.concurrent}).")
        else:
            msg = f"Too many requests reached. Actual ({t.requests + 1}). Maximum ({t.requests})."
        return error_resp(429, "Application_TooManyRequests", msg,
                          [("Retry-After", str(retry_after))])

    def caller(self, req: Req) -> str:
        """Throttle per bearer (the app); unauthenticated requests share one bucket."""
        auth = req.header("authorization") or ""
        return auth[-32:] if auth else "anonymous"

    # --- serialisation --------------------------------------------------------------------
    def to_wire(self, ent: EntityDef, row: dict[str, Any], company: str,
                select: list[Any] | None = None) -> dict[str, Any]:
        """Stored row -> JSON entity with ``@odata.etag``."""
        lcy = self.lcy_code(company) if company else ""
        out: dict[str, Any] = {"@odata.etag": etag(row["_rv"])}
        for p in (select or ent.props):
            out[p.name] = to_wire(p, row.get(p.name), lcy)
        return out

    # --- request entry --------------------------------------------------------------------
    def handle(self, req: Req) -> Resp:
        """Authenticate, route and answer one request."""
        try:
            with self.db_lock:
                return self._route(req)
        except BCError as exc:
            return error_resp(exc.status, exc.code, exc.message, exc.headers)

    def authenticate(self, req: Req) -> None:
        """Reject missing, malformed, expired or wrong-audience bearers with BC's 401."""
        auth = req.header("authorization") or ""
        scheme, _, token = auth.partition(" ")
        claims = self.authority.verify(token.strip(), {BC_RESOURCE, BC_RESOURCE + "/"}) \
            if scheme.lower() == "bearer" and token.strip() else None
        if claims is None:
            raise BCError(401, "Authentication_InvalidCredentials",
                          "The server has rejected the client credentials.",
                          [("WWW-Authenticate", 'Bearer authorization_uri="https://login.'
                            f'microsoftonline.com/{TENANT_ID}/oauth2/authorize", '
                            'error="invalid_token"')])
        req.claims = claims

    def _route(self, req: Req) -> Resp:
        parts = req.path.split("/")
        # ['', 'v2.0', (tenant,) env, 'api', 'v2.0', ...]
        if len(parts) < 2 or parts[1] != "v2.0":
            raise BCError(404, "BadRequest_NotFound", f"No HTTP resource was found that matches "
                                                      f"the request URI '{req.path}'.")
        try:
            api = parts.index("api", 2)
        except ValueError:
            api = -1
        self.authenticate(req)
        if api not in (3, 4):
            raise BCError(404, "BadRequest_NotFound", f"No HTTP resource was found that matches "
                                                      f"the request URI '{req.path}'.")
        if api == 4 and parts[2].lower() not in (TENANT_ID, TENANT_DOMAIN):
            raise BCError(401, "Authentication_InvalidCredentials",
                          "The server has rejected the client credentials.")
        if parts[api - 1].lower() != ENVIRONMENT.lower():
            return Resp(404, NO_ENV_XML.encode(), [("Content-Type", "application/xml")])
        if len(parts) <= api + 1 or parts[api + 1] != "v2.0":
            raise BCError(404, "BadRequest_NotFound", f"No HTTP resource was found that matches "
                                                      f"the request URI '{req.path}'.")
        root = req.base_url + "/".join(parts[: api + 2])
        rest = "/".join(parts[api + 2:])
        return self.dispatch(req, root, rest)

    def dispatch(self, req: Req, root: str, rest: str) -> Resp:
        """Serve a path relative to the API root (also used by $batch)."""
        if rest in ("", "/"):
            doc = {"@odata.context": f"{root}/$metadata",
                   "value": [{"name": e.set_name, "kind": "EntitySet", "url": e.set_name}
                             for e in schema.ENTITIES]}
            return self._ok(200, doc)
        if rest == "$metadata":
            from bcdv_emulators.bc.metadata import metadata_xml
            return Resp(200, metadata_xml().encode(), [("Content-Type", "application/xml"),
                                                        ("OData-Version", "4.0")])
        if rest == "$batch":
            from bcdv_emulators.bc.batch import run_batch
            return run_batch(self, req, root)
        segs = rest.split("/")
        parsed = []
        for s in segs:
            m = SEGMENT_RE.match(s)
            if not m:
                raise BCError(400, "BadRequest_NotFound", "Bad Request - Error in query syntax.")
            parsed.append((m.group(1), m.group(2)))
        name, key = parsed[0]
        company: str | None = None
        if name == "subscriptions" and len(parsed) == 1:
            return self.webhooks.handle(req, root, key)
        if name == "companies":
            if len(parsed) == 1:
                return self._entity_request(req, root, BY_SET["companies"], None, key, None)
            company = self._key(key, "companies") if key is not None else None
            if company is None or self.db.get("companies", "id", company) is None:
                raise BCError(404, "BadRequest_ResourceNotFound",
                              "Resource not found for the segment 'companies'.")
            parsed = parsed[1:]
            name, key = parsed[0]
            ctx_prefix = f"companies({company})/"
        else:
            ctx_prefix = ""
        if name == "companyInformation" and len(parsed) == 1:
            if company is None:
                company = self._company_param(req)
            return self._company_information(req, root, company, key)
        ent = BY_SET.get(name)
        if ent is None or name == "companies":
            raise BCError(404, "BadRequest_NotFound", f"Resource not found for the segment "
                                                      f"'{name}'.")
        if company is None:
            company = self._company_param(req)
            ctx_prefix = f"companies({company})/"
        nav = parsed[1][0] if len(parsed) > 1 else None
        if len(parsed) > 2 or (nav is not None and nav != "$count" and key is None):
            raise BCError(404, "BadRequest_NotFound",
                          f"Resource not found for the segment '{parsed[-1][0]}'.")
        return self._entity_request(req, root, ent, company, key, nav, ctx_prefix)

    def _company_information(self, req: Req, root: str, company: str,
                             key: str | None) -> Resp:
        """GET companyInformation (API v2.0 page 30014 "APIV2 - Company Information"): one
        row per company; ``currencyCode`` is the local currency (LCY) code, read-only.
        Learn: api-reference/v2.0/resources/dynamics_companyinformation. Only GET here (the
        service also allows PATCH of the address fields, which bcdv never writes)."""
        if req.method != "GET":
            raise BCError(405, "BadRequest_MethodNotAllowed",
                          f"'{req.method}' requests for 'companyInformation' of EdmType "
                          "'Entity' are not allowed within Dynamics 365 Business Central "
                          "OData web services.")
        row = self.db.get("companies", "id", company) or {}
        doc = {"@odata.etag": etag(1), "id": company,
               "displayName": row.get("displayName") or row.get("name") or "",
               "currencyCode": self.lcy_code(company),
               "lastModifiedDateTime": to_wire(schema.Prop("lastModifiedDateTime", "datetime"),
                                               row.get("systemModifiedAt"))}
        ctx = f"{root}/$metadata#companies({company})/companyInformation"
        if key is not None:
            return self._ok(200, {"@odata.context": ctx + "/$entity", **doc}, [],
                            "companyInformation")
        return self._ok(200, {"@odata.context": ctx, "value": [doc]}, [], "companyInformation")

    def _company_param(self, req: Req) -> str:
        value = req.param("company") or req.header("company")
        if not value:
            raise BCError(400, "Internal_CompanyNotFound",
                          "Cannot process the request because the default company cannot be "
                          "found. You can specify a default company in the service "
                          "configuration file, or specify one for each tenant, or you can add a "
                          'query string in the form of "company=[name]". You can see the '
                          "available companies by accessing the default OData web service, "
                          'Company. For more information, see "OData Web Services" in Help.')
        if GUID_RE.match(value) and self.db.get("companies", "id", value.lower()):
            return value.lower()
        rows = self.db.select("companies", '"name"=?', (value,), limit=1)
        if not rows:
            raise BCError(400, "Internal_CompanyNotFound",
                          f"Cannot open company {value}. The company does not exist.")
        return str(rows[0]["id"])

    @staticmethod
    def _key(key: str, segment: str) -> str:
        raw = key.strip()
        if raw.startswith("id="):
            raw = raw[3:]
        if not GUID_RE.match(raw):
            raise BCError(400, "BadRequest_NotFound", "Bad Request - Error in query syntax.")
        return raw.lower()

    def _ok(self, status: int, doc: Any, headers: list[tuple[str, str]] | None = None,
            entity: str = "-") -> Resp:
        body = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
        return Resp(status, body, [("Content-Type", SUCCESS_CT), *(headers or [])], entity)

    def extra_headers(self, req: Req, resp: Resp) -> list[tuple[str, str]]:
        """Headers of a BC SaaS response."""
        out = [("request-id", str(uuid.uuid4())), ("Cache-Control", "no-cache, no-store"),
               ("Strict-Transport-Security", "max-age=31536000; includeSubDomains"),
               ("Access-Control-Expose-Headers", "Date, Content-Length, Server, OData-Version"),
               ("urls-rewritten-to-public", "false")]
        if resp.status < 400:
            out.append(("OData-Version", "4.0"))
        return out

    # --- entity requests ------------------------------------------------------------------
    def _entity_request(self, req: Req, root: str, ent: EntityDef, company: str | None,
                        key: str | None, nav: str | None, ctx_prefix: str = "") -> Resp:
        m = req.method
        for k, _ in req.query:
            if k.startswith("$") and k not in QUERY_OPTIONS:
                raise BCError(400, "BadRequest", f"The query parameter '{k}' is not supported.")
        if m not in ("GET", "POST", "PATCH", "DELETE", "PUT"):
            raise BCError(405, "BadRequest_MethodNotAllowed",
                          f"'{m}' requests for '{ent.set_name}' are not allowed.")
        if m == "GET" and req.header("data-access-intent", "").lower() not in ("", "readonly",
                                                                               "readwrite"):
            raise BCError(400, "BadRequest", "The Data-Access-Intent header value is invalid.")
        if m != "GET" and (req.header("data-access-intent") or "").lower() == "readonly":
            raise BCError(400, "BadRequest_MethodNotAllowed",
                          "Data-Access-Intent ReadOnly is not allowed on write requests.")
        scope = company or ""
        ctx = f"{root}/$metadata#{ctx_prefix}{ent.set_name}"
        if key is None:
            if nav == "$count" and m == "GET":
                where, params = self._where(req, ent, company)
                return Resp(200, str(self.db.count(ent.set_name, where, params)).encode(),
                            [("Content-Type", "text/plain")], ent.set_name)
            if m == "GET":
                return self._list(req, root, ent, company, ctx, ctx_prefix)
            if m == "POST" and "POST" in ent.methods:
                row = self.writer.create(ent, scope, self._json(req))
                loc = f"{root}/{ctx_prefix}{ent.set_name}({row['id']})"
                return self._single(req, ent, row, scope, ctx, 201, [("Location", loc)])
            raise BCError(405, "BadRequest_MethodNotAllowed",
                          f"'{m}' requests for '{ent.set_name}' of EdmType 'Collection' are not "
                          "allowed within Dynamics 365 Business Central OData web services.")
        kid = self._key(key, ent.set_name)
        row = self.db.get(ent.set_name, "id", kid)
        if row is None or (ent.company_scoped and row["_company"] != company):
            raise BCError(404, "BadRequest_ResourceNotFound",
                          f"Resource not found for the segment '{ent.set_name}'.")
        if nav is not None:
            return self._nav(req, root, ent, row, scope, nav)
        if m == "GET":
            return self._single(req, ent, row, scope, ctx, 200, [])
        if m == "PATCH" and "PATCH" in ent.methods:
            new = self.writer.update(ent, scope, row, self._json(req), req.header("if-match"))
            return self._single(req, ent, new, scope, ctx, 200, [])
        if m == "DELETE" and "DELETE" in ent.methods:
            self.writer.delete(ent, scope, row, req.header("if-match"))
            return Resp(204, b"", [], ent.set_name)
        raise BCError(405, "BadRequest_MethodNotAllowed",
                      f"'{m}' requests for '{ent.set_name}' of EdmType 'Entity' are not allowed "
                      "within Dynamics 365 Business Central OData web services.")

    @staticmethod
    def _json(req: Req) -> Any:
        ctype = (req.header("content-type") or "application/json").lower()
        if "json" not in ctype:
            raise BCError(415, "BadRequest", f"The content type '{ctype}' is not supported.")
        try:
            return strict_json(req.body.decode("utf-8")) if req.body.strip() else None
        except (ValueError, UnicodeDecodeError):
            raise BCError(400, "BadRequest", "Invalid Request Body") from None

    def _resolver(self, ent: EntityDef):  # type: ignore[no-untyped-def]
        return lambda name: ent.by_name.get(name)

    def _where(self, req: Req, ent: EntityDef, company: str | None) -> tuple[str, list[Any]]:
        clauses, params = [], []
        if ent.company_scoped:
            clauses.append('"_company" = ?')
            params.append(company)
        flt = req.param("$filter")
        if flt is not None:
            dialect = Dialect(f"Microsoft.NAV.{ent.type_name}", self._resolver(ent),
                              case_insensitive=False, or_same_field_only=True,
                              enum_literal=normalise_enum,
                              nested_functions=req.param("$schemaversion") == "2.1")
            try:
                sql, fparams = Compiler(dialect).compile(flt)
            except QueryError as exc:
                raise self._query_error(exc) from None
            clauses.append(sql)
            params.extend(fparams)
        return " AND ".join(clauses), params

    @staticmethod
    def _query_error(exc: QueryError) -> BCError:
        # 'or' across fields and 'in' below $schemaversion=2.1 have no AL filter equivalent:
        # BC answers 501 BadRequest_MethodNotImplemented (odata-known-limitations.md gives the
        # 'OR' text; several live recordings give the status and code).
        if exc.kind in ("or_fields", "in_schema"):
            return BCError(501, "BadRequest_MethodNotImplemented", exc.message)
        if exc.kind == "unsupported":
            return BCError(400, "BadRequest_NotSupported", exc.message)
        return BCError(400, "BadRequest", exc.message)

    def _select(self, req: Req, ent: EntityDef) -> list[Any] | None:
        sel = req.param("$select")
        if sel is None:
            return None
        try:
            return parse_select(sel, self._resolver(ent), f"Microsoft.NAV.{ent.type_name}") \
                or None
        except QueryError as exc:
            raise self._query_error(exc) from None

    def _int_option(self, req: Req, name: str) -> int | None:
        raw = req.param(name)
        if raw is None:
            return None
        if not raw.isdigit():
            raise BCError(400, "BadRequest", f"Invalid value '{raw}' for {name} query option "
                                             "found. The {name} query option requires a "
                                             "non-negative integer value.".replace("{name}", name))
        return int(raw)

    def _list(self, req: Req, root: str, ent: EntityDef, company: str | None, ctx: str,
              ctx_prefix: str) -> Resp:
        where, params = self._where(req, ent, company)
        select = self._select(req, ent)
        top = self._int_option(req, "$top")
        skip = self._int_option(req, "$skip") or 0
        count_opt = (req.param("$count") or "false").lower()
        if count_opt not in ("true", "false"):
            raise BCError(400, "BadRequest", f"'{count_opt}' is not a valid count option.")
        expand = self._expand_list(req, ent)
        order: list[tuple[Any, bool]] = []
        ob = req.param("$orderby")
        if ob is not None:
            try:
                order = parse_orderby(ob, self._resolver(ent), f"Microsoft.NAV.{ent.type_name}")
            except QueryError as exc:
                raise self._query_error(exc) from None
        cols = [(p.column, desc) for p, desc in order] + [("id", False)]
        order_sql = ", ".join(f'"{c}" {"DESC" if d else "ASC"}' for c, d in cols)
        page = MAX_PAGE
        pref = req.prefer().get("odata.maxpagesize")
        if pref is not None:
            if not pref.isdigit() or int(pref) < 1:
                raise BCError(400, "BadRequest", "The value of odata.maxpagesize is invalid.")
            page = int(pref)
        over = self.settings.option("bc_maxpagesize_over_limit", "cap")
        if (page > MAX_PAGE or (top or 0) > MAX_PAGE) and over == "413":
            raise BCError(413, "BadRequest", "Request Entity Too Large")
        page = min(page, MAX_PAGE)
        token = req.param("$skiptoken")
        if token is not None:
            t = token.strip().strip("'").lower()
            last = self.db.get(ent.set_name, "id", t) if GUID_RE.match(t) else None
            if not GUID_RE.match(t):
                raise BCError(400, "BadRequest", "The skip token is invalid.")
            if last is None:
                last = {"id": t, **{c: None for c, _ in cols[:-1]}}
            kw_sql, kw_params = _keyset(cols, last)
            where = f"({where}) AND {kw_sql}" if where else kw_sql
            params = params + kw_params
            skip = 0
        limit = page if top is None else min(top, page)
        rows = self.db.select(ent.set_name, where, params, order_sql, limit + 1, skip)
        more = len(rows) > limit and (top is None or top > limit)
        rows = rows[:limit]
        scope = company or ""
        doc: dict[str, Any] = {"@odata.context": self._context(ctx, select)}
        if count_opt == "true":
            cwhere, cparams = self._where(req, ent, company)
            doc["@odata.count"] = self.db.count(ent.set_name, cwhere, cparams)
        doc["value"] = [self._with_expand(ent, r, scope, select, expand) for r in rows]
        if more and rows:
            # $top beyond one page: the next link asks for what is left of it.
            keep = [(k, str(top - len(rows)) if k == "$top" and top is not None else v)
                    for k, v in req.query if k not in ("$skiptoken", "aid", "$skip")]
            qs = "&".join(f"{quote(k, safe='$')}={quote(v, safe=chr(39) + '(),:$*')}"
                          for k, v in keep)
            doc["@odata.nextLink"] = (f"{root}/{ctx_prefix}{ent.set_name}?aid=FIN"
                                      f"{'&' + qs if qs else ''}&$skiptoken={rows[-1]['id']}")
        resp = self._ok(200, doc, entity=ent.set_name)
        resp.read_rows = len(rows)
        return resp

    @staticmethod
    def _context(ctx: str, select: list[Any] | None) -> str:
        return f"{ctx}({','.join(p.name for p in select)})" if select else ctx

    def _expand_list(self, req: Req, ent: EntityDef) -> list[str]:
        raw = req.param("$expand")
        if raw is None:
            return []
        navs = NAVIGATION.get(ent.set_name, {})
        out = []
        for item in raw.split(","):
            name = item.strip()
            if name not in navs:
                raise BCError(400, "BadRequest", f"Could not find a property named '{name}' on "
                                                 f"type 'Microsoft.NAV.{ent.type_name}'.")
            out.append(name)
        return out

    def _with_expand(self, ent: EntityDef, row: dict[str, Any], company: str,
                     select: list[Any] | None, expand: list[str]) -> dict[str, Any]:
        out = self.to_wire(ent, row, company, select)
        for nav in expand:
            prop, target = NAVIGATION[ent.set_name][nav]
            ref = row.get(prop)
            trow = self.db.get(target, "id", ref) if ref else None
            out[nav] = self.to_wire(BY_SET[target], trow, company) if trow else None
        return out

    def _single(self, req: Req, ent: EntityDef, row: dict[str, Any], company: str, ctx: str,
                status: int, headers: list[tuple[str, str]]) -> Resp:
        select = self._select(req, ent)
        expand = self._expand_list(req, ent)
        doc = {"@odata.context": self._context(ctx, select) + "/$entity",
               **self._with_expand(ent, row, company, select, expand)}
        # No ETag header: recorded BC responses carry the etag only as @odata.etag.
        return self._ok(status, doc, headers, ent.set_name)

    def _nav(self, req: Req, root: str, ent: EntityDef, row: dict[str, Any], company: str,
             nav: str) -> Resp:
        navs = NAVIGATION.get(ent.set_name, {})
        if nav not in navs or req.method != "GET":
            raise BCError(404, "BadRequest_NotFound", f"Resource not found for the segment "
                                                      f"'{nav}'.")
        prop, target = navs[nav]
        trow = self.db.get(target, "id", row.get(prop)) if row.get(prop) else None
        if trow is None:
            return Resp(204, b"", [], ent.set_name)
        ctx = (f"{root}/$metadata#companies({company})/{ent.set_name}({row['id']})/{nav}"
               "/$entity")
        return self._ok(200, {"@odata.context": ctx, **self.to_wire(BY_SET[target], trow,
                                                                     company)},
                        entity=ent.set_name)


def _keyset(cols: list[tuple[str, bool]], last: dict[str, Any]) -> tuple[str, list[Any]]:
    """Rows strictly after ``last`` in the order ``cols`` (the key is the final column)."""
    ors, params = [], []
    for i, (col, desc) in enumerate(cols):
        parts = []
        for prev, _ in cols[:i]:
            parts.append(f'"{prev}" IS ?')
            params.append(last.get(prev))
        parts.append(f'"{col}" {"<" if desc else ">"} ?')
        params.append(last.get(col))
        ors.append("(" + " AND ".join(parts) + ")")
    return "(" + " OR ".join(ors) + ")", params

