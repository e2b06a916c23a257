"""``synthetic:N``: N generated records per main entity, deterministic (seeded RNG)."""
from __future__ import annotations

import random
from typing import Any

from bcdv_emulators.bc.schema import BLANK, BLANK_GUID
from bcdv_emulators.bc.schema import BY_SET as BC_SET
from bcdv_emulators.db import Database
from bcdv_emulators.dv.schema import BY_SET as DV_SET
from bcdv_emulators.seeds import gid
from bcdv_emulators.seeds.bc_demo import BASE_MS, COMPANY_ID
from bcdv_emulators.seeds.dv_demo import APP_USER_ID, BASE_CURRENCY_ID, BU_ID, SYSTEM_USER_ID

WORDS = ["Alder", "Birch", "Cedar", "Delta", "Ember", "Falcon", "Granite", "Harbor", "Iris",
         "Juniper", "Kestrel", "Lumen", "Maple", "Nimbus", "Onyx", "Pioneer", "Quarry", "Raven",
         "Summit", "Tundra", "Umber", "Vertex", "Willow", "Xenon", "Yarrow", "Zephyr"]
SUFFIX = ["Industries", "Logistics", "Partners", "Foods", "Systems", "Traders", "Studios",
          "Labs", "Outfitters", "Holdings"]
CITIES = [("Seattle", "WA", "98101"), ("Portland", "OR", "97204"), ("Denver", "CO", "80202"),
          ("Austin", "TX", "73301"), ("Boston", "MA", "02108"), ("Chicago", "IL", "60601"),
          ("Atlanta", "GA", "30303"), ("Phoenix", "AZ", "85001")]
FIRST = ["Ana", "Ben", "Chloe", "David", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas"]
LAST = ["Adams", "Baker", "Castro", "Dubois", "Evans", "Fischer", "Garcia", "Hughes", "Ito"]
BATCH = 5000


def _name(rng: random.Random, i: int) -> str:
    return f"{rng.choice(WORDS)} {rng.choice(WORDS)} {rng.choice(SUFFIX)} {i:06d}"


def load_bc(db: Database, n: int) -> None:
    """N customers, vendors and person contacts in the demo company."""
    rng = random.Random(f"bc:{n}")
    rv = int(db.meta_get("rv", 0))
    for set_name, prefix in (("customers", "S"), ("vendors", "SV"), ("contacts", "SCT")):
        ent = BC_SET[set_name]
        rows: list[dict[str, Any]] = []
        for i in range(1, n + 1):
            city, state, zip_ = rng.choice(CITIES)
            name = _name(rng, i) if set_name != "contacts" else \
                f"{rng.choice(FIRST)} {rng.choice(LAST)} {i:06d}"
            rv += 1
            row: dict[str, Any] = {p.name: p.default for p in ent.props}
            row.update(_company=COMPANY_ID, id=gid("bc", "synthetic", set_name, i),
                       number=f"{prefix}{i:06d}", displayName=name,
                       addressLine1=f"{rng.randint(1, 999)} {rng.choice(WORDS)} Street",
                       city=city, state=state, country="US", postalCode=zip_,
                       phoneNumber=f"+1 555 {i // 10000:03d} {i % 10000:04d}",
                       email=f"contact{i}@{set_name}.example.com",
                       lastModifiedDateTime=BASE_MS + i * 1000, _rv=rv)
            if set_name == "customers":
                row.update(creditLimit=float(rng.randrange(0, 100000, 500)), blocked=BLANK,
                           currencyId=BLANK_GUID)
            if set_name == "contacts":
                row.update(type="Person", searchName=name.upper(), contactBusinessRelation="None")
            rows.append(row)
            if len(rows) >= BATCH:
                db.insert_many(set_name, rows)
                rows = []
        db.insert_many(set_name, rows)
    db.meta_set("rv", rv)


def load_dv(db: Database, n: int) -> None:
    """N accounts and contacts (half the contacts under a synthetic account)."""
    rng = random.Random(f"dv:{n}")
    vn = int(db.meta_get("vn", 1000000))
    for set_name in ("accounts", "contacts"):
        ent = DV_SET[set_name]
        rows: list[dict[str, Any]] = []
        for i in range(1, n + 1):
            city, state, zip_ = rng.choice(CITIES)
            vn += 1
            row: dict[str, Any] = {p.column: p.default for p in ent.props}
            row.update({ent.key: gid("dv", "synthetic", set_name, i), "versionnumber": vn,
                        "_rv": vn, "createdon": BASE_MS + i * 1000,
                        "modifiedon": BASE_MS + i * 1000, "_createdby_value": SYSTEM_USER_ID,
                        "_modifiedby_value": SYSTEM_USER_ID, "_ownerid_value": APP_USER_ID,
                        "_ownerid_type": "systemusers", "_owningbusinessunit_value": BU_ID,
                        "address1_city": city, "address1_stateorprovince": state,
                        "address1_postalcode": zip_, "telephone1":
                            f"+1 555 {i // 10000:03d} {i % 10000:04d}"})
            if set_name == "accounts":
                row.update(name=_name(rng, i), accountnumber=f"SA{i:07d}",
                           customertypecode=rng.choice([3, 3, 3, 8, 11]),
                           creditlimit=float(rng.randrange(0, 100000, 500)),
                           _transactioncurrencyid_value=BASE_CURRENCY_ID, exchangerate=1.0)
                row["creditlimit_base"] = row["creditlimit"]
            else:
                first, last = rng.choice(FIRST), f"{rng.choice(LAST)} {i:06d}"
                row.update(firstname=first, lastname=last, fullname=f"{first} {last}")
                if i % 2 == 0:
                    row.update(_parentcustomerid_value=gid("dv", "synthetic", "accounts", i),
                               _parentcustomerid_type="accounts")
            rows.append(row)
            if len(rows) >= BATCH:
                db.insert_many(set_name, rows)
                rows = []
        db.insert_many(set_name, rows)
    db.meta_set("vn", vn)
