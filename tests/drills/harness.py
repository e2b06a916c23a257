"""What the drills share: emulators with fault injection, a sync context with a short client
timeout, edits made as a person, and the checks (nothing lost, nothing duplicated)."""

from __future__ import annotations

import copy
import dataclasses
import random
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar

from bcdv.clients.http import RetryPolicy
from bcdv.engine import SyncContext
from bcdv.mapping.model import TableMapping
from bcdv.settings import endpoints_from_dict
from engine.conftest import BASE, Env, make_mapping

CLIENT_TIMEOUT = 1.5
"""Seconds a drill's clients wait for an answer (an injected timeout stalls longer)."""
DRILL_RETRY = RetryPolicy(max_attempts=4, budget_seconds=8.0, base_delay=0.05, max_delay=0.5)
SERVICES = ("bc", "dv", "id")
STATUSES = ("429", "500", "502", "503", "504")


DRILL_CHANGES: dict[str, Any] = {
    "sync_only_coupled": False, "conflicts": {"update": "merge"},
    # as the shipped CUSTOMER mapping: new accounts are customers, so they pass the
    # mapping's Dataverse filter on the way back
    "create_values": {"dataverse": {"customertypecode": 3}},
}


def drill_mapping(**changes: Any) -> TableMapping:
    """The CUSTOMER-like mapping of the engine tests, creating new records both ways and
    merging update conflicts field by field (so 'every change arrives' is well defined)."""
    return make_mapping(**{**DRILL_CHANGES, **changes})


def write_mapping_dir(directory: Path) -> Path:
    """The drill mapping as a mappings directory for the CLI (BCDV_MAPPINGS_DIR)."""
    import yaml

    directory.mkdir(parents=True, exist_ok=True)
    data = {**copy.deepcopy(BASE), **copy.deepcopy(DRILL_CHANGES)}
    (directory / "customer.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return directory


def fault_doc(rate: float, seed: int, timeout_seconds: float = CLIENT_TIMEOUT + 1.0
              ) -> dict[str, Any]:
    """``rate`` of requests fail: split over 429/5xx, resets, timeouts and lost responses."""
    share = rate / 8
    return {"error_rates": dict.fromkeys(STATUSES, share), "reset_rate": share,
            "timeout_rate": share, "timeout_seconds": timeout_seconds,
            "lost_response_rate": share, "retry_after": 1, "random_seed": seed}


class DrillEnv(Env):
    """The engine tests' Env with short client timeouts, a small retry budget and faults."""

    def __init__(self, endpoints: dict[str, Any], state_url: str, staging: Path) -> None:
        super().__init__(endpoints, state_url, staging)
        self.state_url, self.staging = state_url, staging
        self.renew()

    def renew(self) -> None:
        """New clients (a new process's: tokens fetched again), same state store."""
        from bcdv.clients.auth import reset_token_cache

        self.ctx.close()
        reset_token_cache()
        eps = endpoints_from_dict(self.endpoints)
        eps = dataclasses.replace(
            eps, business_central=dataclasses.replace(eps.business_central,
                                                      timeout=CLIENT_TIMEOUT),
            dataverse=dataclasses.replace(eps.dataverse, timeout=CLIENT_TIMEOUT))
        self.ctx = SyncContext.create(eps, self.state_url, self.staging)
        for client in (self.ctx.business_central.client, self.ctx.dataverse.client):
            client.http.retry = DRILL_RETRY
        self.bc = self.ctx.business_central.client
        self.dv = self.ctx.dataverse.client
        self.state = self.ctx.state

    # -- faults -----------------------------------------------------------------------------
    def faults(self, doc: dict[str, Any] | None, services: tuple[str, ...] = SERVICES) -> None:
        """Put (or, with None, clear) the same faults on the services."""
        for i, svc in enumerate(services):
            if doc is None:
                self.admin(svc, "DELETE", "faults")
            else:
                seeded = {**doc, "random_seed": (doc.get("random_seed") or 0) * 10 + i}
                if svc == "id":  # an identity endpoint cannot lose a write's answer
                    seeded = {k: v for k, v in seeded.items() if not k.startswith("lost")}
                self.admin(svc, "PUT", "faults", seeded)

    def requests_served(self) -> dict[str, int]:
        """Requests each service answered (or dropped) so far."""
        return {svc: int(self.admin(svc, "GET", "requests")["total"]) for svc in SERVICES}

    def injected(self) -> dict[str, Counter[str]]:
        """Faults injected so far, per service and kind."""
        return {svc: Counter(self.admin(svc, "GET", "faults/injected")["injected"])
                for svc in SERVICES}

    # -- what is stored ----------------------------------------------------------------------
    def rows(self, service: str) -> list[dict[str, Any]]:
        """Every customer (bc) or account (dv), read through the admin API (never faulted)."""
        entity = "customers" if service == "bc" else "accounts"
        return list(self.admin(service, "GET", f"records/{entity}")["value"])

    def by_name(self, service: str) -> dict[str, list[dict[str, Any]]]:
        """Rows grouped by name."""
        out: dict[str, list[dict[str, Any]]] = {}
        for row in self.rows(service):
            out.setdefault(str(row.get("displayName" if service == "bc" else "name")),
                           []).append(row)
        return out


def fault_totals(injected: dict[str, Counter[str]]) -> Counter[str]:
    """Injected faults by kind over all services (without the per-request-kind details)."""
    total: Counter[str] = Counter()
    for counts in injected.values():
        total.update({k: v for k, v in counts.items() if ":" not in k})
    return total


class Model:
    """What both sides must hold once synced: name -> {field: value}, in BC's field names."""

    FIELDS: ClassVar[dict[str, str]] = {"phoneNumber": "telephone1", "city": "address1_city"}

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.records: dict[str, dict[str, Any]] = {}
        self.ids: dict[str, dict[str, str]] = {}  # name -> {"bc": id} or {"dv": id}
        self.serial = 0

    def new_name(self, prefix: str) -> str:
        self.serial += 1
        return f"{prefix} {self.serial:04d}"

    def value(self, field: str) -> str:
        if field == "phoneNumber":
            return f"+1 425 555 {self.rng.randrange(10000):04d}"
        return self.rng.choice(["Redmond", "Seattle", "Bellevue", "Kirkland", "Tacoma",
                                "Spokane", "Everett", "Olympia"]) + f" {self.rng.randrange(99)}"


def check_converged(env: DrillEnv, model: Model) -> dict[str, Any]:
    """Compare both sides with the model: (lost, duplicated, missing) figures and details."""
    bc, dv = env.by_name("bc"), env.by_name("dv")
    duplicated, lost, missing = [], [], []
    for name, want in model.records.items():
        for side, rows, col in (("bc", bc, None), ("dv", dv, "dv")):
            found = rows.get(name, [])
            if not found:
                missing.append((side, name))
                continue
            if len(found) > 1:
                duplicated.append((side, name, len(found)))
            row = found[0]
            for field, value in want.items():
                key = Model.FIELDS[field] if col else field
                if row.get(key) != value:
                    lost.append((side, name, field, value, row.get(key)))
    extra = sorted((set(bc) | set(dv)) - set(model.records))
    return {"records": len(model.records), "missing": missing, "lost": lost,
            "duplicated": duplicated, "unexpected": extra}
