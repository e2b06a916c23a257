"""docker-compose.yml's profiles, checked without Compose (only a docker client here): the
default profile is the path to production (it never touches the user's connections and needs
nothing of the demo), the emulators and their connections live in the ``demo`` profile."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEMO = "demo"


def _services() -> dict[str, dict[str, Any]]:
    return dict(yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"])


def _profiles(svc: dict[str, Any]) -> set[str]:
    return set(svc.get("profiles") or ())


def _default() -> dict[str, dict[str, Any]]:
    """Services `docker compose up` starts without --profile."""
    return {n: s for n, s in _services().items() if not _profiles(s)}


def _demo_only() -> dict[str, dict[str, Any]]:
    return {n: s for n, s in _services().items() if _profiles(s) == {DEMO}}


def _mounts(svc: dict[str, Any]) -> list[tuple[str, bool]]:
    """(named volume or host path, writable) of a service's volumes."""
    out = []
    for volume in svc.get("volumes") or ():
        parts = volume.split(":") if isinstance(volume, str) else [volume["source"]]
        out.append((parts[0], not (len(parts) > 2 and "ro" in parts[2].split(","))))
    return out


def _text(value: Any) -> str:
    return value if isinstance(value, str) else " ".join(map(str, value or ()))


def test_profiles_split_production_from_the_demo() -> None:
    default, demo = _default(), _demo_only()
    assert {"postgres", "airflow-init", "airflow-apiserver", "airflow-scheduler",
            "airflow-dag-processor", "airflow-triggerer"} <= set(default)
    assert {"bcdv-emulators", "bcdv-demo-connections"} <= set(demo)
    api_env = default["airflow-apiserver"]["environment"]
    assert api_env["AIRFLOW__CORE__TEST_CONNECTION"] == "Enabled"
    assert api_env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql")
    assert api_env["BCDV_STATE_URL"].startswith("postgresql")


def test_default_profile_needs_nothing_that_only_the_demo_has() -> None:
    """No depends_on on a demo service, no mount of data only a demo service writes."""
    default, demo = _default(), _demo_only()
    writers: dict[str, set[str]] = {}
    for name, svc in _services().items():
        for source, writable in _mounts(svc):
            writers.setdefault(source, set())
            if writable:
                writers[source].add(name)
    for name, svc in default.items():
        assert not set(svc.get("depends_on") or ()) & set(demo), name
        for source, _ in _mounts(svc):
            assert not writers[source] or writers[source] - set(demo), (name, source)


def test_default_profile_never_references_the_emulators_or_touches_connections() -> None:
    demo = set(_demo_only())
    for name, svc in _default().items():
        env = svc.get("environment") or {}
        assert "BCDV_ENDPOINTS" not in env, name
        assert not any(k.startswith("AIRFLOW_CONN_") for k in env), name
        for key, value in env.items():
            text = str(value).lower()
            assert "emulator" not in text and not any(d in text for d in demo), (name, key)
        script = f"{_text(svc.get('entrypoint'))} {_text(svc.get('command'))}"
        assert "connections" not in script and "AIRFLOW_CONN" not in script, name
        assert "emulator" not in script, name


def test_depends_on_targets_exist_in_the_same_or_a_broader_profile() -> None:
    services = _services()
    for name, svc in services.items():
        for target in svc.get("depends_on") or ():
            assert target in services, (name, target)
            mine, theirs = _profiles(svc), _profiles(services[target])
            assert not theirs or (mine and mine <= theirs), (name, target)


def test_every_named_volume_is_declared() -> None:
    declared = set(yaml.safe_load((ROOT / "docker-compose.yml").read_text())["volumes"])
    for name, svc in _services().items():
        for source, _ in _mounts(svc):
            assert source.startswith(".") or source in declared, (name, source)


def _stub(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text(f"#!/bin/bash\n{body}\n")
    path.chmod(0o755)


@pytest.mark.parametrize("existing", [(), ("bcdv_business_central",),
                                      ("bcdv_business_central", "bcdv_dataverse")])
def test_demo_connections_are_created_only_where_missing(tmp_path: Path,
                                                         existing: tuple[str, ...]) -> None:
    """Run the demo step's script with stub ``airflow``/``bcdv``/``cp``: it adds a connection
    only where ``airflow connections get`` finds none, never deletes one, and the connections
    it adds name the CA copy in the shared bcdv-ca volume."""
    svc = _demo_only()["bcdv-demo-connections"]
    assert svc["entrypoint"] == "/bin/bash" and svc["command"][0] == "-c"
    script = svc["command"][1].replace("$$", "$")  # Compose's escape of a literal $
    assert "delete" not in script and "overwrite" not in script
    bin_dir, calls = tmp_path / "bin", tmp_path / "calls"
    bin_dir.mkdir()
    conn = '{\\"extra\\": {\\"ca_bundle\\": \\"/emulators/tls/ca.pem\\"}}'
    _stub(bin_dir, "bcdv", "echo export BCDV_ENDPOINTS=/emulators/endpoints.json\n"
          f"echo \"export AIRFLOW_CONN_BCDV_BUSINESS_CENTRAL='{conn}'\"\n"
          f"echo \"export AIRFLOW_CONN_BCDV_DATAVERSE='{conn}'\"")
    _stub(bin_dir, "cp", f'echo "cp $*" >> {calls}')
    exists = " ".join(existing)
    _stub(bin_dir, "airflow", f'echo "airflow $* env=${{AIRFLOW_CONN_BCDV_DATAVERSE:-}}" '
          f'>> {calls}\nif [ "$2" = get ]; then [[ " {exists} " == *" $3 "* ]]; fi')
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 0, proc.stderr
    lines = calls.read_text().splitlines()
    assert lines[0] == "cp /emulators/tls/ca.pem /opt/airflow/ca/bcdv-emulators-ca.pem"
    added = [line.split()[3] for line in lines if line.startswith("airflow connections add")]
    assert added == [c for c in ("bcdv_business_central", "bcdv_dataverse") if c not in existing]
    for line in lines[1:]:
        assert line.split()[2] in ("get", "add") and line.endswith("env="), line
        if " add " in line:
            assert '"/opt/airflow/ca/bcdv-emulators-ca.pem"' in line
