"""What Business Central's integration subscribers add to particular records.

BC's engine does more than copy mapped fields for some tables (codeunits 5341 "CRM Int. Table.
Subscriber" and 7205 "CDS Int. Table. Subscriber"; reference bc-integration-engine.md 3.1, 3.5):

- a salesperson created from a Dataverse user gets the next code of the form ``SP NO. 00001``
  (the highest code matching ``SP NO. 0*``, incremented): the code is the table's primary key,
  and Business Central refuses a blank one;
- a Dataverse transaction currency gets its required ``exchangerate`` from Business Central's
  latest exchange rate for the currency (LCY -> FCY), on create and after every transfer; the
  record fails, with a clear message, when Business Central has no rate.

The facts these rules need are gathered once per pass (``gather``); applying them is pure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from bcdv.mapping.model import Direction, TableMapping

SALESPERSON_SET = "salespeoplePurchasers"
CURRENCY_SET = "transactioncurrencies"
SALESPERSON_PREFIX = "SP NO. "
_SP_CODE = re.compile(r"^SP NO\. 0*(\d+)$")


class RuleError(ValueError):
    """A record these rules cannot complete (the message says why)."""


@dataclass
class EntityFacts:
    """Gathered inputs of the rules for one pass."""

    next_salesperson: int | None = None
    exchange_rates: dict[str, float] | None = None  # BC currency code -> FCY per 1 LCY
    currency_code_field: str = "isocurrencycode"
    allocated: dict[str, str] = field(default_factory=dict)  # source id -> code given


def gather(ctx: Any, mapping: TableMapping, direction: Direction) -> EntityFacts:
    """Read what the pass's target table needs (nothing for most tables)."""
    facts = EntityFacts()
    target = (mapping.business_central if direction is Direction.TO_BUSINESS_CENTRAL
              else mapping.dataverse)
    if direction is Direction.TO_BUSINESS_CENTRAL and target.entity_set == SALESPERSON_SET:
        rows = ctx.business_central.client.list(
            SALESPERSON_SET, select=["code"], filter=f"startswith(code,'{SALESPERSON_PREFIX}')")
        facts.next_salesperson = next_salesperson_number(r.get("code") for r in rows)
    if direction is Direction.TO_DATAVERSE and target.entity_set == CURRENCY_SET:
        rows = ctx.business_central.client.list("currencyExchangeRates")
        facts.exchange_rates = exchange_rates(rows, date.today())
    return facts


def next_salesperson_number(codes: Any) -> int:
    """One more than the highest ``SP NO. <n>`` code (1 when there is none)."""
    numbers = [int(m.group(1)) for c in codes if c and (m := _SP_CODE.match(str(c)))]
    return max(numbers, default=0) + 1


def salesperson_code(number: int) -> str:
    """BC's generated salesperson code for ``number`` (``SP NO. 00001``)."""
    return f"{SALESPERSON_PREFIX}{number:05d}"


def exchange_rates(rows: list[dict[str, Any]], today: date) -> dict[str, float]:
    """FCY per 1 LCY per currency code, from each currency's latest rate starting by today.

    Business Central's rate says ``exchangeRateAmount`` units of the currency are worth
    ``relationalExchangeRateAmount`` units of the relational currency (blank: LCY); a
    relational currency other than LCY is followed to LCY through its own rate.
    """
    latest: dict[str, dict[str, Any]] = {}
    for row in rows:
        code = str(row.get("currencyCode") or "").upper()
        start = str(row.get("startingDate") or "")
        if not code or not start or start > today.isoformat():
            continue
        if code not in latest or start > str(latest[code].get("startingDate")):
            latest[code] = row

    def rate(code: str, depth: int = 0) -> float | None:
        row = latest.get(code)
        if row is None or depth > 5:
            return None
        amount = float(row.get("exchangeRateAmount") or 0)
        relational = float(row.get("relationalExchangeRateAmount") or 0)
        if amount <= 0 or relational <= 0:
            return None
        rel_code = str(row.get("relationalCurrencyCode") or "").upper()
        if not rel_code:
            return amount / relational
        via = rate(rel_code, depth + 1)
        return None if via is None else amount / relational * via

    return {code: r for code in latest if (r := rate(code)) is not None}


def extra_columns(entity_set: str) -> list[str]:
    """Destination columns the rules write, read with the destination's rows for the diff."""
    return ["exchangerate"] if entity_set == CURRENCY_SET else []


def wanted_values(entity_set: str, values: dict[str, Any],
                  facts: EntityFacts) -> dict[str, Any]:
    """The mapped values plus what BC sets after every transfer (a currency's exchange rate);
    compared with the destination like mapped fields. Raises RuleError when impossible."""
    if entity_set != CURRENCY_SET or facts.exchange_rates is None:
        return values
    code = str(values.get(facts.currency_code_field) or "").upper()
    rate = facts.exchange_rates.get(code)
    if rate is None:
        raise RuleError(f"Exchange Rate must have a value: Business Central has no exchange "
                        f"rate for currency {code or '(blank)'} starting on or before today "
                        f"(currencyExchangeRates)")
    return {**values, "exchangerate": round(rate, 10)}


def complete_insert(entity_set: str, values: dict[str, Any], facts: EntityFacts, *,
                    source_id: str) -> dict[str, Any]:
    """A new record's values with what BC's subscribers add on insert (a salesperson's
    generated code); the same source record keeps the code it was given in this pass."""
    if entity_set != SALESPERSON_SET or str(values.get("code") or "").strip():
        return values
    if facts.next_salesperson is None:
        raise RuleError("no salesperson code could be generated")
    code = facts.allocated.get(source_id)
    if code is None:
        code = salesperson_code(facts.next_salesperson)
        facts.next_salesperson += 1
        facts.allocated[source_id] = code
    return {**values, "code": code}
