"""State-store outage drill: the PostgreSQL connections of a running sync are terminated
(pg_terminate_backend) again and again; each run fails cleanly or carries on, never hangs,
and once the database stays up a rerun converges with nothing lost or duplicated."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from .harness import DrillEnv, Model, check_converged, drill_mapping
from .outage import Outages, scratch_database

pytestmark = pytest.mark.postgres


def _server_url() -> str:
    import os

    return os.environ.get("BCDV_TEST_POSTGRES_URL",
                          "postgresql+psycopg2://postgres@127.0.0.1:5432/test")


def test_sync_survives_state_store_outages_and_rerun_converges(drill: DrillEnv,
                                                               tmp_path: Path) -> None:
    server = _server_url()
    try:
        sa.create_engine(server).connect().close()
    except Exception as exc:
        pytest.skip(f"no PostgreSQL at {server}: {exc}")
    with scratch_database(server) as url:
        drill.state_url = url
        drill.renew()
        model = Model(3)
        for side in ("bc", "dv"):
            for _ in range(6):
                name = model.new_name(f"Outage {side.upper()}")
                want = {f: model.value(f) for f in Model.FIELDS}
                if side == "bc":
                    drill.bc_new(name, **want)
                else:
                    drill.dv_new(name, **{Model.FIELDS[f]: v for f, v in want.items()})
                model.records[name] = want
        drill.tick()
        # Slow services, so the run is still going when the connections are cut.
        for svc in ("bc", "dv"):
            drill.admin(svc, "PUT", "faults", {"latency_ms": 150})
        mapping = drill_mapping()
        outcomes = []
        database = sa.engine.make_url(url).database
        with Outages(server, str(database), every=0.25) as outages:
            for n in range(3):
                started = time.monotonic()
                try:
                    drill.sync(mapping, run_id=f"outage__{n}", mode="full" if n else "modified")
                    outcomes.append("completed")
                except Exception as exc:
                    outcomes.append(type(exc).__name__)
                assert time.monotonic() - started < 60, "a run hung on the lost database"
        drill.faults(None, services=("bc", "dv"))
        drill.renew()
        drill.tick()
        final = drill.sync(mapping, run_id="outage__final")
        result = check_converged(drill, model)
        print(f"\nOUTAGE connections_cut={outages.cut} runs={outcomes} "
              f"records={result['records']} lost={len(result['lost'])} "
              f"missing={len(result['missing'])} duplicated={len(result['duplicated'])}")
        assert outages.cut > 0
        assert all(r.failed == 0 for r in final.values())
        assert result["duplicated"] == [] and result["missing"] == [], result
        assert result["lost"] == [] and result["unexpected"] == [], result
        drill.ctx.state.engine.dispose()
