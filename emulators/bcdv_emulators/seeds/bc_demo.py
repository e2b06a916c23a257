"""The Business Central demo company (CRONUS USA-like).

``empty``: company ``CRONUS USA, Inc.`` (id ``COMPANY_ID``), LCY = USD.

``demo`` adds (all in that company):

- currencies EUR, GBP, CAD, MXN (LCY USD is not a row, as in BC), and currencyExchangeRates
  for each of them starting 2025-01-01 and 2026-01-01 (relational currency blank = LCY; amount
  1 of the currency = relationalExchangeRateAmount USD, as CRONUS sets them up);
- paymentTerms 14 DAYS, 1M(8D), 30 DAYS, CM, COD, and NET30, 2%10NET30, NET45, NET60 (the
  codes BC's PAYMENT TERMS option mapping gives Dataverse's default payment-term options, so
  the Dataverse demo accounts' terms exist in the company); shipmentMethods CFR, CIF, DDP,
  EXW, FOB, PICKUP; paymentMethods BANK, CASH, CHECK;
- salespeoplePurchasers PS Peter Saddow, JO Jim Olive, OF Otis Falls, HR Helen Ray,
  BC Benjamin Chiu (blocked);
- customers 10000..80000: Adatum Corporation, Trey Research, School of Fine Art, Alpine Ski
  House, Relecloud, Coho Winery (EUR), Litware, Inc. (blocked All), Jessica Reed (a Person);
  Adatum, Trey Research, School of Fine Art and Alpine Ski House also exist as Dataverse
  accounts with the same name and phone;
- vendors 10000..50000: Fabrikam, Inc., First Up Consultants, Graphic Design Institute,
  Wide World Importers (CAD), Nod Publishers (blocked Payment); Fabrikam also exists as a
  Dataverse account of relationship type Vendor;
- contacts: a company contact per customer/vendor (CT000010...) and person contacts under
  them (Robert Townes @Adatum, Sara Lopez @Adatum, Mark Hanson @Trey Research, Nina Berg
  @School of Fine Art, Tom Wilson @Fabrikam, Lisa Chen with no company).

All timestamps are fixed (2026-01-05T09:00:00Z plus a minute per record).
"""
from __future__ import annotations

from typing import Any

from bcdv_emulators.bc.schema import BLANK, BLANK_DATE, BLANK_GUID, BY_SET
from bcdv_emulators.db import Database
from bcdv_emulators.seeds import gid

COMPANY_ID = gid("bc", "company", "CRONUS USA, Inc.")
BASE_MS = 1767603600000  # 2026-01-05T09:00:00Z
SYSTEM_USER = gid("bc", "user", "ADMIN")


def _row(db: Database, set_name: str, key: str, minute: int, **values: Any) -> None:
    ent = BY_SET[set_name]
    row: dict[str, Any] = {p.name: p.default for p in ent.props}
    if ent.company_scoped:
        row["_company"] = COMPANY_ID
    row.update(values)
    row["id"] = gid("bc", set_name, key)
    if "lastModifiedDateTime" in ent.by_name:
        row["lastModifiedDateTime"] = BASE_MS + minute * 60_000
    row["_rv"] = db.next_counter("rv")
    db.insert(set_name, row)


def load_empty(db: Database) -> None:
    """The company and its LCY setup."""
    db.insert("companies", {
        "id": COMPANY_ID, "systemVersion": "26.1.33404.35079", "timestamp": 47433,
        "name": "CRONUS USA, Inc.", "displayName": "CRONUS USA, Inc.", "businessProfileId": "",
        "systemCreatedAt": BASE_MS, "systemCreatedBy": SYSTEM_USER,
        "systemModifiedAt": BASE_MS, "systemModifiedBy": SYSTEM_USER, "_rv": 1})
    db.meta_set(f"lcy:{COMPANY_ID}", "USD")


CURRENCIES = [("EUR", "Euro", "€"), ("GBP", "British Pound", "£"),
              ("CAD", "Canadian Dollar", "$"), ("MXN", "Mexican Peso", "$")]
# currency -> ((starting date, exchangeRateAmount, relationalExchangeRateAmount), ...)
EXCHANGE_RATES = {"EUR": (("2025-01-01", 1.0, 1.0412), ("2026-01-01", 1.0, 1.1718)),
                  "GBP": (("2025-01-01", 1.0, 1.2516), ("2026-01-01", 1.0, 1.3461)),
                  "CAD": (("2025-01-01", 1.0, 0.6953), ("2026-01-01", 1.0, 0.7289)),
                  "MXN": (("2025-01-01", 10.0, 0.4812), ("2026-01-01", 10.0, 0.5497))}
TERMS = [("14 DAYS", "Net 14 days", "14D", "", 0), ("1M(8D)", "1 Month/2% 8 days", "1M", "8D", 2),
         ("30 DAYS", "Net 30 days", "30D", "", 0), ("CM", "Current month", "CM", "", 0),
         ("COD", "Cash on delivery", "0D", "", 0)]
# The codes of Dataverse's default payment-term options (include/mappings PAYMENT_TERMS).
OPTION_TERMS = [("NET30", "Net 30", "30D", "", 0), ("2%10NET30", "2% 10; Net 30", "30D", "10D", 2),
                ("NET45", "Net 45", "45D", "", 0), ("NET60", "Net 60", "60D", "", 0)]
SHIPMENT = [("CFR", "Cost and Freight"), ("CIF", "Cost Insurance and Freight"),
            ("DDP", "Delivered Duty Paid"), ("EXW", "Ex Warehouse"), ("FOB", "Free on Board"),
            ("PICKUP", "Pickup at Location")]
PAYMENT = [("BANK", "Bank Transfer"), ("CASH", "Cash"), ("CHECK", "Check")]
SALESPEOPLE = [("PS", "Peter Saddow", "peter.saddow@cronus-demosite.com", "+1 425 555 0101",
                "Sales Manager", 5.0, False),
               ("JO", "Jim Olive", "jim.olive@cronus-demosite.com", "+1 425 555 0102",
                "Account Manager", 3.5, False),
               ("OF", "Otis Falls", "otis.falls@cronus-demosite.com", "+1 425 555 0103",
                "Sales Representative", 2.0, False),
               ("HR", "Helen Ray", "helen.ray@cronus-demosite.com", "+1 425 555 0104",
                "Purchasing Agent", 0.0, False),
               ("BC", "Benjamin Chiu", "benjamin.chiu@cronus-demosite.com", "+1 425 555 0105",
                "Sales Representative", 2.5, True)]
# number, name, address, city, state, zip, phone, email, website, sp, currency, terms, ship,
# blocked, type, credit limit
CUSTOMERS = [
    ("10000", "Adatum Corporation", "192 Market Square", "Atlanta", "GA", "31772",
     "+1 404 555 0110", "robert.townes@adatum.example.com", "www.adatum.example.com", "PS", "",
     "30 DAYS", "EXW", BLANK, "Company", 50000.0),
    ("20000", "Trey Research", "153 Thomas Drive", "Chicago", "IL", "61236", "+1 312 555 0120",
     "mark.hanson@treyresearch.example.com", "www.treyresearch.example.com", "JO", "",
     "14 DAYS", "FOB", BLANK, "Company", 25000.0),
    ("30000", "School of Fine Art", "10 High Tower Green", "Miami", "FL", "37125",
     "+1 305 555 0130", "office@fineartschool.example.com", "", "PS", "", "1M(8D)", "",
     BLANK, "Company", 0.0),
    ("40000", "Alpine Ski House", "10 Deerfield Road", "Denver", "CO", "80201",
     "+1 303 555 0140", "info@alpineskihouse.example.com", "www.alpineskihouse.example.com",
     "OF", "", "30 DAYS", "PICKUP", BLANK, "Company", 10000.0),
    ("50000", "Relecloud", "25 Water Way", "Seattle", "WA", "98101", "+1 206 555 0150",
     "ap@relecloud.example.com", "www.relecloud.example.com", "JO", "", "CM", "CIF", "Ship",
     "Company", 75000.0),
    ("60000", "Coho Winery", "Weinstrasse 12", "Mainz", "", "55116", "+49 6131 555 0160",
     "einkauf@cohowinery.example.com", "www.cohowinery.example.com", "PS", "EUR", "30 DAYS",
     "DDP", BLANK, "Company", 20000.0),
    ("70000", "Litware, Inc.", "1 Microsoft Way", "Redmond", "WA", "98052", "+1 425 555 0170",
     "billing@litware.example.com", "", "OF", "", "COD", "", "All", "Company", 0.0),
    ("80000", "Jessica Reed", "44 Elm Street", "Boston", "MA", "02108", "+1 617 555 0180",
     "jessica.reed@example.com", "", "", "", "COD", "PICKUP", BLANK, "Person", 1500.0),
]
VENDORS = [
    ("10000", "Fabrikam, Inc.", "51 Lake Street", "Atlanta", "GA", "31772", "+1 404 555 0210",
     "orders@fabrikam.example.com", "www.fabrikam.example.com", "", "30 DAYS", BLANK),
    ("20000", "First Up Consultants", "100 Day Drive", "Chicago", "IL", "61236",
     "+1 312 555 0220", "billing@firstupconsultants.example.com", "", "", "14 DAYS", BLANK),
    ("30000", "Graphic Design Institute", "7 Nelson Avenue", "Miami", "FL", "37125",
     "+1 305 555 0230", "accounts@graphicdesigninstitute.example.com", "", "", "1M(8D)", BLANK),
    ("40000", "Wide World Importers", "2 Harbour Road", "Toronto", "ON", "M5H 2N2",
     "+1 416 555 0240", "sales@wideworldimporters.example.com", "", "CAD", "30 DAYS", BLANK),
    ("50000", "Nod Publishers", "30 Queen Street", "Boston", "MA", "02108", "+1 617 555 0250",
     "info@nodpublishers.example.com", "", "", "CM", "Payment"),
]
PERSONS = [  # name, job, company contact key, phone, mobile, email
    ("Robert Townes", "Purchasing Manager", "C10000", "+1 404 555 0111", "+1 404 555 0911",
     "robert.townes@adatum.example.com"),
    ("Sara Lopez", "Accountant", "C10000", "+1 404 555 0112", "", "sara.lopez@adatum.example.com"),
    ("Mark Hanson", "Owner", "C20000", "+1 312 555 0121", "+1 312 555 0921",
     "mark.hanson@treyresearch.example.com"),
    ("Nina Berg", "Office Manager", "C30000", "+1 305 555 0131", "",
     "nina.berg@fineartschool.example.com"),
    ("Tom Wilson", "Sales Director", "V10000", "+1 404 555 0211", "",
     "tom.wilson@fabrikam.example.com"),
    ("Lisa Chen", "Consultant", "", "+1 206 555 0190", "+1 206 555 0990", "lisa.chen@example.com"),
]


def load_demo(db: Database) -> None:
    """The CRONUS-like demo records."""
    minute = 0

    def tick() -> int:
        """The next minute offset for a record's timestamp."""
        nonlocal minute
        minute += 1
        return minute

    currency_minute = {}
    for code, name, symbol in CURRENCIES:
        currency_minute[code] = tick()
        _row(db, "currencies", code, currency_minute[code], code=code, displayName=name,
             symbol=symbol, amountDecimalPlaces="2:2", amountRoundingPrecision=0.01)
    for code, name, due, disc, pct in TERMS:
        _row(db, "paymentTerms", code, tick(), code=code, displayName=name,
             dueDateCalculation=due, discountDateCalculation=disc, discountPercent=pct,
             calculateDiscountOnCreditMemos=0)
    for code, name in SHIPMENT:
        _row(db, "shipmentMethods", code, tick(), code=code, displayName=name)
    for code, name in PAYMENT:
        _row(db, "paymentMethods", code, tick(), code=code, displayName=name)
    for code, name, email, phone, job, pct, blocked in SALESPEOPLE:
        _row(db, "salespeoplePurchasers", code, tick(), code=code, displayName=name,
             email=email, phoneNo=phone, jobTitle=job, commisionPercent=pct,
             blocked=int(blocked), privacyBlocked=0)
    for (no, name, addr, city, state, zip_, phone, email, web, sp, cur, terms, ship, blocked,
         ctype, credit) in CUSTOMERS:
        _row(db, "customers", no, tick(), number=no, displayName=name, type=ctype,
             addressLine1=addr, city=city, state=state,
             country="DE" if cur == "EUR" else "US", postalCode=zip_, phoneNumber=phone,
             email=email, website=web, salespersonCode=sp, creditLimit=credit,
             taxLiable=int(cur == ""), currencyId=gid("bc", "currencies", cur) if cur
             else BLANK_GUID, currencyCode=cur,
             paymentTermsId=gid("bc", "paymentTerms", terms),
             shipmentMethodId=gid("bc", "shipmentMethods", ship) if ship else BLANK_GUID,
             paymentMethodId=gid("bc", "paymentMethods", "BANK"), blocked=blocked,
             balanceDue=round(credit * 0.1, 2))
        _contact(db, f"C{no}", name, "Company", "", "Customer", tick(), addr, city, state,
                 zip_, phone, "", email, web)
    for no, name, addr, city, state, zip_, phone, email, web, cur, terms, blocked in VENDORS:
        _row(db, "vendors", no, tick(), number=no, displayName=name, addressLine1=addr,
             city=city, state=state, country="CA" if cur == "CAD" else "US", postalCode=zip_,
             phoneNumber=phone, email=email, website=web,
             currencyId=gid("bc", "currencies", cur) if cur else BLANK_GUID, currencyCode=cur,
             paymentTermsId=gid("bc", "paymentTerms", terms),
             paymentMethodId=gid("bc", "paymentMethods", "CHECK"), blocked=blocked,
             taxLiable=0, balance=0.0)
        _contact(db, f"V{no}", name, "Company", "", "Vendor", tick(), addr, city, state, zip_,
                 phone, "", email, web)
    for name, job, company_key, phone, mobile, email in PERSONS:
        _contact(db, f"P:{name}", name, "Person", company_key, "None", tick(), "", "", "", "",
                 phone, mobile, email, "", job)
    db.meta_set(f"no:{COMPANY_ID}:contacts", int(db.meta_get("_contact_seq", 0)))
    # Last, so the other records keep their timestamps and row versions (etags).
    for code, rates in EXCHANGE_RATES.items():
        for start, amount, relational in rates:
            _row(db, "currencyExchangeRates", f"{code}:{start}", currency_minute[code],
                 currencyCode=code, startingDate=start, exchangeRateAmount=amount,
                 relationalCurrencyCode="", relationalExchangeRateAmount=relational)
    for code, name, due, disc, pct in OPTION_TERMS:
        _row(db, "paymentTerms", code, tick(), code=code, displayName=name,
             dueDateCalculation=due, discountDateCalculation=disc, discountPercent=pct,
             calculateDiscountOnCreditMemos=0)


def _contact(db: Database, key: str, name: str, ctype: str, company_key: str, relation: str,
             minute: int, addr: str, city: str, state: str, zip_: str, phone: str, mobile: str,
             email: str, web: str, job: str = "") -> None:
    seq = int(db.meta_get("_contact_seq", 0)) + 1
    db.meta_set("_contact_seq", seq)
    number = f"CT{seq * 10:06d}"
    db.meta_set(f"_contact_no:{key}", number)
    company_no = db.meta_get(f"_contact_no:{company_key}", "") if company_key else ""
    company_name = ""
    if company_no:
        rows = db.select("contacts", '"number"=?', (company_no,), limit=1)
        company_name = rows[0]["displayName"] if rows else ""
    if key[0] in "CV" and ":" not in key:
        owner = "customers" if key[0] == "C" else "vendors"
        db.meta_set(f"rel:{owner}:{gid('bc', owner, key[1:])}", gid("bc", "contacts", key))
    _row(db, "contacts", key, minute, number=number, type=ctype, displayName=name,
         jobTitle=job, companyNumber=company_no if ctype == "Person" else number,
         companyName=company_name if ctype == "Person" else name,
         contactBusinessRelation=relation, addressLine1=addr, city=city, state=state,
         country="US", postalCode=zip_, phoneNumber=phone, mobilePhoneNumber=mobile,
         email=email, website=web, searchName=name.upper(), privacyBlocked=0,
         lastInteractionDate=BLANK_DATE)
