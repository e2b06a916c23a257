"""Dataverse table definitions (reference section B.5): columns, types, lengths, choices.

Lookups are stored in their ``_x_value`` column; polymorphic ones (ownerid, parentcustomerid)
also keep the target's entity set in a hidden ``_x_type`` column.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from bcdv_emulators.model import EntityDef, Prop

STATE = {0: "Active", 1: "Inactive"}
STATUS = {1: "Active", 2: "Inactive"}
STATUS_STATE = {1: 0, 2: 1}
PAYMENT_TERMS = {1: "Net 30", 2: "2% 10, Net 30", 3: "Net 45", 4: "Net 60"}
ADDRESS_TYPE = {1: "Bill To", 2: "Ship To", 3: "Primary", 4: "Other"}
# Standard address1_/address2_ choices of account and contact (BC's option mappings use them).
FREIGHT_TERMS = {1: "FOB", 2: "No Charge"}
SHIPPING_METHOD = {1: "Airborne", 2: "DHL", 3: "FedEx", 4: "UPS", 5: "Postal Mail",
                   6: "Full Load", 7: "Will Call"}
CUSTOMER_TYPE = {1: "Competitor", 2: "Consultant", 3: "Customer", 4: "Investor", 5: "Partner",
                 6: "Influencer", 7: "Press", 8: "Prospect", 9: "Reseller", 10: "Supplier",
                 11: "Vendor", 12: "Other"}
INDUSTRY = dict(enumerate([
    "Accounting", "Agriculture and Non-petrol Natural Resource Extraction",
    "Broadcasting Printing and Publishing", "Brokers", "Building Supply Retail",
    "Business Services", "Consulting", "Consumer Services",
    "Design, Direction and Creative Management", "Distributors, Dispatchers and Processors",
    "Doctor's Offices and Clinics", "Durable Manufacturing", "Eating and Drinking Places",
    "Entertainment Retail", "Equipment Rental and Leasing", "Financial",
    "Food and Tobacco Processing", "Inbound Capital Intensive Processing",
    "Inbound Repair and Services", "Insurance", "Legal Services",
    "Non-Durable Merchandise Retail", "Outbound Consumer Service",
    "Petrochemical Extraction and Distribution", "Service Retail", "SIG Affiliations",
    "Social Services", "Special Outbound Trade Contractors", "Specialty Realty",
    "Transportation", "Utility Creation and Distribution", "Vehicle Retail", "Wholesale"], 1))
ACCESS_MODE = {0: "Read-Write", 1: "Administrative", 2: "Read", 3: "Support User",
               4: "Non-interactive", 5: "Delegated Admin"}


def s(name: str, n: int, **kw: object) -> Prop:
    """A String column of max length ``n``."""
    return Prop(name, "string", max_len=n, **kw)  # type: ignore[arg-type]


def ro(name: str, kind: str, **kw: object) -> Prop:
    """A read-only column."""
    return Prop(name, kind, read_only=True, **kw)  # type: ignore[arg-type]


def lookup(name: str, targets: dict[str, tuple[str, ...]], **kw: object) -> Prop:
    """A lookup: navigation property name -> allowed target entity sets."""
    return Prop(name, "lookup", targets=targets, **kw)  # type: ignore[arg-type]


def _address(prefix: str = "address1") -> list[Prop]:
    return [s(f"{prefix}_name", 200), s(f"{prefix}_line1", 250), s(f"{prefix}_line2", 250),
            s(f"{prefix}_line3", 250), s(f"{prefix}_city", 80),
            s(f"{prefix}_stateorprovince", 50), s(f"{prefix}_postalcode", 20),
            s(f"{prefix}_country", 80), s(f"{prefix}_county", 50),
            s(f"{prefix}_telephone1", 50), s(f"{prefix}_fax", 50),
            Prop(f"{prefix}_latitude", "double", min_value=-90, max_value=90),
            Prop(f"{prefix}_longitude", "double", min_value=-180, max_value=180),
            Prop(f"{prefix}_addresstypecode", "option", options=ADDRESS_TYPE),
            Prop(f"{prefix}_freighttermscode", "option", options=FREIGHT_TERMS),
            Prop(f"{prefix}_shippingmethodcode", "option", options=SHIPPING_METHOD),
            ro(f"{prefix}_composite", "memo", max_len=1000)]


def _owned() -> list[Prop]:
    """Columns every user-owned table has."""
    return [
        Prop("statecode", "option", options=STATE, default=0),
        Prop("statuscode", "option", options=STATUS, default=1),
        lookup("ownerid", {"ownerid": ("systemusers", "teams")}),
        Prop("_ownerid_type", "string", hidden=True, read_only=True),
        ro("owningbusinessunit", "lookup", targets={"owningbusinessunit": ("businessunits",)}),
        lookup("transactioncurrencyid", {"transactioncurrencyid": ("transactioncurrencies",)}),
        ro("exchangerate", "decimal"),
        ro("createdon", "datetime"), ro("modifiedon", "datetime"),
        ro("createdby", "lookup", targets={"createdby": ("systemusers",)}),
        ro("modifiedby", "lookup", targets={"modifiedby": ("systemusers",)}),
        ro("versionnumber", "bigint"),
    ]


ACCOUNTS = EntityDef("accounts", "account", "accountid", [
    Prop("accountid", "guid", create_only=True),
    s("name", 160, required_level="ApplicationRequired"), s("accountnumber", 20),
    *_address(), s("telephone1", 50), s("telephone2", 50), s("fax", 50),
    s("emailaddress1", 100), s("websiteurl", 200),
    Prop("customertypecode", "option", options=CUSTOMER_TYPE),
    Prop("paymenttermscode", "option", options=PAYMENT_TERMS),
    Prop("creditlimit", "money", min_value=0, max_value=100000000000000),
    ro("creditlimit_base", "money"),
    Prop("creditonhold", "bool", default=0),
    Prop("industrycode", "option", options=INDUSTRY),
    Prop("accountcategorycode", "option", options={1: "Preferred Customer", 2: "Standard"}),
    Prop("ownershipcode", "option", options={1: "Public", 2: "Private", 3: "Subsidiary",
                                             4: "Other"}),
    Prop("revenue", "money", min_value=0, max_value=100000000000000),
    ro("revenue_base", "money"),
    Prop("numberofemployees", "int", min_value=0, max_value=1000000000),
    Prop("description", "memo", max_len=2000),
    lookup("primarycontactid", {"primarycontactid": ("contacts",)}),
    lookup("parentaccountid", {"parentaccountid": ("accounts",)}),
    *_owned(),
], primary_name="name", logical_name="account")

CONTACTS = EntityDef("contacts", "contact", "contactid", [
    Prop("contactid", "guid", create_only=True),
    s("firstname", 50), s("middlename", 50),
    s("lastname", 50, required_level="ApplicationRequired"),
    ro("fullname", "string", max_len=160), s("jobtitle", 100), s("salutation", 100),
    s("emailaddress1", 100), s("emailaddress2", 100), s("telephone1", 50), s("telephone2", 50),
    s("mobilephone", 50), s("fax", 50), *_address(), s("websiteurl", 200),
    lookup("parentcustomerid", {"parentcustomerid_account": ("accounts",),
                                "parentcustomerid_contact": ("contacts",)}),
    Prop("_parentcustomerid_type", "string", hidden=True, read_only=True),
    Prop("paymenttermscode", "option", options=PAYMENT_TERMS),
    Prop("creditlimit", "money", min_value=0, max_value=100000000000000),
    ro("creditlimit_base", "money"),
    Prop("description", "memo", max_len=2000),
    Prop("birthdate", "date"),
    *_owned(),
], primary_name="fullname", logical_name="contact")

SYSTEMUSERS = EntityDef("systemusers", "systemuser", "systemuserid", [
    Prop("systemuserid", "guid"), ro("fullname", "string", max_len=200),
    s("firstname", 64), s("lastname", 64),
    s("internalemailaddress", 100, required_level="SystemRequired"),
    s("domainname", 1024), s("mobilephone", 64), s("address1_telephone1", 64),
    s("title", 128), s("jobtitle", 100),
    ro("isdisabled", "bool", default=0), Prop("islicensed", "bool", default=0),
    Prop("isintegrationuser", "bool", default=0),
    Prop("accessmode", "option", options=ACCESS_MODE, default=0),
    Prop("applicationid", "guid"), Prop("azureactivedirectoryobjectid", "guid"),
    lookup("businessunitid", {"businessunitid": ("businessunits",)}),
    ro("createdon", "datetime"), ro("modifiedon", "datetime"), ro("versionnumber", "bigint"),
], methods=("GET", "PATCH"), primary_name="fullname", logical_name="systemuser")

CURRENCIES = EntityDef("transactioncurrencies", "transactioncurrency", "transactioncurrencyid", [
    Prop("transactioncurrencyid", "guid", create_only=True),
    Prop("isocurrencycode", "string", max_len=5, create_only=True,
         required_level="SystemRequired"),
    s("currencyname", 100, required_level="SystemRequired"),
    s("currencysymbol", 10, required_level="SystemRequired"),
    Prop("exchangerate", "decimal", min_value=0.000000000001, max_value=100000000000,
         required_level="SystemRequired"),
    Prop("currencyprecision", "int", min_value=0, max_value=10, default=2),
    Prop("statecode", "option", options=STATE, default=0),
    Prop("statuscode", "option", options=STATUS, default=1),
    ro("createdon", "datetime"), ro("modifiedon", "datetime"),
    ro("createdby", "lookup", targets={"createdby": ("systemusers",)}),
    ro("modifiedby", "lookup", targets={"modifiedby": ("systemusers",)}),
    ro("versionnumber", "bigint"),
], primary_name="currencyname", logical_name="transactioncurrency")

BUSINESSUNITS = EntityDef("businessunits", "businessunit", "businessunitid", [
    Prop("businessunitid", "guid"), s("name", 160),
    ro("createdon", "datetime"), ro("modifiedon", "datetime"), ro("versionnumber", "bigint"),
], methods=("GET",), primary_name="name", logical_name="businessunit")

TEAMS = EntityDef("teams", "team", "teamid", [
    Prop("teamid", "guid"), s("name", 160),
    lookup("businessunitid", {"businessunitid": ("businessunits",)}),
    ro("createdon", "datetime"), ro("modifiedon", "datetime"), ro("versionnumber", "bigint"),
], methods=("GET",), primary_name="name", logical_name="team")

ENTITIES = [ACCOUNTS, CONTACTS, SYSTEMUSERS, CURRENCIES, BUSINESSUNITS, TEAMS]
BY_SET = {e.set_name: e for e in ENTITIES}
BY_LOGICAL = {e.logical_name: e for e in ENTITIES}
CHANGE_TRACKED = {"accounts", "contacts", "systemusers", "transactioncurrencies"}


def nav_map(ent: EntityDef) -> dict[str, Prop]:
    """Navigation property name -> lookup Prop (for @odata.bind)."""
    out = {}
    for p in ent.props:
        if p.kind == "lookup":
            for nav in p.targets:
                out[nav] = p
    return out


# --- table definitions (EntityMetadata) --------------------------------------------------------
# Values from Learn's table/entity reference pages (learn.microsoft.com/power-apps/developer/
# data-platform/reference/entities/<table>): names, ownership, description, object type code.


@dataclass(frozen=True)
class Table:
    """The EntityMetadata facts of one served table that its columns do not say."""

    schema_name: str
    collection_schema_name: str
    display_name: str
    display_collection_name: str
    object_type_code: int
    ownership: str
    """OwnershipTypes member: UserOwned, BusinessOwned, OrganizationOwned."""
    description: str
    metadata_id: str = ""
    """The MetadataId of a system table, the same in every environment (empty: generated)."""
    activities: bool = False
    """HasActivities, HasNotes, IsActivityParty and the other customer-table switches."""


TABLES = {
    "account": Table("Account", "Accounts", "Account", "Accounts", 1, "UserOwned",
                     "Business that represents a customer or potential customer. The company "
                     "that is billed in business transactions.",
                     "70816501-edb9-4740-a16c-6a5efbc05d84", activities=True),
    "contact": Table("Contact", "Contacts", "Contact", "Contacts", 2, "UserOwned",
                     "Person with whom a business unit has a relationship, such as customer, "
                     "supplier, and colleague.", activities=True),
    "systemuser": Table("SystemUser", "SystemUsers", "User", "Users", 8, "BusinessOwned",
                        "Person with access to the Microsoft CRM system and who owns objects in "
                        "the Microsoft CRM database."),
    "transactioncurrency": Table("TransactionCurrency", "TransactionCurrencies", "Currency",
                                 "Currencies", 9105, "OrganizationOwned",
                                 "Currency in which a financial transaction is carried out."),
    "businessunit": Table("BusinessUnit", "BusinessUnits", "Business Unit", "Business Units", 10,
                          "BusinessOwned", "Business, division, or department in the Microsoft "
                          "Dynamics 365 database."),
    "team": Table("Team", "Teams", "Team", "Teams", 9, "BusinessOwned",
                  "Collection of system users that routinely collaborate. Teams can be used to "
                  "simplify record sharing and provide team members with common access to "
                  "organization data when team members belong to different Business Units."),
}

# SchemaName words of the served columns ("address1_city" -> "Address1_City"); a part not
# listed is capitalised.
SCHEMA_WORDS = {
    "accountid": "AccountId", "accountnumber": "AccountNumber", "stateorprovince":
    "StateOrProvince", "postalcode": "PostalCode", "addresstypecode": "AddressTypeCode",
    "freighttermscode": "FreightTermsCode", "shippingmethodcode": "ShippingMethodCode",
    "emailaddress1": "EMailAddress1", "emailaddress2": "EMailAddress2", "websiteurl": "WebSiteURL",
    "customertypecode": "CustomerTypeCode", "paymenttermscode": "PaymentTermsCode",
    "creditlimit": "CreditLimit", "creditonhold": "CreditOnHold", "industrycode": "IndustryCode",
    "accountcategorycode": "AccountCategoryCode", "ownershipcode": "OwnershipCode",
    "numberofemployees": "NumberOfEmployees", "primarycontactid": "PrimaryContactId",
    "parentaccountid": "ParentAccountId", "statecode": "StateCode", "statuscode": "StatusCode",
    "ownerid": "OwnerId", "owningbusinessunit": "OwningBusinessUnit",
    "transactioncurrencyid": "TransactionCurrencyId", "exchangerate": "ExchangeRate",
    "createdon": "CreatedOn", "modifiedon": "ModifiedOn", "createdby": "CreatedBy",
    "modifiedby": "ModifiedBy", "versionnumber": "VersionNumber", "contactid": "ContactId",
    "firstname": "FirstName", "middlename": "MiddleName", "lastname": "LastName",
    "fullname": "FullName", "jobtitle": "JobTitle", "mobilephone": "MobilePhone",
    "parentcustomerid": "ParentCustomerId", "birthdate": "BirthDate",
    "systemuserid": "SystemUserId", "internalemailaddress": "InternalEMailAddress",
    "domainname": "DomainName", "isdisabled": "IsDisabled", "islicensed": "IsLicensed",
    "isintegrationuser": "IsIntegrationUser", "accessmode": "AccessMode",
    "applicationid": "ApplicationId", "azureactivedirectoryobjectid":
    "AzureActiveDirectoryObjectId", "businessunitid": "BusinessUnitId",
    "isocurrencycode": "ISOCurrencyCode",
    "currencyname": "CurrencyName", "currencysymbol": "CurrencySymbol",
    "currencyprecision": "CurrencyPrecision", "teamid": "TeamId",
}

# DisplayName labels of the served columns (Learn's table references); keyed by logical name,
# or "table.column" where tables differ.
LABELS = {
    "account.name": "Account Name", "accountnumber": "Account Number", "account.accountid":
    "Account", "contact.contactid": "Contact", "systemuser.systemuserid": "User",
    "transactioncurrencyid": "Currency", "businessunit.businessunitid": "Business Unit",
    "team.teamid": "Team", "businessunit.name": "Name", "team.name": "Team Name",
    "account.telephone1": "Main Phone", "contact.telephone1": "Business Phone",
    "telephone2": "Other Phone", "fax": "Fax", "emailaddress1": "Email",
    "emailaddress2": "Email Address 2", "websiteurl": "Website", "customertypecode":
    "Relationship Type", "paymenttermscode": "Payment Terms", "creditlimit": "Credit Limit",
    "creditlimit_base": "Credit Limit (Base)", "creditonhold": "Credit Hold", "industrycode":
    "Industry", "accountcategorycode": "Category", "ownershipcode": "Ownership", "revenue":
    "Annual Revenue", "revenue_base": "Annual Revenue (Base)", "numberofemployees":
    "Number of Employees", "description": "Description", "primarycontactid": "Primary Contact",
    "parentaccountid": "Parent Account", "statecode": "Status", "statuscode": "Status Reason",
    "ownerid": "Owner", "owningbusinessunit": "Owning Business Unit", "exchangerate":
    "Exchange Rate", "createdon": "Created On", "modifiedon": "Modified On", "createdby":
    "Created By", "modifiedby": "Modified By", "versionnumber": "Version Number", "firstname":
    "First Name", "middlename": "Middle Name", "lastname": "Last Name", "fullname": "Full Name",
    "jobtitle": "Job Title", "salutation": "Salutation", "mobilephone": "Mobile Phone",
    "parentcustomerid": "Company Name", "birthdate": "Birthday", "internalemailaddress":
    "Primary Email", "domainname": "User Name", "title": "Title", "isdisabled": "Status",
    "islicensed": "User Licensed", "isintegrationuser": "Integration user mode", "accessmode":
    "Access Mode", "applicationid": "Application ID", "azureactivedirectoryobjectid":
    "Azure AD Object ID", "businessunitid": "Business Unit", "isocurrencycode": "Currency Code",
    "currencyname": "Currency Name", "currencysymbol": "Currency Symbol", "currencyprecision":
    "Currency Precision", "transactioncurrency.transactioncurrencyid": "Transaction Currency",
}
# The address columns' labels after "Address 1: " (Learn, account: "Address 1: Street 1", ...).
ADDRESS_LABELS = {"line1": "Street 1", "line2": "Street 2", "line3": "Street 3",
                  "stateorprovince": "State/Province", "postalcode": "ZIP/Postal Code",
                  "country": "Country/Region", "telephone1": "Telephone 1",
                  "addresstypecode": "Address Type", "freighttermscode": "Freight Terms",
                  "shippingmethodcode": "Shipping Method", "composite": "Address"}


def schema_name(column: str) -> str:
    """The SchemaName of a served column (``address1_city`` -> ``Address1_City``)."""
    return "_".join(SCHEMA_WORDS.get(part) or part[:1].upper() + part[1:]
                    for part in column.split("_"))


def label_of(ent: EntityDef, p: Prop) -> str:
    """The DisplayName label of a served column."""
    found = LABELS.get(f"{ent.logical_name}.{p.name}") or LABELS.get(p.name)
    if found:
        return found
    if p.name.startswith(("address1_", "address2_")):
        rest = p.name.split("_", 1)[1]
        return f"Address {p.name[7]}: {ADDRESS_LABELS.get(rest) or rest.title()}"
    return re.sub(r"(?<=[a-z])(?=[A-Z0-9])", " ", schema_name(p.name))
