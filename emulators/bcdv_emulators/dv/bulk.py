"""CreateMultiple / UpdateMultiple / UpsertMultiple on standard tables: all-or-nothing.

Targets need ``@odata.type`` (``Microsoft.Dynamics.CRM.<logicalname>``, with or without
``#``); a missing or foreign type, a missing key (UpdateMultiple) or any failing target rolls
the whole request back and answers that target's error. The exact texts of the @odata.type
errors are unverified (reference E); they use code 0x80040203 (InvalidArgument).

Responses (https://learn.microsoft.com/power-apps/developer/data-platform/bulk-operations and
https://learn.microsoft.com/power-apps/developer/data-platform/webapi/reference/upsertmultiple):
CreateMultiple 200 + ``Ids``; UpdateMultiple and UpsertMultiple 204 No Content, no body.
DeleteMultiple answers Dataverse's "not yet implemented" for standard tables.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bcdv_emulators.base import Req, Resp
from bcdv_emulators.dv.schema import EntityDef
from bcdv_emulators.dv.values import DVError, not_found, parse_json_body, segment_not_found

if TYPE_CHECKING:
    from bcdv_emulators.dv.service import DVService

MESSAGES = ("CreateMultiple", "UpdateMultiple", "UpsertMultiple", "DeleteMultiple")


def _targets(req: Req, ent: EntityDef) -> list[dict[str, Any]]:
    body = parse_json_body(req.body, ent.set_name)
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


def bulk(svc: DVService, req: Req, api: str, ent: EntityDef, message: str) -> Resp:
    """Run one bulk message in a single transaction."""
    if message not in MESSAGES:
        raise segment_not_found(f"Microsoft.Dynamics.CRM.{message}")
    if message == "DeleteMultiple":
        raise DVError(400, "0x80040203", "DeleteMultiple has not yet been implemented.")
    targets = _targets(req, ent)
    user = svc.app_user(req)
    w = svc.writer
    ids: list[str] = []
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
                w.create(ent, changes, user, key)
            else:
                changes = w.parse_body(ent, body, creating=False)
                if key[0] == "alt":
                    for col in key[1]:
                        changes.pop(col, None)
                w.update(ent, row, changes, user)
    if message == "CreateMultiple":
        doc: dict[str, Any] = {"@odata.context": f"{api}/$metadata#Microsoft.Dynamics.CRM."
                                                 "CreateMultipleResponse", "Ids": ids}
        resp = svc._ok(200, doc, entity=ent.set_name)
    else:
        # UpdateMultiple and UpsertMultiple: 204, no body (UpsertMultipleResponse is not
        # returned by the Web API, so which targets were created is not reported).
        resp = Resp(204, b"", [], ent.set_name)
    resp.write_rows = len(targets)
    return resp


def _target_key(svc: DVService, ent: EntityDef, t: dict[str, Any]) -> tuple[str, Any]:
    """The key of an Update/UpsertMultiple target: ``@odata.id`` or the primary key column."""
    oid = t.get("@odata.id")
    if oid is not None:
        from bcdv_emulators.dv.writes import BIND_RE
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
