"""Contact business relations, as CRONUS's Marketing Setup does it: every customer and vendor
gets a company contact (``contactBusinessRelation`` Customer/Vendor) that follows its name,
address and communication fields; deleting the customer/vendor leaves the contact with
relation ``None``. Option ``bc_business_relation_contacts`` (default True) switches it off.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bcdv_emulators.bc.schema import BY_SET, EntityDef
from bcdv_emulators.bc.values import sql_datetime_ms

if TYPE_CHECKING:
    from bcdv_emulators.bc.writes import Writer

RELATION = {"customers": "Customer", "vendors": "Vendor"}
SYNCED = ("displayName", "addressLine1", "addressLine2", "city", "state", "country",
          "postalCode", "phoneNumber", "email", "website")


def _enabled(w: Writer, ent: EntityDef) -> bool:
    return ent.set_name in RELATION and \
        bool(w.svc.settings.option("bc_business_relation_contacts", True))


def link_key(set_name: str, record_id: str) -> str:
    """Meta key holding the company contact id of a customer/vendor."""
    return f"rel:{set_name}:{record_id}"


def on_created(w: Writer, ent: EntityDef, company: str, row: dict[str, Any]) -> None:
    """Create the company contact of a new customer/vendor."""
    if not _enabled(w, ent):
        return
    import uuid
    contacts = BY_SET["contacts"]
    number = w.next_number(contacts, company)
    contact: dict[str, Any] = {p.name: p.default for p in contacts.props}
    contact.update({k: row.get(k, "") for k in SYNCED})
    contact.update(_company=company, id=str(uuid.uuid4()), number=number, type="Company",
                   companyNumber=number, companyName=row["displayName"],
                   contactBusinessRelation=RELATION[ent.set_name],
                   searchName=row["displayName"].upper()[:100],
                   lastModifiedDateTime=row["lastModifiedDateTime"],
                   _rv=w.db.next_counter("rv"))
    w.db.insert("contacts", contact)
    w.db.meta_set(link_key(ent.set_name, row["id"]), contact["id"])


def on_updated(w: Writer, ent: EntityDef, company: str, row: dict[str, Any],
               changes: dict[str, Any]) -> None:
    """Carry changed fields over to the company contact (and its persons' companyName)."""
    if not _enabled(w, ent):
        return
    cid = w.db.meta_get(link_key(ent.set_name, row["id"]))
    contact = w.db.get("contacts", "id", cid) if cid else None
    fields = {k: changes[k] for k in SYNCED if k in changes and
              (contact is None or contact.get(k) != changes[k])}
    if contact is None or not fields:
        return
    now = sql_datetime_ms(w.svc.now_ms())
    if "displayName" in fields:
        fields["searchName"] = fields["displayName"].upper()[:100]
        fields["companyName"] = fields["displayName"]
        for person in w.db.select("contacts", '"_company"=? AND "companyNumber"=? AND '
                                  '"type"=?', (company, contact["number"], "Person")):
            w.db.update("contacts", "id", person["id"],
                        {"companyName": fields["displayName"], "lastModifiedDateTime": now,
                         "_rv": w.db.next_counter("rv")})
    fields.update(lastModifiedDateTime=now, _rv=w.db.next_counter("rv"))
    w.db.update("contacts", "id", contact["id"], fields)


def on_deleted(w: Writer, ent: EntityDef, row: dict[str, Any]) -> None:
    """The contact stays; its business relation goes."""
    if not _enabled(w, ent):
        return
    key = link_key(ent.set_name, row["id"])
    cid = w.db.meta_get(key)
    if cid and w.db.get("contacts", "id", cid) is not None:
        w.db.update("contacts", "id", cid, {
            "contactBusinessRelation": "None", "_rv": w.db.next_counter("rv"),
            "lastModifiedDateTime": sql_datetime_ms(w.svc.now_ms())})
    w.db.conn.execute("DELETE FROM _meta WHERE k=?", (key,))
