"""Business Central writes: POST/PATCH/DELETE validation and the AL business rules we emulate.

Options (``run_emulators(..., bc_read_only="reject")`` or CLI settings):

- ``bc_read_only``: ``"reject"`` (default) answers 400 ``BadRequest_InvalidOperation`` for a
  read-only property in a body; ``"ignore"`` drops it silently.
- ``bc_delete_requires_if_match``: False (default; a recorded BC 25.4 container deleted without
  If-Match); True answers 400 ``BadRequest_InvalidToken`` like PATCH.

Keys: every APIV2 page declares ``id`` (SystemId) ``Editable = false`` and inserts with
``Rec.Insert(true)`` (no InsertWithSystemId), so an ``id`` in a POST body is refused like any
read-only control (400 ``BadRequest_InvalidOperation`` "Control 'Id' is read-only."): the
client can never choose a record's id. The source tables' primary keys (``number`` = "No."
Code[20], ``code`` = "Code" Code[10]/Code[20], NotBlank) are unique per company: a blank key
fails the field's TestField, a taken one the insert (409 ``Internal_EntityWithSameKeyExists``).
Customers, vendors and contacts without a ``number`` get the next one of their number series.
"""
from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from bcdv_emulators.bc import relations
from bcdv_emulators.bc.schema import BLANK_GUID, GUID_REFS, KEY_FIELDS, EntityDef
from bcdv_emulators.bc.values import BCError, etag, etag_wellformed, from_wire, sql_datetime_ms

if TYPE_CHECKING:
    from bcdv_emulators.bc.service import BCService

TABLE_CAPTIONS = {"customers": "Customer", "vendors": "Vendor", "contacts": "Contact",
                  "currencies": "Currency", "paymentTerms": "Payment Terms",
                  "shipmentMethods": "Shipment Method", "paymentMethods": "Payment Method",
                  "salespeoplePurchasers": "Salesperson/Purchaser"}


def _concurrency_error() -> BCError:
    return BCError(400, "BadRequest_InvalidToken",
                   "Could not validate the client concurrency token required by the service. "
                   "Please provide a valid token in the client request.")


def check_if_match(header: str | None, row: dict[str, Any], required: bool) -> None:
    """Apply BC's If-Match rules (missing/malformed -> 400, stale -> 409, ``*`` ok)."""
    if header is None or not header.strip():
        if required:
            raise _concurrency_error()
        return
    values = [v.strip() for v in header.split(",")]
    if "*" in values:
        return
    if not all(etag_wellformed(v) for v in values):
        raise _concurrency_error()
    current = etag(row["_rv"])
    if not any(v == current or v == current[2:] for v in values):
        raise BCError(409, "Request_EntityChanged", "Another user has already changed the record.")


class Writer:
    """Applies validated writes to the BC database."""

    def __init__(self, svc: BCService) -> None:
        self.svc = svc
        self.db = svc.db

    # --- body validation -------------------------------------------------------------------
    def parse_body(self, ent: EntityDef, body: Any) -> dict[str, Any]:
        """Validate a JSON body against ``ent`` -> stored-form changes."""
        if not isinstance(body, dict):
            raise BCError(400, "BadRequest", "Invalid Request Body")
        out: dict[str, Any] = {}
        mode = self.svc.settings.option("bc_read_only", "reject")
        for name, value in body.items():
            if "@" in name:
                continue  # instance annotations such as @odata.etag are allowed and ignored
            p = ent.by_name.get(name)
            if p is None:
                raise BCError(400, "BadRequest", f"The property '{name}' does not exist on type "
                                                 f"'Microsoft.NAV.{ent.type_name}'. Make sure to "
                                                 "only use property names that are defined by "
                                                 "the type.")
            if p.read_only:
                if mode == "ignore":
                    continue
                raise BCError(400, "BadRequest_InvalidOperation",
                              f"Control '{p.caption or name}' is read-only.")
            out[name] = from_wire(ent, p, value)
        return out

    # --- references -----------------------------------------------------------------------
    def _ref_exists(self, set_name: str, company: str, key: str) -> dict[str, Any] | None:
        row = self.db.get(set_name, "id", key)
        return row if row is not None and row["_company"] == company else None

    def _by_code(self, set_name: str, company: str, code: str) -> dict[str, Any] | None:
        rows = self.db.select(set_name, '"_company"=? AND "code"=?', (company, code), limit=1)
        return rows[0] if rows else None

    def _apply_rules(self, ent: EntityDef, company: str, changes: dict[str, Any],
                     current: dict[str, Any]) -> None:
        """Resolve currency/terms/salesperson references like the AL page does."""
        lcy = self.svc.lcy_code(company)
        if "currencyCode" in changes or "currencyId" in changes:
            cid = changes.get("currencyId")
            code = changes.get("currencyCode")
            by_id = None
            if cid is not None and cid != BLANK_GUID:
                by_id = self._ref_exists("currencies", company, cid)
                if by_id is None:
                    raise BCError(400, "Application_DialogException",
                                  'The "currencyId" does not match to a Currency.')
            if code is not None:
                if code in ("", lcy):
                    by_code_id, code = BLANK_GUID, ""
                else:
                    row = self._by_code("currencies", company, code)
                    if row is None:
                        raise BCError(400, "Application_DialogException",
                                      'The "currencyCode" does not match to a Currency.')
                    by_code_id = row["id"]
                if cid is not None and cid != by_code_id:
                    raise BCError(400, "Application_DialogException",
                                  "The currency values do not match to a specific Currency.")
                changes["currencyId"], changes["currencyCode"] = by_code_id, code
            else:
                changes["currencyCode"] = by_id["code"] if by_id else ""
        for prop, (target, caption) in GUID_REFS.items():
            if prop == "currencyId" or prop not in changes or prop not in ent.by_name:
                continue
            if changes[prop] != BLANK_GUID and \
                    self._ref_exists(target, company, changes[prop]) is None:
                raise BCError(400, "Application_DialogException",
                              f'The "{prop}" does not match to a {caption}.')
        code = changes.get("salespersonCode")
        if code and self._by_code("salespeoplePurchasers", company, code) is None:
            raise BCError(400, "Internal_InvalidTableRelation",
                          f"The field Salesperson Code of table {TABLE_CAPTIONS[ent.set_name]} "
                          f"contains a value ({code}) that cannot be found in the related table "
                          "(Salesperson/Purchaser).")
        if ent.set_name == "contacts":
            merged = {**current, **changes}
            if "displayName" in changes:
                changes["searchName"] = changes["displayName"].upper()[:100]
            if merged.get("companyNumber"):
                rows = self.db.select("contacts", '"_company"=? AND "number"=? AND "type"=?',
                                      (company, merged["companyNumber"], "Company"), limit=1)
                if not rows:
                    raise BCError(400, "Internal_InvalidTableRelation",
                                  "The field Company No. of table Contact contains a value "
                                  f"({merged['companyNumber']}) that cannot be found in the "
                                  "related table (Contact).")
                changes["companyName"] = rows[0]["displayName"]
            elif "companyNumber" in changes:
                changes["companyName"] = ""

    def _check_unique(self, ent: EntityDef, company: str, changes: dict[str, Any],
                      self_id: str | None) -> None:
        """The primary key: required on insert (NotBlank), never blank, unique (indexed)."""
        field = KEY_FIELDS.get(ent.set_name)
        if field is None or (self_id is not None and field not in changes):
            return
        value = changes.get(field, "")
        if not value:
            caption = "No." if field == "number" else "Code"
            raise BCError(400, "Application_FieldValidationException",
                          f"{caption} must have a value in {TABLE_CAPTIONS[ent.set_name]}: "
                          f"{caption}=. It cannot be zero or empty.")
        rows = self.db.select(ent.set_name, f'"_company"=? AND "{field}"=?', (company, value),
                              limit=1)
        if rows and rows[0]["id"] != self_id:
            caption = "No." if field == "number" else "Code"
            raise BCError(409, "Internal_EntityWithSameKeyExists",
                          f"The record in table {TABLE_CAPTIONS[ent.set_name]} already exists. "
                          f"Identification fields and values: {caption}='{value}'")

    def _check_rule(self, ent: EntityDef, method: str, row: dict[str, Any],
                    company: str) -> None:
        if not self.svc.state.faults.rules:
            return
        rule = self.svc.rule_for(ent.set_name, method, self.svc.to_wire(ent, row, company))
        if rule is not None:
            raise BCError(int(rule.get("status", 400)), str(rule.get("code", "BadRequest")),
                          str(rule.get("message", "Injected failure.")))

    # --- operations -----------------------------------------------------------------------
    def create(self, ent: EntityDef, company: str, body: Any) -> dict[str, Any]:
        """POST: validate, auto-number, insert; returns the stored row."""
        changes = self.parse_body(ent, body)
        if ent.set_name in ("customers", "vendors", "contacts") and \
                not changes.get("displayName", "").strip():
            raise BCError(400, "Application_DialogException", 'A "displayName" must be provided.')
        row: dict[str, Any] = {p.name: p.default for p in ent.props}
        row["_company"] = company
        with self.db.tx():
            if "number" in ent.by_name and not changes.get("number"):
                changes["number"] = self.next_number(ent, company)
            self._check_unique(ent, company, changes, None)
            self._apply_rules(ent, company, changes, row)
            row.update(changes)
            row["id"] = str(uuid.uuid4())
            now = sql_datetime_ms(self.svc.now_ms())
            row["lastModifiedDateTime"] = now
            row["_rv"] = self.db.next_counter("rv")
            self._check_rule(ent, "POST", row, company)
            self.db.insert(ent.set_name, row)
            relations.on_created(self, ent, company, row)
        self._notify(company, ent, row["id"], "created", row["lastModifiedDateTime"])
        return row

    def next_number(self, ent: EntityDef, company: str) -> str:
        """The next free number of ``ent``'s number series (C00010, V00010, CT000010...): the
        series' last number (a counter, like No. Series Line's Last No. Used) plus one, skipped
        past numbers taken by hand (an indexed lookup each)."""
        while True:
            n = self.db.next_counter(f"no:{company}:{ent.set_name}", 1)
            number = f"{ent.number_prefix}{n * 10:05d}" if ent.number_prefix != "CT" \
                else f"CT{n * 10:06d}"
            if not self.db.select(ent.set_name, '"_company"=? AND "number"=?',
                                  (company, number), limit=1):
                return number

    def update(self, ent: EntityDef, company: str, row: dict[str, Any], body: Any,
               if_match: str | None) -> dict[str, Any]:
        """PATCH: If-Match rules, validation, bump lastModifiedDateTime and etag."""
        check_if_match(if_match, row, required=True)
        changes = self.parse_body(ent, body)
        if "displayName" in changes and ent.set_name in ("customers", "vendors", "contacts") \
                and not changes["displayName"].strip():
            raise BCError(400, "Application_DialogException",
                          'The blank "displayName" is not allowed.')
        with self.db.tx():
            self._check_unique(ent, company, changes, row["id"])
            self._apply_rules(ent, company, changes, row)
            changes["lastModifiedDateTime"] = sql_datetime_ms(self.svc.now_ms())
            changes["_rv"] = self.db.next_counter("rv")
            new = {**row, **changes}
            self._check_rule(ent, "PATCH", new, company)
            self.db.update(ent.set_name, "id", row["id"], changes)
            relations.on_updated(self, ent, company, row, changes)
        self._notify(company, ent, row["id"], "updated", changes["lastModifiedDateTime"])
        return new

    def delete(self, ent: EntityDef, company: str, row: dict[str, Any],
               if_match: str | None) -> None:
        """DELETE: If-Match validated when present (required only in strict mode)."""
        strict = bool(self.svc.settings.option("bc_delete_requires_if_match", False))
        check_if_match(if_match, row, required=strict)
        with self.db.tx():
            self._check_rule(ent, "DELETE", row, company)
            self.db.delete(ent.set_name, "id", row["id"])
            relations.on_deleted(self, ent, row)
        self._notify(company, ent, row["id"], "deleted", self.svc.now_ms())

    def _notify(self, company: str, ent: EntityDef, key: str, change: str,
                modified: Any) -> None:
        """Queue a webhook notification once the change is committed: a snapshot $batch
        that rolls back notifies nothing."""
        hooks = self.svc.webhooks
        self.db.after_commit(lambda: hooks.record(company, ent.set_name, key, change, modified))
