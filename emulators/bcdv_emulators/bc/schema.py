"""Business Central API v2.0 entity definitions (reference section A.4).

Text lengths follow the standard tables (Customer Name Text[100], Address Text[100],
Address 2 Text[50], City Text[30], County Text[30], Post Code Code[20], Phone Text[30],
E-Mail Text[80], Home Page Text[80], No. Code[20], ...). ``code`` properties are upper-cased
on write like AL Code fields.
"""
from __future__ import annotations

from bcdv_emulators.model import EntityDef, Prop

BLANK = "_x0020_"
BLANK_GUID = "00000000-0000-0000-0000-000000000000"
BLANK_DATE = "0001-01-01"


# Captions of the read-only page controls, as BC names them in "Control '<caption>' is
# read-only." (the APIV2 pages' Caption properties).
CAPTIONS = {"id": "Id", "lastModifiedDateTime": "Last Modified Date", "balanceDue": "Balance Due",
            "balance": "Balance", "taxAreaDisplayName": "Tax Area Display Name",
            "companyName": "Company Name", "contactBusinessRelation": "Contact Business Relation",
            "searchName": "Search Name", "lastInteractionDate": "Last Interaction Date"}


def _ro(name: str, kind: str, **kw: object) -> Prop:
    kw.setdefault("caption", CAPTIONS.get(name, name))
    return Prop(name, kind, read_only=True, **kw)  # type: ignore[arg-type]


def _text(name: str, n: int, **kw: object) -> Prop:
    return Prop(name, "string", max_len=n, default="", **kw)  # type: ignore[arg-type]


def _code(name: str, n: int, **kw: object) -> Prop:
    return Prop(name, "code", max_len=n, default="", **kw)  # type: ignore[arg-type]


def _guid(name: str) -> Prop:
    return Prop(name, "guid", default=BLANK_GUID)


def _address() -> list[Prop]:
    return [_text("addressLine1", 100), _text("addressLine2", 50), _text("city", 30),
            _text("state", 30), _code("country", 10), _code("postalCode", 20)]


COMPANIES = EntityDef("companies", "company", "id", [
    _ro("id", "guid"), _ro("systemVersion", "string"), _ro("timestamp", "bigint"),
    _ro("name", "string", max_len=30), _ro("displayName", "string", max_len=250),
    _ro("businessProfileId", "string"), _ro("systemCreatedAt", "datetime"),
    _ro("systemCreatedBy", "guid"), _ro("systemModifiedAt", "datetime"),
    _ro("systemModifiedBy", "guid"),
], company_scoped=False, methods=("GET",))

CUSTOMERS = EntityDef("customers", "customer", "id", [
    _ro("id", "guid"), _code("number", 20), _text("displayName", 100),
    Prop("type", "enum", members=("Company", "Person"), default="Company"),
    *_address(), _text("phoneNumber", 30), _text("email", 80), _text("website", 80),
    _code("salespersonCode", 20), _ro("balanceDue", "decimal", default=0.0),
    Prop("creditLimit", "decimal", default=0.0), Prop("taxLiable", "bool", default=False),
    _guid("taxAreaId"), _ro("taxAreaDisplayName", "string", default=""),
    _text("taxRegistrationNumber", 20), _guid("currencyId"), _code("currencyCode", 10),
    _guid("paymentTermsId"), _guid("shipmentMethodId"), _guid("paymentMethodId"),
    Prop("blocked", "enum", members=(BLANK, "Ship", "Invoice", "All"), default=BLANK),
    _ro("lastModifiedDateTime", "datetime"),
], number_prefix="C")

VENDORS = EntityDef("vendors", "vendor", "id", [
    _ro("id", "guid"), _code("number", 20), _text("displayName", 100), *_address(),
    _text("phoneNumber", 30), _text("email", 80), _text("website", 80),
    _text("taxRegistrationNumber", 20), _guid("currencyId"), _code("currencyCode", 10),
    _code("irs1099Code", 10), _guid("paymentTermsId"), _guid("paymentMethodId"),
    Prop("taxLiable", "bool", default=False),
    Prop("blocked", "enum", members=(BLANK, "Payment", "All"), default=BLANK),
    _ro("balance", "decimal", default=0.0), _ro("lastModifiedDateTime", "datetime"),
], number_prefix="V")

CONTACT_RELATIONS = (BLANK, "None", "Customer", "Vendor", "Bank_x0020_Account", "Employee",
                     "Multiple", "Other")
CONTACTS = EntityDef("contacts", "contact", "id", [
    _ro("id", "guid"), _code("number", 20),
    Prop("type", "enum", members=("Company", "Person"), default="Company"),
    _text("displayName", 100), _text("jobTitle", 30), _code("companyNumber", 20),
    _ro("companyName", "string", default=""),
    _ro("contactBusinessRelation", "enum", members=CONTACT_RELATIONS, default="None"),
    *_address(), _text("phoneNumber", 30), _text("mobilePhoneNumber", 30), _text("email", 80),
    _text("website", 80), _ro("searchName", "code", default=""),
    Prop("privacyBlocked", "bool", default=False), _text("taxRegistrationNumber", 20),
    _ro("lastInteractionDate", "date", default=BLANK_DATE),
    _ro("lastModifiedDateTime", "datetime"),
], number_prefix="CT")

CURRENCIES = EntityDef("currencies", "currency", "id", [
    _ro("id", "guid"), _code("code", 10), _text("displayName", 30), _text("symbol", 10),
    Prop("amountDecimalPlaces", "string", max_len=5, default="2:2"),
    Prop("amountRoundingPrecision", "decimal", default=0.01),
    _ro("lastModifiedDateTime", "datetime"),
])

PAYMENT_TERMS = EntityDef("paymentTerms", "paymentTerm", "id", [
    _ro("id", "guid"), _code("code", 10), _text("displayName", 100),
    Prop("dueDateCalculation", "string", max_len=32, default=""),
    Prop("discountDateCalculation", "string", max_len=32, default=""),
    Prop("discountPercent", "decimal", default=0.0),
    Prop("calculateDiscountOnCreditMemos", "bool", default=False),
    _ro("lastModifiedDateTime", "datetime"),
])

SHIPMENT_METHODS = EntityDef("shipmentMethods", "shipmentMethod", "id", [
    _ro("id", "guid"), _code("code", 10), _text("displayName", 100),
    _ro("lastModifiedDateTime", "datetime"),
])

PAYMENT_METHODS = EntityDef("paymentMethods", "paymentMethod", "id", [
    _ro("id", "guid"), _code("code", 10), _text("displayName", 100),
    _ro("lastModifiedDateTime", "datetime"),
])

SALESPEOPLE = EntityDef("salespeoplePurchasers", "salespersonPurchaser", "id", [
    _ro("id", "guid"), _code("code", 20), _text("displayName", 50), _text("email", 80),
    _text("email2", 80), _text("phoneNo", 30), _text("jobTitle", 30),
    Prop("commisionPercent", "decimal", default=0.0, min_value=0, max_value=100),
    Prop("privacyBlocked", "bool", default=False), Prop("blocked", "bool", default=False),
    _ro("lastModifiedDateTime", "datetime"),
])

# Page 30085 "APIV2- Currency Exchange Rates": InsertAllowed/ModifyAllowed/DeleteAllowed false,
# so GET only (dynamics_currencyexchangerate.md lists only GET).
CURRENCY_EXCHANGE_RATES = EntityDef("currencyExchangeRates", "currencyExchangeRate", "id", [
    _ro("id", "guid"), _ro("currencyCode", "code", max_len=10, default=""),
    _ro("startingDate", "date", default=BLANK_DATE),
    _ro("exchangeRateAmount", "decimal", default=0.0),
    _ro("relationalCurrencyCode", "code", max_len=10, default=""),
    _ro("relationalExchangeRateAmount", "decimal", default=0.0),
    _ro("lastModifiedDateTime", "datetime"),
], methods=("GET",))

ENTITIES = [COMPANIES, CUSTOMERS, VENDORS, CONTACTS, CURRENCIES, PAYMENT_TERMS,
            SHIPMENT_METHODS, PAYMENT_METHODS, SALESPEOPLE, CURRENCY_EXCHANGE_RATES]
BY_SET = {e.set_name: e for e in ENTITIES}

# Primary keys of the source tables ("No." / "Code"): unique per company, never blank.
KEY_FIELDS = {"customers": "number", "vendors": "number", "contacts": "number",
              "currencies": "code", "paymentTerms": "code", "shipmentMethods": "code",
              "paymentMethods": "code", "salespeoplePurchasers": "code"}
# SQLite indexes for what writes and common reads look up, so their cost does not grow
# with the table: the keys above, the contact company link, exchange rates by currency/date,
# and the last-modified time a delta read filters on (a read of the records changed since a
# watermark costs what it returns, as on a database server, not a walk of every record).
INDEXES = {**{s: [("_company", f), ("_company", "lastModifiedDateTime")]
              for s, f in KEY_FIELDS.items()},
           "contacts": [("_company", "number"), ("_company", "companyNumber", "type"),
                        ("_company", "lastModifiedDateTime")],
           "currencyExchangeRates": [("_company", "currencyCode", "startingDate")]}

# Single-valued navigation properties usable in $expand: name -> (id property, target set).
NAVIGATION = {
    "customers": {"currency": ("currencyId", "currencies"),
                  "paymentTerm": ("paymentTermsId", "paymentTerms"),
                  "shipmentMethod": ("shipmentMethodId", "shipmentMethods"),
                  "paymentMethod": ("paymentMethodId", "paymentMethods")},
    "vendors": {"currency": ("currencyId", "currencies"),
                "paymentTerm": ("paymentTermsId", "paymentTerms"),
                "paymentMethod": ("paymentMethodId", "paymentMethods")},
}
# Reference properties validated on write: property -> (target set, AL caption for messages).
GUID_REFS = {"currencyId": ("currencies", "Currency"),
             "paymentTermsId": ("paymentTerms", "Payment Term"),
             "shipmentMethodId": ("shipmentMethods", "Shipment Method"),
             "paymentMethodId": ("paymentMethods", "Payment Method")}
