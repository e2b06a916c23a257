"""CreateMultiple / UpdateMultiple / UpsertMultiple on standard tables: all-or-nothing.

Targets need ``@odata.type`` (``Microsoft.Dynamics.CRM.<logicalname>``, with or without
``#``); a missing or foreign type, a missing key (UpdateMultiple) or any failing target rolls
the whole request back and answers that target's error. The exact texts of the @odata.type
errors are unverified (reference E); they use code 0x80040203 (InvalidArgument).
DeleteMultiple answers Dataverse's "not yet implemented" for standard tables.
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from bcdv.emulators.base import Req, Resp, strict_json
from bcdv.emulators.dv.schema import EntityDef
from bcdv.emulators.dv.values import DVError, not_found

if TYPE_CHECKING:
    from bcdv.emulators.dv.service import DVService

MESSAGES = ("CreateMultiple", "UpdateMultiple", "UpsertMultiple", "DeleteMultiple")


def _targets(req: Req, ent: EntityDef) -> list[dict[str, Any]]:
    try:
        body = strict_json(req.body.decode("utf-8")) if req.body.strip() else None
    except (ValueError, UnicodeDecodeError):
        raise DVError(400, "0x80040203", "An error occurred while validating input parameters: "
                                         "Microsoft.OData.ODataException: Invalid JSON.") from None
    if not isinstance(body, dict) or not isinstance(body.get("Targets"), list):
        raise DVError(400, "0x80040203", "Required parameter 'Targets' is missing or is not a "
                                         "collection of entities.")
    extra = set(body) - {"Targets"}
    if extra:
        raise DVError(400, "0x0", f"An error occurred while validating input parameters: "
                                  f"Microsoft.OData.ODataException: The parameter "
                                  f"'{sorted(extra)[0]}' in the request payload is not a valid "
                                  f"parameter for the operation.")
    targets = body["Targets"]
    if not targets:
        raise DVError(400, "0x80040203", "The Targets collection must contain at least one "
                                         "entity.")
    want = f"Microsoft.Dynamics.CRM.{ent.logical_name}"
    for i, t in enumerate(targets):
        if not isinstance(t, dict):
            raise DVError(400, "0x80040203", f"Targets[{i}] is not an entity.")
        otype = t.get("@odata.type")
        if otype is None:
            raise DVError(400, "0x80040203", f"Targets[{i}]: the '@odata.type' annotation is "
                                             f"required ('{want}').")
        if str(otype).lstrip("#") != want:
            raise DVError(400, "0x80040203", f"Targets[{i}]: all targets must be of type "
                                             f"'{want}', found '{otype}'.")
    return targets


def bulk(svc: "DVService", req: Req, api: str, ent: EntityDef, message: str) -> Resp:
    """Run one bulk message in a single transaction."""
    if message not in MESSAGES:
        raise DVError(404, "0x80060888", f"Resource not found for the segment "
                                         f"'Microsoft.Dynamics.CRM.{message}'.")
    if message == "DeleteMultiple":
        raise DVError(400, "0x80040203", "DeleteMultiple has not yet been implemented.")
    targets = _targets(req, ent)
    user = svc.app_user(req)
    w = svc.writer
    ids: list[str] = []
    results: list[dict[str, Any]] = []
    with svc.db.tx():
        for t in targets:
            if message == "CreateMultiple":
                changes = w.parse_body(ent, t, creating=True)
                ids.append(w.create(ent, changes, user)[ent.key])
                continue
            key = _target_key(svc, ent, t)
            body = {k: v for k, v in t.items() if k != "@odata.id"}
            row = svc.find(ent, *key)
            if message == "UpdateMultiple":
                if row is None:
                    raise not_found(ent.logical_name, key[1] if key[0] == "id" else
                                    ",".join(f"{k}={v}" for k, v in key[1].items()))
                changes = w.parse_body(ent, body, creating=False)
                w.update(ent, row, changes, user)
                continue
            if row is None:
                changes = w.parse_body(ent, body, creating=True)
                new = w.create(ent, changes, user, key)
                created = True
            else:
                changes = w.parse_body(ent, body, creating=False)
                if key[0] == "alt":
                    for col in key[1]:
                        changes.pop(col, None)
                new = w.update(ent, row, changes, user)
                created = False
            results.append({"RecordCreated": created,
                            "Target": {"@odata.type": f"#Microsoft.Dynamics.CRM."
                                                      f"{ent.logical_name}",
                                       ent.key: new[ent.key]}})
    if message == "UpdateMultiple":
        return Resp(204, b"", [], ent.set_name)
    if message == "CreateMultiple":
        doc: dict[str, Any] = {"@odata.context": f"{api}/$metadata#Microsoft.Dynamics.CRM."
                                                 "CreateMultipleResponse", "Ids": ids}
    else:
        doc = {"@odata.context": f"{api}/$metadata#Microsoft.Dynamics.CRM."
                                 "UpsertMultipleResponse", "Results": results}
    return svc._ok(200, doc, entity=ent.set_name)


def _target_key(svc: "DVService", ent: EntityDef, t: dict[str, Any]) -> tuple[str, Any]:
    """The key of an Update/UpsertMultiple target: ``@odata.id`` or the primary key column."""
    oid = t.get("@odata.id")
    if oid is not None:
        from bcdv.emulators.dv.writes import BIND_RE
        m = BIND_RE.match(str(oid))
        if not m or m.group(1) != ent.set_name:
            raise DVError(400, "0x80040203", f"Invalid @odata.id '{oid}'.")
        return svc.parse_key(ent, m.group(2))
    pk = t.get(ent.key)
    if pk is None:
        raise DVError(400, "0x80040203", f"Entity Id must be specified for Update: target has "
                                         f"no '{ent.key}'.")
    if not isinstance(pk, str):
        raise DVError(400, "0x0", f"Cannot convert the literal '{pk}' to the expected type "
                                  "'Edm.Guid'.")
    return svc.parse_key(ent, pk)
