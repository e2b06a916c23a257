"""docker-compose.yml's ``celery`` profile, checked without Compose (only a docker client
here): Redis and two Celery workers on the image's Airflow, the executor switched by
``AIRFLOW_EXECUTOR`` for the scheduler and the API server, staging shared by the workers.

The services follow Airflow's Celery executor documentation (broker, result backend, ``airflow
celery worker``): https://airflow.apache.org/docs/apache-airflow-providers-celery/stable/celery_executor.html
and Compose's variable interpolation (``${VAR:-default}``):
https://docs.docker.com/reference/compose-file/interpolation/
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CELERY = "celery"


def _services() -> dict[str, dict[str, Any]]:
    return dict(yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"])


def _celery_only() -> dict[str, dict[str, Any]]:
    return {n: s for n, s in _services().items() if set(s.get("profiles") or ()) == {CELERY}}


def _interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ``${VAR:-default}`` with the given environment (only that form is used)."""
    return re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: env.get(m.group(1)) or m.group(2), value)


def _workers() -> dict[str, dict[str, Any]]:
    return {n: s for n, s in _celery_only().items() if "celery worker" in str(s.get("command"))}


def test_celery_profile_has_redis_and_two_workers() -> None:
    celery = _celery_only()
    assert "redis" in celery and celery["redis"]["image"].startswith("redis:")
    assert "redis-cli" in " ".join(celery["redis"]["healthcheck"]["test"])
    workers = _workers()
    assert len(workers) == 2
    # Each worker its own host name: Airflow records it on the task instances it runs.
    assert len({w["hostname"] for w in workers.values()}) == 2
    for name, svc in workers.items():
        assert svc["environment"]["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert svc["depends_on"]["redis"]["condition"] == "service_healthy", name
        assert svc["depends_on"]["airflow-init"]["condition"] == (
            "service_completed_successfully"), name


def test_the_executor_is_local_by_default_and_celery_on_request() -> None:
    services = _services()
    for name in ("airflow-scheduler", "airflow-apiserver", "airflow-dag-processor"):
        executor = services[name]["environment"]["AIRFLOW__CORE__EXECUTOR"]
        assert _interpolate(executor, {}) == "LocalExecutor", name
        assert _interpolate(executor, {"AIRFLOW_EXECUTOR": "CeleryExecutor"}) == (
            "CeleryExecutor"), name


def test_workers_share_the_schedulers_broker_database_and_staging() -> None:
    services = _services()
    scheduler = services["airflow-scheduler"]
    for name, svc in _workers().items():
        env = svc["environment"]
        for key in ("AIRFLOW__CELERY__BROKER_URL", "AIRFLOW__CELERY__RESULT_BACKEND",
                    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "BCDV_STATE_URL",
                    "BCDV_STAGING_DIR", "AIRFLOW__CORE__EXECUTION_API_SERVER_URL"):
            assert env[key] == scheduler["environment"][key], (name, key)
        assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://redis:")
        assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql://")
        assert "@postgres/" in env["AIRFLOW__CELERY__RESULT_BACKEND"]
        # Same DAGs, plugins and mappings; the staged files on the volume every worker mounts.
        assert set(svc["volumes"]) == set(scheduler["volumes"]), name
        assert any(v.startswith("bcdv-staging:") for v in svc["volumes"]), name


def test_default_profile_needs_no_celery_service() -> None:
    celery = set(_celery_only())
    for name, svc in _services().items():
        if not svc.get("profiles"):
            assert not set(svc.get("depends_on") or ()) & celery, name


def test_the_image_has_the_celery_provider() -> None:
    """The image installs requirements.lock: the provider and a celery it works with."""
    pins = dict(line.split("==", 1) for line in
                (ROOT / "requirements.lock").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    assert "apache-airflow-providers-celery" in pins and "redis" in pins
    # celery 5.7 removed celery.backends.database.retry, which the provider imports.
    assert tuple(int(p) for p in pins["celery"].split(".")[:2]) < (5, 7)
