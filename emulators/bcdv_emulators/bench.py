"""Benchmark of the emulators alone: ``python -m bcdv_emulators.bench [--rows N]``.

1. UpsertMultiple of N accounts (alternate key accountnumber) at 1,000 per request;
2. the same again (all updates);
3. paging the N accounts at ``Prefer: odata.maxpagesize=5000``;
4. paging N BC customers (``synthetic:N``) at 5,000 per page;
5. "BC create cost at 2,000 and 50,000 customers" (``--scenario bc-create-cost``, also part
   of the default run): seed ``synthetic:N``, then time single customer POSTs over HTTPS
   (each also numbers and creates the company contact) and report ms/create per size and
   the ratio large/small. The number series, the key uniqueness and the contact link are
   indexed lookups, so the ratio should stay under 1.2; the scenario exits non-zero if not.

Prints one JSON document with seconds and rows/second per step. Real HTTPS on loopback,
a fresh temporary data directory.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from typing import Any

import requests

from bcdv_emulators.testing import run_emulators


def _token(ep: dict[str, Any], scope: str) -> str:
    ident = ep["identity"]
    r = requests.post(f"{ident['authority']}/oauth2/v2.0/token", verify=ep["ca_bundle"],
                      timeout=30, data={"grant_type": "client_credentials",
                                        "client_id": ident["client_id"],
                                        "client_secret": ident["client_secret"],
                                        "scope": scope})
    r.raise_for_status()
    return str(r.json()["access_token"])


def _page(session: requests.Session, url: str, token: str, ca: str) -> int:
    rows = 0
    while url:
        r = session.get(url, headers={"Authorization": f"Bearer {token}",
                                      "Prefer": "odata.maxpagesize=5000"}, verify=ca, timeout=300)
        r.raise_for_status()
        doc = r.json()
        rows += len(doc["value"])
        url = doc.get("@odata.nextLink")
    return rows


def run(rows: int) -> dict[str, Any]:
    """Run the benchmark steps and return their figures."""
    out: dict[str, Any] = {"rows": rows}
    with tempfile.TemporaryDirectory() as tmp:
        started = time.monotonic()
        with run_emulators(tmp, seed=f"synthetic:{rows}", throttling=False,
                           dv_alternate_keys={"accounts": [["accountnumber"]]}) as ep:
            out["start_with_synthetic_seed_s"] = round(time.monotonic() - started, 2)
            ca = ep["ca_bundle"]
            s = requests.Session()
            dv_tok = _token(ep, ep["dataverse"]["scope"])
            api = ep["dataverse"]["api_url"]
            for label in ("upsertmultiple_create", "upsertmultiple_update"):
                t = time.monotonic()
                for start in range(0, rows, 1000):
                    targets = [{"@odata.type": "Microsoft.Dynamics.CRM.account",
                                "@odata.id": f"accounts(accountnumber='B{i:07d}')",
                                "name": f"Bench {i} {label}", "telephone1": "555 0100",
                                "creditlimit": 1000.0}
                               for i in range(start, min(rows, start + 1000))]
                    r = s.post(f"{api}/accounts/Microsoft.Dynamics.CRM.UpsertMultiple",
                               json={"Targets": targets}, verify=ca, timeout=600,
                               headers={"Authorization": f"Bearer {dv_tok}"})
                    r.raise_for_status()
                secs = time.monotonic() - t
                out[label] = {"seconds": round(secs, 2), "rows_per_s": round(rows / secs)}
            t = time.monotonic()
            n = _page(s, f"{api}/accounts?$select=name,accountnumber&$filter=startswith("
                         f"accountnumber,'B')", dv_tok, ca)
            secs = time.monotonic() - t
            out["dataverse_paging_5000"] = {"rows": n, "seconds": round(secs, 2),
                                            "rows_per_s": round(n / secs)}
            bc = ep["business_central"]
            t = time.monotonic()
            n = _page(s, f"{bc['base_url']}/companies({bc['company_id']})/customers",
                      _token(ep, bc["scope"]), ca)
            secs = time.monotonic() - t
            out["business_central_paging_5000"] = {"rows": n, "seconds": round(secs, 2),
                                                   "rows_per_s": round(n / secs)}
    return out


CREATE_COST_LIMIT = 1.2


def _create_ms(sizes: tuple[int, ...], creates: int, rounds: int) -> dict[int, float]:
    """Best-of-``rounds`` ms per customer POST with ``synthetic:N`` seeded, per N."""
    out: dict[int, float] = {}
    for size in sizes:
        with tempfile.TemporaryDirectory() as tmp, run_emulators(
                tmp, seed=f"synthetic:{size}", throttling=False) as ep:
            bc = ep["business_central"]
            url = f"{bc['base_url']}/companies({bc['company_id']})/customers"
            headers = {"Authorization": f"Bearer {_token(ep, bc['scope'])}"}
            s = requests.Session()
            best = float("inf")
            for r in range(rounds + 1):  # round 0 warms the connection and caches up
                t = time.perf_counter()
                for i in range(creates):
                    resp = s.post(url, json={"displayName": f"Bench {size} {r} {i}"},
                                  headers=headers, verify=ep["ca_bundle"], timeout=60)
                    resp.raise_for_status()
                if r:
                    best = min(best, (time.perf_counter() - t) * 1000 / creates)
            out[size] = round(best, 3)
    return out


def bc_create_cost(small: int = 2_000, large: int = 50_000, creates: int = 200,
                   rounds: int = 3) -> dict[str, Any]:
    """BC create cost at ``small`` and ``large`` customers, and their ratio."""
    ms = _create_ms((small, large), creates, rounds)
    ratio = ms[large] / ms[small]
    return {"scenario": f"BC create cost at {small:,} and {large:,} customers",
            "creates_per_round": creates, "rounds": rounds,
            "ms_per_create": {str(k): v for k, v in ms.items()},
            "ratio": round(ratio, 3), "limit": CREATE_COST_LIMIT,
            "ok": ratio < CREATE_COST_LIMIT}


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    p = argparse.ArgumentParser(prog="python -m bcdv_emulators.bench")
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--scenario", choices=("all", "paging", "bc-create-cost"), default="all")
    p.add_argument("--creates", type=int, default=200)
    args = p.parse_args(argv)
    result: dict[str, Any] = {}
    if args.scenario in ("all", "paging"):
        result = run(args.rows)
    if args.scenario in ("all", "bc-create-cost"):
        result["bc_create_cost"] = bc_create_cost(creates=args.creates)
    print(json.dumps(result, indent=2))
    return 0 if result.get("bc_create_cost", {}).get("ok", True) else 1


if __name__ == "__main__":
    raise SystemExit(main())
