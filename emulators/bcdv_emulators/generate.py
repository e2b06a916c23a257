"""Bulk data for benchmarks: ``POST /_emulator/generate {"entity", "count", "start"}``.

Like seeding (rows written straight into the database, no API requests to count), but for
one entity set at a time and on top of whatever is there: N Business Central customers or
N Dataverse accounts (relationship type Customer, active), deterministic by index, so a
benchmark can fill one side only. Shapes follow :mod:`bcdv_emulators.seeds.synthetic`.
"""
from __future__ import annotations

import random
from typing import Any

from bcdv_emulators.bc.schema import BLANK, BLANK_GUID
from bcdv_emulators.bc.schema import BY_SET as BC_SET
from bcdv_emulators.db import Database
from bcdv_emulators.dv.schema import BY_SET as DV_SET
from bcdv_emulators.seeds import gid
from bcdv_emulators.seeds.bc_demo import BASE_MS, COMPANY_ID
from bcdv_emulators.seeds.dv_demo import APP_USER_ID, BU_ID, SYSTEM_USER_ID

WORDS = ["Alder", "Birch", "Cedar", "Delta", "Ember", "Falcon", "Granite", "Harbor", "Iris",
         "Juniper", "Kestrel", "Lumen", "Maple", "Nimbus", "Onyx", "Pioneer", "Quarry", "Raven"]
CITIES = [("Seattle", "WA", "98101"), ("Portland", "OR", "97204"), ("Denver", "CO", "80202"),
          ("Austin", "TX", "73301"), ("Boston", "MA", "02108"), ("Chicago", "IL", "60601")]
CHUNK = 5000
ENTITIES = {"business_central": ("customers",), "dataverse": ("accounts",)}


def name(side: str, i: int) -> str:
    """The display name of generated record ``i`` (unique per side and index)."""
    rng = random.Random(f"{side}:{i}")
    return f"{rng.choice(WORDS)} {rng.choice(WORDS)} {side.upper()} {i:07d}"


def phone(i: int) -> str:
    """The phone number of generated record ``i``."""
    return f"+1 555 {i // 10000:03d} {i % 10000:04d}"


def generate(db: Database, service: str, entity: str, count: int, start: int = 1) -> int:
    """Insert ``count`` rows of ``entity`` numbered from ``start``; returns the count."""
    if entity not in ENTITIES.get(service, ()):
        raise ValueError(f"generate: {service} generates {list(ENTITIES.get(service, ()))}, "
                         f"not {entity!r}")
    if count < 0 or start < 1:
        raise ValueError("generate: count >= 0 and start >= 1")
    make = _bc_customer if service == "business_central" else _dv_account
    counter = "rv" if service == "business_central" else "vn"
    version = int(db.meta_get(counter, 0 if counter == "rv" else 1_000_000))
    with db.tx():
        rows: list[dict[str, Any]] = []
        for i in range(start, start + count):
            version += 1
            rows.append(make(i, version))
            if len(rows) >= CHUNK:
                db.insert_many(entity, rows)
                rows = []
        db.insert_many(entity, rows)
        db.meta_set(counter, version)
    return count


def _bc_customer(i: int, rv: int) -> dict[str, Any]:
    city, state, zip_ = CITIES[i % len(CITIES)]
    row: dict[str, Any] = {p.name: p.default for p in BC_SET["customers"].props}
    row.update(_company=COMPANY_ID, id=gid("bc", "bench", "customers", i),
               number=f"B{i:07d}", displayName=name("bc", i),
               addressLine1=f"{i % 999 + 1} {WORDS[i % len(WORDS)]} Street", city=city,
               state=state, country="US", postalCode=zip_, phoneNumber=phone(i),
               email=f"customer{i}@bench.example.com", creditLimit=float(i % 200 * 500),
               blocked=BLANK, currencyId=BLANK_GUID,
               lastModifiedDateTime=BASE_MS + i * 10, _rv=rv)
    return row


def _dv_account(i: int, vn: int) -> dict[str, Any]:
    city, state, zip_ = CITIES[i % len(CITIES)]
    ent = DV_SET["accounts"]
    row: dict[str, Any] = {p.column: p.default for p in ent.props}
    row.update({ent.key: gid("dv", "bench", "accounts", i), "versionnumber": vn, "_rv": vn,
                "createdon": BASE_MS + i * 10, "modifiedon": BASE_MS + i * 10,
                "_createdby_value": SYSTEM_USER_ID, "_modifiedby_value": SYSTEM_USER_ID,
                "_ownerid_value": APP_USER_ID, "_ownerid_type": "systemusers",
                "_owningbusinessunit_value": BU_ID, "name": name("dv", i),
                "accountnumber": f"BA{i:07d}", "customertypecode": 3, "statecode": 0,
                "statuscode": 1, "address1_line1": f"{i % 999 + 1} {WORDS[i % len(WORDS)]} Road",
                "address1_city": city, "address1_stateorprovince": state,
                "address1_postalcode": zip_, "address1_country": "US", "telephone1": phone(i),
                "emailaddress1": f"account{i}@bench.example.com"})
    return row
