"""Dataverse writes: create, update, upsert, delete, lookups via @odata.bind, bulk messages.

Server-maintained columns: createdon/modifiedon (service clock, whole seconds),
_createdby_value/_modifiedby_value (the calling application user), versionnumber (a global
counter; also the etag), fullname (contacts: "first last"), address1_composite, exchangerate
and *_base money columns (org base currency unless the row has another currency).
"""
from __future__ import annotations

import re
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from bcdv_emulators.dv.schema import BY_SET, STATUS_STATE, EntityDef, nav_map
from bcdv_emulators.dv.values import DVError, from_wire, invalid_property, not_found, payload_error
from bcdv_emulators.odata import GUID_RE

if TYPE_CHECKING:
    from bcdv_emulators.dv.service import DVService

BIND_RE = re.compile(r"^(?:https?://[^/]+)?/?(?:api/data/v9\.\d/)?([A-Za-z_]\w*)\((.+)\)$")


class Writer:
    """Applies writes to the Dataverse database."""

    def __init__(self, svc: DVService) -> None:
        self.svc = svc
        self.db = svc.db
        self.content_ids: dict[str, str] = {}

    # --- body parsing ---------------------------------------------------------------------
    def parse_body(self, ent: EntityDef, body: Any, creating: bool) -> dict[str, Any]:
        """Validate a JSON entity body -> stored-form column changes."""
        if not isinstance(body, dict):
            raise DVError(400, "0x80040203", "An error occurred while validating input "
                                             "parameters: Microsoft.OData.ODataException: The "
                                             "request body is not a JSON object.")
        navs = nav_map(ent)
        out: dict[str, Any] = {}
        for name, value in body.items():
            if name.endswith("@odata.bind"):
                nav = name[: -len("@odata.bind")]
                prop = navs.get(nav)
                if prop is None or prop.read_only:
                    # read-only lookups (createdby...) answer like undeclared ones: unverified
                    raise payload_error(ent.set_name, undeclared(nav))
                if value is None:
                    out[prop.column] = None
                    if f"_{prop.name}_type" in ent.by_name:
                        out[f"_{prop.name}_type"] = None
                    continue
                target_set, target_id = self.resolve_bind(value)
                if target_set not in prop.targets[nav]:
                    raise DVError(400, "0x0", "An error occurred while validating input "
                                              "parameters: Microsoft.OData.ODataException: The "
                                              f"entity set '{target_set}' is not a valid target "
                                              f"for the navigation property '{nav}'.")
                out[prop.column] = target_id
                if f"_{prop.name}_type" in ent.by_name:
                    out[f"_{prop.name}_type"] = target_set
                continue
            if name.startswith("@") or "@" in name:
                continue  # @odata.type / @odata.etag / @odata.id annotations
            p = ent.by_name.get(name)
            if p is None or p.kind == "lookup" or p.hidden:
                raise invalid_property(ent, name)
            if p.read_only:
                continue  # Dataverse ignores values for read-only columns
            if p.create_only and not creating and p.name != ent.key:
                continue
            out[p.column] = from_wire(ent, p, value)
        return out

    def resolve_bind(self, value: Any) -> tuple[str, str]:
        """``/accounts(<id>)`` (or alternate key / ``$n``) -> (set, id); raises if dangling."""
        if not isinstance(value, str):
            raise DVError(400, "0x0", "An error occurred while validating input parameters: "
                                      "Microsoft.OData.ODataException: A node of type "
                                      "'PrimitiveValue' was read from the JSON reader when "
                                      "trying to read the entity reference link.")
        if value.startswith("$") and value in self.content_ids:
            value = self.content_ids[value]
        m = BIND_RE.match(unquote(value).strip())
        if not m or m.group(1) not in BY_SET:
            raise DVError(400, "0x80060888", f"Resource not found for the segment "
                                             f"'{value}'.")
        ent = BY_SET[m.group(1)]
        kind, key = self.svc.parse_key(ent, m.group(2))
        row = self.svc.find(ent, kind, key)
        if row is None:
            shown = key if kind == "id" else ",".join(f"{k}={v}" for k, v in key.items())
            raise not_found(ent.logical_name, shown)
        return ent.set_name, row[ent.key]

    # --- computed columns -----------------------------------------------------------------
    def _derive(self, ent: EntityDef, row: dict[str, Any], changes: dict[str, Any]) -> None:
        merged = {**row, **changes}
        if ent.set_name == "contacts" and ({"firstname", "lastname", "middlename"} & set(changes)
                                            or "fullname" not in row):
            changes["fullname"] = " ".join(x for x in (merged.get("firstname"),
                                                       merged.get("lastname")) if x) or None
        if "address1_composite" in ent.by_name:
            lines = [merged.get(f"address1_line{i}") for i in (1, 2, 3)]
            city = " ".join(x for x in (merged.get("address1_city"),
                                        merged.get("address1_stateorprovince"),
                                        merged.get("address1_postalcode")) if x)
            parts = [x for x in (*lines, city, merged.get("address1_country")) if x]
            changes["address1_composite"] = "\r\n".join(parts) or None
        if "statuscode" in changes and "statecode" not in changes and \
                changes["statuscode"] is not None:
            changes["statecode"] = STATUS_STATE[changes["statuscode"]]
        elif "statecode" in changes and "statuscode" not in changes:
            changes["statuscode"] = 1 if changes["statecode"] == 0 else 2
        elif "statecode" in changes and STATUS_STATE.get(changes["statuscode"]) != \
                changes["statecode"]:
            state = "Active" if changes["statecode"] == 0 else "Inactive"
            raise DVError(400, "0x80040203", f"{changes['statuscode']} is not a valid status "
                                             f"code for state code {ent.logical_name.title()}"
                                             f"State.{state} on {ent.logical_name}.")
        money = [p for p in ent.props if p.kind == "money" and not p.read_only]
        if "transactioncurrencyid" in ent.by_name and (
                any(p.column in changes and changes[p.column] is not None for p in money)
                or "_transactioncurrencyid_value" in changes):
            if not merged.get("_transactioncurrencyid_value"):
                changes["_transactioncurrencyid_value"] = self.db.meta_get("basecurrencyid")
            cur = self.db.get("transactioncurrencies", "transactioncurrencyid",
                              changes.get("_transactioncurrencyid_value",
                                          merged.get("_transactioncurrencyid_value")))
            rate = float(cur["exchangerate"]) if cur else 1.0
            changes["exchangerate"] = rate
            for p in money:
                value = changes.get(p.column, merged.get(p.column))
                if f"{p.name}_base" in ent.by_name:
                    changes[f"{p.name}_base"] = None if value is None else round(value / rate, 4)

    def _stamp(self, ent: EntityDef, changes: dict[str, Any], user: dict[str, Any],
               creating: bool) -> None:
        now = self.svc.now_ms()
        vn = self.db.next_counter("vn", 1000000)
        changes["versionnumber"] = vn
        changes["_rv"] = vn
        changes["modifiedon"] = now
        if "modifiedby" in ent.by_name:
            changes["_modifiedby_value"] = user["systemuserid"]
        if creating:
            changes["createdon"] = now
            if "createdby" in ent.by_name:
                changes["_createdby_value"] = user["systemuserid"]
            if "ownerid" in ent.by_name and not changes.get("_ownerid_value"):
                changes["_ownerid_value"] = user["systemuserid"]
                changes["_ownerid_type"] = "systemusers"
            if "owningbusinessunit" in ent.by_name:
                changes["_owningbusinessunit_value"] = user["_businessunitid_value"]

    def _check_rule(self, ent: EntityDef, method: str, row: dict[str, Any]) -> None:
        if not self.svc.state.faults.rules:
            return
        rule = self.svc.rule_for(ent.set_name, method, self.svc.to_wire(ent, row))
        if rule is not None:
            raise DVError(int(rule.get("status", 400)), str(rule.get("code", "0x80040203")),
                          str(rule.get("message", "Injected failure.")))

    # --- operations -----------------------------------------------------------------------
    def create(self, ent: EntityDef, changes: dict[str, Any], user: dict[str, Any],
               key: tuple[str, Any] | None = None) -> dict[str, Any]:
        """Insert a row (``changes`` already parsed); duplicate key -> 412 0x80040237."""
        if "POST" not in ent.methods:
            raise DVError(403, "0x80040220", f"Principal user (Id={user['systemuserid']}, "
                                             f"type=8) is missing prv{'Create'}"
                                             f"{ent.logical_name.title()} privilege.")
        row: dict[str, Any] = {p.column: p.default for p in ent.props}
        if key is not None and key[0] == "alt":
            for col, val in key[1].items():
                changes.setdefault(col, val)
        if key is not None and key[0] == "id":
            changes[ent.key] = key[1]
        pk = changes.get(ent.key) or str(uuid.uuid4())
        changes[ent.key] = pk
        for p in ent.props:
            if p.required_level == "SystemRequired" and changes.get(p.column) is None:
                raise DVError(400, "0x80040203", f"Attribute '{p.name}' cannot be NULL")
        if self.db.get(ent.set_name, ent.key, pk) is not None:
            raise DVError(412, "0x80040237", "A record with matching key values already exists.")
        self._check_alt_unique(ent, {**row, **changes}, None)
        self._derive(ent, row, changes)
        self._stamp(ent, changes, user, creating=True)
        row.update(changes)
        self._check_rule(ent, "POST", row)
        self.db.insert(ent.set_name, row)
        return row

    def _check_alt_unique(self, ent: EntityDef, row: dict[str, Any], self_id: str | None) -> None:
        for cols in self.svc.alt_keys.get(ent.set_name, []):
            if any(row.get(c) is None for c in cols):
                continue
            found = self.svc.find(ent, "alt", {c: row[c] for c in cols})
            if found is not None and found[ent.key] != self_id:
                raise DVError(412, "0x80040237", "A record with matching key values already "
                                                 "exists.")

    def update(self, ent: EntityDef, row: dict[str, Any], changes: dict[str, Any],
               user: dict[str, Any]) -> dict[str, Any]:
        """Update an existing row."""
        if "PATCH" not in ent.methods:
            raise DVError(405, "0x80060888", f"The operation is not supported on "
                                             f"{ent.set_name}.")
        changes.pop(ent.key, None)
        self._check_alt_unique(ent, {**row, **changes}, row[ent.key])
        self._derive(ent, row, changes)
        self._stamp(ent, changes, user, creating=False)
        new = {**row, **changes}
        self._check_rule(ent, "PATCH", new)
        self.db.update(ent.set_name, ent.key, row[ent.key], changes)
        return new

    def delete(self, ent: EntityDef, row: dict[str, Any]) -> None:
        """Delete a row and leave a tombstone for change tracking."""
        if "DELETE" not in ent.methods:
            raise DVError(405, "0x80060888", f"The operation is not supported on "
                                             f"{ent.set_name}.")
        self._check_rule(ent, "DELETE", row)
        vn = self.db.next_counter("vn", 1000000)
        self.db.delete(ent.set_name, ent.key, row[ent.key])
        self.db.conn.execute("INSERT INTO _deleted(entity, id, vn) VALUES (?, ?, ?)",
                             (ent.set_name, row[ent.key], vn))
        # Dangling lookups are cleared like Dataverse's cascade "remove link".
        for other in BY_SET.values():
            for p in other.props:
                if p.kind == "lookup" and any(ent.set_name in s for s in p.targets.values()):
                    self.db.conn.execute(f'UPDATE "{other.set_name}" SET "{p.column}" = NULL '
                                         f'WHERE "{p.column}" = ?', (row[ent.key],))


def undeclared(nav: str) -> str:
    """The OData reader's text for ``<nav>@odata.bind`` when ``nav`` is no navigation property
    (e.g. the lookup's logical name ``parentcustomerid`` instead of
    ``parentcustomerid_account``).

    https://learn.microsoft.com/troubleshoot/power-platform/power-apps/web-api-client-errors
    """
    return (f"Microsoft.OData.ODataException: An undeclared property '{nav}' which only has "
            "property annotations in the payload but no property value was found in the "
            "payload. In OData, only declared navigation properties and declared named streams "
            "can be represented as properties without values.")


def check_guid(value: Any) -> bool:
    """True for a GUID string."""
    return isinstance(value, str) and bool(GUID_RE.match(value))

