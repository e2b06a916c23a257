"""``bcdv up`` (``make up``): the emulators plus ``airflow standalone``, wired together, so a
newcomer sees the DAGs and the bcdv pages on localhost.

- the emulators (Entra ID, Business Central, Dataverse) with the demo company, data kept in
  ``.data/up/emulators`` between runs, on free loopback ports;
- the state store ``.data/up/state.db``, filled on first start by a real full synchronisation
  of CUSTOMER (so the pages show couplings, errors and a log at once; ``--empty`` skips it);
- ``airflow standalone`` (API server, scheduler, DAG processor, triggerer; LocalExecutor on
  SQLite) in ``.airflow/up`` with this project's dags/ and plugins/ and the connections
  ``bcdv_business_central``, ``bcdv_dataverse`` set (``AIRFLOW_CONN_*``) to the emulators,
  and the connection form's Test button enabled (``[core] test_connection``).

It prints the URL and the login once the API server answers, and stops everything on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bcdv.commands.common import EXIT_ERROR, EXIT_OK, progress


def _root() -> Path:
    for candidate in (Path.cwd(), Path(__file__).resolve().parents[3]):
        if (candidate / "dags").is_dir() and (candidate / "plugins").is_dir():
            return candidate
    raise SystemExit("run `bcdv up` from the project root (where dags/ and plugins/ are)")


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def airflow_env(root: Path, home: Path, port: int, endpoints: dict[str, Any],
                state_url: str) -> dict[str, str]:
    """The environment of ``airflow standalone``."""
    from bcdv.airflow.connections import local_airflow_env

    env = local_airflow_env(root, home, endpoints, state_url, home / "bcdv" / "staging")
    env.update({
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://localhost:{port}",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://localhost:{port}/execution/",
        # The connection form's Test button (Airflow 3 disables it by default: whoever may
        # edit connections may make the API server call out). Local, single-user Airflow.
        "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
        # standalone starts its parts as `airflow ...` from PATH: this virtualenv's first.
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    })
    return env


def _fill_demo(endpoints: dict[str, Any], state_url: str, staging: Path, root: Path) -> None:
    from bcdv.engine import SyncContext, sync_mapping
    from bcdv.mapping import load_mappings
    from bcdv.settings import endpoints_from_dict

    mappings = load_mappings(root / "include" / "mappings")
    ctx = SyncContext.create(endpoints_from_dict(endpoints), state_url, staging, mappings)
    try:
        for report in sync_mapping(ctx, mappings["CUSTOMER"], mode="full", run_id="up__demo"):
            progress(f"   {report.summary()}")
    finally:
        ctx.close()


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float) -> bool:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return True
        except requests.RequestException:
            pass
        time.sleep(1)
    return False


def _login(home: Path) -> str:
    file = home / "simple_auth_manager_passwords.json.generated"
    for _ in range(30):
        if file.exists():
            try:
                password = json.loads(file.read_text()).get("admin")
            except ValueError:
                password = None
            if password:
                return f"admin / {password}  (from {file})"
        time.sleep(1)
    return f"admin / the password in {file}"


def _unpause_record_dag(base: str, home: Path, timeout: float = 180) -> bool:
    """Unpause bcdv_sync_record (manual only: it runs when "sync now" triggers it); the
    scheduled mapping DAGs stay paused until the user unpauses them."""
    import requests

    file = home / "simple_auth_manager_passwords.json.generated"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            password = json.loads(file.read_text())["admin"]
            token = requests.post(f"{base}/auth/token", timeout=10, json={
                "username": "admin", "password": password}).json()["access_token"]
            resp = requests.patch(f"{base}/api/v2/dags/bcdv_sync_record", timeout=10,
                                  json={"is_paused": False},
                                  headers={"Authorization": f"Bearer {token}"})
            if resp.status_code == 200:
                return True
        except (OSError, ValueError, KeyError, requests.RequestException):
            pass
        time.sleep(3)
    return False


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def cmd_up(args: argparse.Namespace) -> int:
    """Start the emulators and Airflow; block until Ctrl-C (or SIGTERM)."""
    from bcdv.local_emulators import emulators_module
    from bcdv.settings import load_settings

    run_emulators = emulators_module("testing").run_emulators

    signal.signal(signal.SIGTERM, _interrupt)

    root = _root()
    data, home = root / ".data" / "up", root / ".airflow" / "up"
    home.mkdir(parents=True, exist_ok=True)
    args.port = args.port or load_settings().up_port
    if not _port_free(args.port):
        progress(f"port {args.port} is in use: stop what runs there or use --port")
        return EXIT_ERROR
    state_url = f"sqlite:///{data / 'state.db'}"
    log = home / "standalone.log"
    with run_emulators(data / "emulators", seed="demo") as endpoints:
        progress(f"emulators: Business Central {endpoints['business_central']['base_url']}")
        progress(f"           Dataverse {endpoints['dataverse']['base_url']}")
        if not args.empty and not (data / "state.db").exists():
            progress("filling the state store: full synchronisation of CUSTOMER")
            _fill_demo(endpoints, state_url, data / "staging", root)
        env = airflow_env(root, home, args.port, endpoints, state_url)
        progress(f"starting airflow standalone (log: {log}) ...")
        with log.open("a") as fh:
            proc = subprocess.Popen([str(Path(sys.executable).with_name("airflow")),
                                     "standalone"], env=env, stdout=fh,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        try:
            base = f"http://localhost:{args.port}"
            if not _wait_ready(f"{base}/api/v2/monitor/health", proc, args.timeout):
                progress(f"airflow did not come up; see {log}")
                return EXIT_ERROR
            print(f"\n  Airflow:      {base}\n  bcdv pages:   {base}/bcdv/  (also \"Dataverse "
                  f"sync\" in Airflow's navigation)\n  login:        {_login(home)}\n"
                  f"  CLI:          BCDV_ENDPOINTS={data / 'emulators' / 'endpoints.json'} "
                  f"BCDV_STATE_URL={state_url} .venv/bin/bcdv couplings list customer\n\n"
                  "  The DAGs start paused: unpause or trigger them in the UI. Ctrl-C stops "
                  "everything.", flush=True)
            if _unpause_record_dag(base, home):
                progress("  bcdv_sync_record is unpaused: \"sync now\" on the pages runs at once")
            proc.wait()
            return EXIT_OK if proc.returncode in (0, -signal.SIGTERM) else EXIT_ERROR
        except KeyboardInterrupt:
            return EXIT_OK
        finally:
            _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def register(sub: Any) -> None:
    """Add ``up`` to the CLI."""
    p = sub.add_parser("up", help="emulators + airflow standalone on localhost (make up)")
    p.add_argument("--port", type=int, help="the Airflow UI's port (default: BCDV_UP_PORT, "
                                            "else 8080)")
    p.add_argument("--empty", action="store_true", help="do not fill the state store with a "
                                                        "first demo sync")
    p.add_argument("--timeout", type=float, default=240, help="seconds to wait for Airflow")
    p.set_defaults(func=cmd_up)
