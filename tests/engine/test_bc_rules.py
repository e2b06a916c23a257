"""Issue 11 regressions: what Business Central's integration subscribers add to records.

- Salespeople created from Dataverse users get BC's generated code ``SP NO. 00001``, ... (a
  blank primary key is refused by Business Central).
- A new currency reaches Dataverse with its required exchange rate, taken from Business
  Central's latest rate (API v2.0 currencyExchangeRates); without a rate the record fails
  with a clear message and the others go through.
"""
from __future__ import annotations

from datetime import date

import pytest

from bcdv.engine import sync_mapping
from bcdv.engine.entity_rules import exchange_rates, next_salesperson_number, salesperson_code


def test_salespeople_created_from_users_get_generated_codes(ctx, mappings) -> None:
    bc = ctx.business_central.client
    before = {s["code"] for s in bc.list("salespeoplePurchasers")}
    reports = sync_mapping(ctx, mappings["SALESPEOPLE"], mode="full")
    report = reports[0]
    assert report.failed == 0, report.records
    created = [s for s in bc.list("salespeoplePurchasers") if s["code"] not in before]
    assert report.inserted == len(created) > 0
    codes = sorted(s["code"] for s in created)
    assert codes == [salesperson_code(i + 1) for i in range(len(created))]
    assert all(s["code"].strip() for s in bc.list("salespeoplePurchasers"))
    again = sync_mapping(ctx, mappings["SALESPEOPLE"], mode="full")[0]
    assert again.inserted == 0 and again.failed == 0


def test_salesperson_numbering_continues_after_the_highest_code() -> None:
    assert next_salesperson_number([]) == 1
    assert next_salesperson_number(["SP NO. 00007", "SP NO. 00012", "JO", None]) == 13
    assert salesperson_code(13) == "SP NO. 00013"


def test_new_currency_reaches_dataverse_with_business_centrals_exchange_rate(ctx,
                                                                             mappings) -> None:
    bc, dv = ctx.business_central.client, ctx.dataverse.client
    rates = exchange_rates(bc.list("currencyExchangeRates"), date.today())
    report = sync_mapping(ctx, mappings["CURRENCY"], mode="full")[0]
    assert report.failed == 0, report.records
    assert report.inserted > 0
    by_code = {c["isocurrencycode"]: c for c in dv.list("transactioncurrencies")}
    for code, rate in rates.items():
        assert by_code[code]["exchangerate"] == pytest.approx(rate, rel=1e-9), code


def test_currency_without_a_rate_fails_with_a_clear_message(ctx, mappings) -> None:
    bc, dv = ctx.business_central.client, ctx.dataverse.client
    bc.create("currencies", {"code": "NOK", "displayName": "Norwegian krone", "symbol": "kr"})
    report = sync_mapping(ctx, mappings["CURRENCY"], mode="full")[0]
    failed = [r for r in report.records if r.result == "failed"]
    assert [r.name for r in failed] == ["NOK"]
    assert "Exchange Rate must have a value" in failed[0].message
    assert "NOK" in failed[0].message
    assert report.inserted > 0  # the others went through
    assert "NOK" not in {c["isocurrencycode"] for c in dv.list("transactioncurrencies")}


def test_exchange_rates_use_the_latest_rate_and_follow_a_relational_currency() -> None:
    rows = [
        {"currencyCode": "EUR", "startingDate": "2020-01-01", "exchangeRateAmount": 100,
         "relationalExchangeRateAmount": 120, "relationalCurrencyCode": ""},
        {"currencyCode": "EUR", "startingDate": "2024-01-01", "exchangeRateAmount": 100,
         "relationalExchangeRateAmount": 110, "relationalCurrencyCode": ""},
        {"currencyCode": "EUR", "startingDate": "2999-01-01", "exchangeRateAmount": 1,
         "relationalExchangeRateAmount": 1, "relationalCurrencyCode": ""},
        {"currencyCode": "DKK", "startingDate": "2024-01-01", "exchangeRateAmount": 100,
         "relationalExchangeRateAmount": 13.4, "relationalCurrencyCode": "EUR"},
    ]
    rates = exchange_rates(rows, date(2026, 1, 1))
    assert rates["EUR"] == pytest.approx(100 / 110)
    assert rates["DKK"] == pytest.approx(100 / 13.4 * 100 / 110)
