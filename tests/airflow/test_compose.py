"""docker-compose.yml: accepted by ``docker compose config`` (where Compose exists), and the
stack it describes has what the README promises."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"


def _compose_command() -> list[str] | None:
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def test_docker_compose_config_accepts_the_file() -> None:
    command = _compose_command()
    if command is None:
        pytest.skip("no docker compose here (only a docker client without the compose plugin, "
                    "or no docker at all)")
    proc = subprocess.run([*command, "-f", str(COMPOSE), "config", "--quiet"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_stack_has_airflow_3_components_on_postgres_and_the_emulators() -> None:
    doc = yaml.safe_load(COMPOSE.read_text())
    services = doc["services"]
    commands = {name: svc.get("command") for name, svc in services.items()}
    assert commands["airflow-apiserver"] == "api-server"
    assert commands["airflow-scheduler"] == "scheduler"
    assert commands["airflow-dag-processor"] == "dag-processor"
    assert commands["airflow-triggerer"] == "triggerer"
    assert "airflow db migrate" in services["airflow-init"]["command"][1]
    assert services["postgres"]["image"].startswith("postgres:")
    emulators = services["bcdv-emulators"]["entrypoint"]
    assert emulators[emulators.index("--public-host") + 1] == "bcdv-emulators"
    for name in ("airflow-init", "airflow-apiserver", "airflow-scheduler",
                 "airflow-dag-processor", "airflow-triggerer"):
        svc = services[name]
        env = svc["environment"]
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://")
        mounts = {v.split(":")[1] for v in svc["volumes"]}
        assert {"/opt/airflow/dags", "/opt/airflow/plugins", "/opt/airflow/include"} <= mounts
        for local in ("./dags", "./plugins", "./include"):
            assert (ROOT / local).is_dir()
