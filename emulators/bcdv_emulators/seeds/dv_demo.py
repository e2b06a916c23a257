"""The Dataverse demo organisation.

``empty``: root business unit ``bcdv-emulated``, organisation id, base currency US Dollar
(USD, rate 1), the SYSTEM and INTEGRATION users, the org administrator ``Org Admin``
(licensed, interactive; tests impersonate it with ``CallerObjectId: ADMIN_OBJECT_ID``) and
the application user ``# bcdv sync``
(applicationid = the emulator's client id, accessmode 4 Non-interactive, isintegrationuser
true, not licensed); it is ``_createdby_value``/``_modifiedby_value`` of the client's writes.

``demo`` adds:

- currencies Euro (EUR 0.92), British Pound (GBP 0.79), Canadian Dollar (CAD 1.36);
- users: Peter Saddow and Jim Olive (licensed; same names/emails as BC salespeople PS/JO),
  Alicia Thomber (licensed, not in BC), Otis Falls (disabled), Sync Integration
  (licensed integration user), and a team "Sales Team";
- accounts: Adatum Corporation, Trey Research, School of Fine Art and Alpine Ski House
  (Customer, same name and main phone as the BC customers 10000..40000 but no account
  number), Fabrikam, Inc. (Vendor, matches BC vendor 10000), Contoso Pharmaceuticals and
  Fourth Coffee (Customer, Dataverse only; payment terms Net 45), Blue Yonder Airlines
  (Prospect), Northwind
  Traders (Competitor), Proseware, Inc. (Customer, inactive), Woodgrove Bank (Partner,
  owned by Jim Olive), Tailspin Toys (Customer, EUR); address1_country holds the ISO
  country code (US, DE) that Business Central's Country/Region Code syncs as;
- contacts under accounts (parentcustomerid account): Robert Townes and Sara Lopez (Adatum),
  Mark Hanson (Trey Research), Nina Berg (School of Fine Art), Tom Wilson (Fabrikam),
  Yvonne McKay (Contoso), Rene Valdes (Fourth Coffee), plus Lisa Chen with no parent.
"""
from __future__ import annotations

from typing import Any

from bcdv_emulators.config import APP_OBJECT_ID, CLIENT_ID
from bcdv_emulators.db import Database
from bcdv_emulators.dv.schema import BY_SET
from bcdv_emulators.seeds import gid

BASE_MS = 1767603600000  # 2026-01-05T09:00:00Z
ORG_ID = gid("dv", "organization")
BU_ID = gid("dv", "businessunit", "root")
BASE_CURRENCY_ID = gid("dv", "currency", "USD")
APP_USER_ID = gid("dv", "systemuser", "application")
ADMIN_USER_ID = gid("dv", "systemuser", "admin")
ADMIN_OBJECT_ID = "0d5a7c3e-9b1f-4e2d-8c6a-5f4e3d2c1b0a"  # the admin's Entra object id
SYSTEM_USER_ID = gid("dv", "systemuser", "SYSTEM")


def _insert(db: Database, set_name: str, key: str, minute: int, **values: Any) -> str:
    ent = BY_SET[set_name]
    row: dict[str, Any] = {p.column: p.default for p in ent.props}
    row.update(values)
    if not row.get(ent.key):
        row[ent.key] = gid("dv", set_name, key)
    vn = db.next_counter("vn", 1000000)
    row.update(versionnumber=vn, _rv=vn, createdon=BASE_MS + minute * 60_000,
               modifiedon=BASE_MS + minute * 60_000)
    if "createdby" in ent.by_name:
        row["_createdby_value"] = row["_modifiedby_value"] = SYSTEM_USER_ID
    if "ownerid" in ent.by_name:
        if not row.get("_ownerid_value"):
            row["_ownerid_value"] = APP_USER_ID
        row["_ownerid_type"] = "teams" if row["_ownerid_value"] == gid("dv", "teams", "sales") \
            else "systemusers"
        row["_owningbusinessunit_value"] = BU_ID
    if set_name == "contacts":
        row["fullname"] = " ".join(x for x in (row.get("firstname"), row.get("lastname")) if x)
    if "address1_composite" in ent.by_name:
        parts = [row.get("address1_line1"),
                 " ".join(x for x in (row.get("address1_city"),
                                      row.get("address1_stateorprovince"),
                                      row.get("address1_postalcode")) if x),
                 row.get("address1_country")]
        row["address1_composite"] = "\r\n".join(x for x in parts if x) or None
    db.insert(set_name, row)
    return str(row[ent.key])


def _user(db: Database, key: str, first: str, last: str, email: str, minute: int,
          **kw: Any) -> str:
    uid = kw.pop("systemuserid", gid("dv", "systemuser", key))
    return _insert(db, "systemusers", key, minute, systemuserid=uid, firstname=first,
                   lastname=last, fullname=f"{first} {last}".strip(),
                   internalemailaddress=email, domainname=email,
                   _businessunitid_value=BU_ID, **kw)


def load_empty(db: Database) -> None:
    """Business unit, base currency, built-in users and the application user."""
    db.meta_set("organizationid", ORG_ID)
    db.meta_set("basecurrencyid", BASE_CURRENCY_ID)
    _insert(db, "businessunits", "root", 0, businessunitid=BU_ID, name="bcdv-emulated")
    _insert(db, "transactioncurrencies", "USD", 0, transactioncurrencyid=BASE_CURRENCY_ID,
            isocurrencycode="USD", currencyname="US Dollar", currencysymbol="$",
            exchangerate=1.0, currencyprecision=2)
    _user(db, "SYSTEM", "", "SYSTEM", "system@bcdv-emulated.example.com", 0,
          systemuserid=SYSTEM_USER_ID, accessmode=0)
    _user(db, "INTEGRATION", "", "INTEGRATION", "integration@bcdv-emulated.example.com", 0,
          accessmode=0, isintegrationuser=1)
    # Every organisation has the administrator who created it: a licensed, interactive
    # user that tests impersonate (CallerObjectId) to edit rows "by a person".
    _user(db, "ADMIN", "Org", "Admin", "admin@bcdv-emulated.example.com", 0,
          systemuserid=ADMIN_USER_ID, azureactivedirectoryobjectid=ADMIN_OBJECT_ID,
          accessmode=0, islicensed=1)
    _user(db, "application", "#", "bcdv sync", "bcdvsync@bcdv-emulated.example.com", 0,
          systemuserid=APP_USER_ID, applicationid=CLIENT_ID,
          azureactivedirectoryobjectid=APP_OBJECT_ID, accessmode=4, isintegrationuser=1,
          islicensed=0)


def load_demo(db: Database) -> None:
    """Demo users, currencies, accounts and contacts."""
    m = iter(range(1, 1000))
    cur = {}
    for code, name, sym, rate in (("EUR", "Euro", "€", 0.92), ("GBP", "British Pound", "£", 0.79),
                                  ("CAD", "Canadian Dollar", "CA$", 1.36)):
        cur[code] = _insert(db, "transactioncurrencies", code, next(m), isocurrencycode=code,
                            currencyname=name, currencysymbol=sym, exchangerate=rate,
                            currencyprecision=2)
    users = {}
    for key, first, last, extra in (
            ("PS", "Peter", "Saddow", {"islicensed": 1, "title": "Sales Manager"}),
            ("JO", "Jim", "Olive", {"islicensed": 1, "title": "Account Manager"}),
            ("AT", "Alicia", "Thomber", {"islicensed": 1, "title": "Sales Representative"}),
            ("OF", "Otis", "Falls", {"islicensed": 1, "isdisabled": 1}),
            ("SI", "Sync", "Integration", {"islicensed": 1, "isintegrationuser": 1})):
        email = f"{first.lower()}.{last.lower()}@cronus-demosite.com"
        users[key] = _user(db, key, first, last, email, next(m),
                           mobilephone=f"+1 425 555 01{len(users) + 1:02d}", **extra)
    _insert(db, "teams", "sales", next(m), name="Sales Team", _businessunitid_value=BU_ID)
    accounts = {}
    for key, name, phone, city, state, zip_, street, ctype, extra in (
            ("adatum", "Adatum Corporation", "+1 404 555 0110", "Atlanta", "GA", "31772",
             "192 Market Square", 3, {"creditlimit": 50000.0, "industrycode": 6}),
            ("trey", "Trey Research", "+1 312 555 0120", "Chicago", "IL", "61236",
             "153 Thomas Drive", 3, {"creditlimit": 25000.0}),
            ("fineart", "School of Fine Art", "+1 305 555 0130", "Miami", "FL", "37125",
             "10 High Tower Green", 3, {}),
            ("alpine", "Alpine Ski House", "+1 303 555 0140", "Denver", "CO", "80201",
             "10 Deerfield Road", 3, {"paymenttermscode": 1}),
            ("fabrikam", "Fabrikam, Inc.", "+1 404 555 0210", "Atlanta", "GA", "31772",
             "51 Lake Street", 11, {}),
            ("contoso", "Contoso Pharmaceuticals", "+1 206 555 0301", "Seattle", "WA", "98104",
             "400 Pine Street", 3, {"creditlimit": 100000.0, "numberofemployees": 2500,
                                     "revenue": 125000000.0}),
            ("fourth", "Fourth Coffee", "+1 503 555 0302", "Portland", "OR", "97204",
             "12 Bean Avenue", 3, {"paymenttermscode": 3}),
            ("blueyonder", "Blue Yonder Airlines", "+1 214 555 0303", "Dallas", "TX", "75201",
             "1 Runway Plaza", 8, {}),
            ("northwind", "Northwind Traders", "+1 907 555 0304", "Anchorage", "AK", "99501",
             "5 Harbor Way", 1, {}),
            ("proseware", "Proseware, Inc.", "+1 512 555 0305", "Austin", "TX", "73301",
             "77 Congress Avenue", 3, {"statecode": 1, "statuscode": 2}),
            ("woodgrove", "Woodgrove Bank", "+1 212 555 0306", "New York", "NY", "10005",
             "1 Wall Street", 5, {"_ownerid_value": users["JO"]}),
            ("tailspin", "Tailspin Toys", "+49 89 555 0307", "München", "", "80331",
             "Marienplatz 8", 3, {"_transactioncurrencyid_value": cur["EUR"],
                                  "exchangerate": 0.92, "creditlimit": 15000.0,
                                  "creditlimit_base": round(15000 / 0.92, 4)}),
    ):
        values = {"name": name, "telephone1": phone, "address1_city": city,
                  "address1_stateorprovince": state, "address1_postalcode": zip_,
                  "address1_line1": street,
                  # The Country/Region code, as Business Central's Customer-Account mapping
                  # writes it (Country/Region Code <-> Address1_Country, raw), so the value
                  # fits BC's Code[10] country on the way back.
                  "address1_country": "DE" if key == "tailspin" else "US",
                  "customertypecode": ctype, "emailaddress1": f"info@{key}.example.com",
                  "websiteurl": f"https://www.{key}.example.com"}
        values.update(extra)
        if values.get("creditlimit") is not None and "_transactioncurrencyid_value" not in values:
            values.update(_transactioncurrencyid_value=BASE_CURRENCY_ID, exchangerate=1.0,
                          creditlimit_base=values["creditlimit"])
        accounts[key] = _insert(db, "accounts", key, next(m), **values)
    for first, last, acc, job, phone, email in (
            ("Robert", "Townes", "adatum", "Purchasing Manager", "+1 404 555 0111",
             "robert.townes@adatum.example.com"),
            ("Sara", "Lopez", "adatum", "Accountant", "+1 404 555 0112",
             "sara.lopez@adatum.example.com"),
            ("Mark", "Hanson", "trey", "Owner", "+1 312 555 0121",
             "mark.hanson@treyresearch.example.com"),
            ("Nina", "Berg", "fineart", "Office Manager", "+1 305 555 0131",
             "nina.berg@fineartschool.example.com"),
            ("Tom", "Wilson", "fabrikam", "Sales Director", "+1 404 555 0211",
             "tom.wilson@fabrikam.example.com"),
            ("Yvonne", "McKay", "contoso", "Buyer", "+1 206 555 0311",
             "yvonne.mckay@contoso.example.com"),
            ("Rene", "Valdes", "fourth", "Store Manager", "+1 503 555 0312",
             "rene.valdes@fourthcoffee.example.com"),
            ("Lisa", "Chen", "", "Consultant", "+1 206 555 0190", "lisa.chen@example.com")):
        values: dict[str, Any] = {"firstname": first, "lastname": last, "jobtitle": job,
                                  "telephone1": phone, "emailaddress1": email}
        if acc:
            values.update(_parentcustomerid_value=accounts[acc],
                          _parentcustomerid_type="accounts")
        cid = _insert(db, "contacts", f"{first} {last}", next(m), **values)
        if (first, acc) in (("Robert", "adatum"), ("Yvonne", "contoso")):
            db.update("accounts", "accountid", accounts[acc], {"_primarycontactid_value": cid})
