"""The field and value an API error is about, read from Business Central's and Dataverse's
messages (bcdv.engine.api_errors).

Message formats:
- Business Central: "Error codes" of the API reference,
  https://learn.microsoft.com/en-us/dynamics365/business-central/dev-itpro/api-reference/v1.0/dynamics_error_codes
  (Application_StringExceededLength "The length of the string is 57, but it must be less than
  or equal to 50 characters. Value: ...", every message followed by "  CorrelationId:  <guid>.")
  and the emulator's texts (bcdv_emulators.bc.values, .bc.writes).
- Dataverse: "Troubleshoot Dataverse Web API client errors",
  https://learn.microsoft.com/en-us/troubleshoot/power-platform/power-apps/dataverse/web-api-client-errors
  ("Invalid property 'Name' was found in entity 'Microsoft.Dynamics.CRM.account'", "Could not
  find a property named ...", "An undeclared property ..."), and the Web API error handling
  page, https://learn.microsoft.com/en-us/power-apps/developer/data-platform/webapi/compose-http-requests-handle-errors
  (0x80044331 "A validation error occurred.  The length of the 'subject' attribute of the
  'task' entity exceeded the maximum allowed length of '200'."), as the emulator answers them
  (bcdv_emulators.dv.values, .dv.writes).
"""

from __future__ import annotations

from bcdv.engine.api_errors import parse_api_error, parse_business_central, parse_dataverse

CORRELATION = "  CorrelationId:  3f1c5a0e-2b7d-4c1e-9a57-0d7b3e2f8c11."
CUSTOMER = {"displayName": "Adatum Corporation", "city": "Redmond", "state": "WA",
            "country": "United States", "phoneNumber": "+1 425 555 0100"}


def test_bc_string_too_long_names_the_field_holding_the_value() -> None:
    message = ("The length of the string is 13, but it must be less than or equal to 10 "
               "characters. Value: United States" + CORRELATION)
    detail = parse_business_central(message, CUSTOMER, "Application_StringExceededLength")
    assert (detail.code, detail.field, detail.value) == (
        "Application_StringExceededLength", "country", "United States")


def test_bc_value_matching_two_fields_names_no_field() -> None:
    message = ("The length of the string is 3, but it must be less than or equal to 2 "
               "characters. Value: abc" + CORRELATION)
    detail = parse_business_central(message, {"a": "abc", "b": "abc"},
                                    "Application_StringExceededLength")
    assert (detail.field, detail.value) == (None, "abc")


def test_bc_range_error_and_code_fields_compare_trimmed_and_case_blind() -> None:
    message = ("The value must be greater than or equal to 0 and less than or equal to "
               "100. Value: 250" + CORRELATION)
    detail = parse_business_central(message, {"paymentDiscountPercent": 250, "x": "y"},
                                    "Application_FieldValidationException")
    assert (detail.field, detail.value) == ("paymentDiscountPercent", "250")
    detail = parse_business_central(
        "The field Salesperson Code of table Customer contains a value (ZZ) that cannot be "
        "found in the related table (Salesperson/Purchaser)." + CORRELATION,
        {"salespersonCode": " zz ", "displayName": "A"}, "Internal_InvalidTableRelation")
    assert (detail.field, detail.value) == ("salespersonCode", "ZZ")


def test_bc_messages_that_name_the_property() -> None:
    detail = parse_business_central('The "currencyCode" does not match to a Currency.'
                                    + CORRELATION, {"currencyCode": "XYZ"},
                                    "Application_DialogException")
    assert (detail.field, detail.value) == ("currencyCode", "XYZ")
    detail = parse_business_central(
        "The property 'colour' does not exist on type 'Microsoft.NAV.customer'. Make sure to "
        "only use property names that are defined by the type." + CORRELATION,
        {"colour": "red"}, "BadRequest")
    assert (detail.field, detail.value) == ("colour", "red")
    detail = parse_business_central(
        "'Service' is not an option. The existing options are: ,Inventory,Service" + CORRELATION,
        {"type": "Service"}, "Unknown")
    assert (detail.field, detail.value) == ("type", "Service")


def test_bc_message_without_field_or_value() -> None:
    detail = parse_business_central("Another user has already changed the record."
                                    + CORRELATION, CUSTOMER, "Request_EntityChanged")
    assert (detail.code, detail.field, detail.value) == ("Request_EntityChanged", None, None)


def test_dv_length_error_names_the_attribute() -> None:
    message = ("A validation error occurred.  The length of the 'address1_country' attribute "
               "of the 'account' entity exceeded the maximum allowed length of '80'.")
    detail = parse_dataverse(message, {"name": "A", "address1_country": "X" * 90},
                             "0x80044331")
    assert (detail.code, detail.field, detail.value) == ("0x80044331", "address1_country",
                                                         "X" * 90)


def test_dv_option_range_null_and_invalid_property() -> None:
    detail = parse_dataverse("A validation error occurred.  The value 7 of "
                             "'customertypecode' on record of type 'account' is outside the "
                             "valid range. Accepted Values: 1,2,3", {"customertypecode": 7},
                             "0x80044331")
    assert (detail.field, detail.value) == ("customertypecode", "7")
    detail = parse_dataverse("Attribute 'name' cannot be set to NULL", {"name": None},
                             "0x80040203")
    assert (detail.field, detail.value) == ("name", None)
    detail = parse_dataverse(
        "An error occurred while validating input parameters: Microsoft.Crm.CrmException: "
        "Invalid property 'Name' was found in entity 'Microsoft.Dynamics.CRM.account'. ---> "
        "Microsoft.OData.ODataException: Does not support untyped value in non-open type.",
        {"Name": "Adatum"}, "0x0")
    assert (detail.field, detail.value) == ("Name", "Adatum")


def test_dv_lookup_bind_and_literal() -> None:
    detail = parse_dataverse(
        "Error identified in Payload provided by the user for Entity :'contacts' ---->  "
        "InnerException : Microsoft.OData.ODataException: An undeclared property "
        "'parentcustomerid' which only has property annotations in the payload but no "
        "property value was found in the payload.",
        {"parentcustomerid@odata.bind": "/accounts(1)"}, "0x80048d19")
    assert (detail.field, detail.value) == ("parentcustomerid", "/accounts(1)")
    detail = parse_dataverse(
        "An error occurred while validating input parameters: Microsoft.OData."
        "ODataException: Cannot convert the literal 'soon' to the expected type "
        "'Edm.DateTimeOffset'.", {"lastusedincampaign": "soon"}, "0x0")
    assert (detail.field, detail.value) == ("lastusedincampaign", "soon")


def test_dispatch_by_system() -> None:
    message = ("The length of the string is 13, but it must be less than or equal to 10 "
               "characters. Value: United States" + CORRELATION)
    assert parse_api_error("business_central", message, CUSTOMER, "X").field == "country"
    assert parse_api_error("dataverse", "The record was not found.", CUSTOMER,
                           "0x80040217").field is None
