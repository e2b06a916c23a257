"""``bcdv emulators ...`` (also ``python -m bcdv_emulators ...``).

Subcommands::

    start --data-dir DIR [--seed empty|demo|synthetic:N] [--reseed] [--host 127.0.0.1]
          [--identity-port 47443] [--bc-port 47444] [--dataverse-port 47445]
          [--no-throttling] [--throttle-scale F] [--throttle requests=N,window_seconds=S,...]
          [--latency none|cloud|rtt_ms=..,read_row_ms=..,write_row_ms=..] [--option name=json ...]
        serve in the foreground until SIGTERM/SIGINT; writes DIR/endpoints.json
        (--latency and --throttle*: see bcdv_emulators.perf)
    env DIR                      print shell exports (BCDV_ENDPOINTS, AIRFLOW_CONN_BCDV_*)
    reset DIR [--seed NAME]      data back to empty (or NAME); faults/clock/counters cleared
    seed DIR NAME                replace the data with a seed
    faults DIR [--service S] [--off | --json DOC | --latency-ms N --rate STATUS=P ...
               --next 429,503 --retry-after N --reset-rate P --timeout-rate P]
    clock DIR --offset SECONDS [--service S]
    throttling DIR [--service S] [--json DOC | --off | --on]
    requests DIR [--service S]   request counters
    stats DIR [--service S] [--reset]    requests by kind, rows, 429s, simulated delay
    latency DIR [--service S] [--set SPEC | --off]   show or change the latency profile

``S`` is identity, business_central (bc), dataverse (dv) or all (default).
"""
from __future__ import annotations

import argparse
import json
import shlex
import signal
import sys
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bcdv_emulators.config import (
    DEFAULT_BC_PORT,
    DEFAULT_DV_PORT,
    DEFAULT_HOST,
    DEFAULT_IDENTITY_PORT,
)

SERVICES = ("identity", "business_central", "dataverse")
ALIASES = {"bc": "business_central", "dv": "dataverse", "id": "identity"}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bcdv emulators", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("start", help="serve the three emulators in the foreground")
    s.add_argument("--data-dir", required=True)
    s.add_argument("--seed", default="empty")
    s.add_argument("--reseed", action="store_true", help="apply --seed even if DIR has data")
    s.add_argument("--host", default=DEFAULT_HOST, help="address to bind")
    s.add_argument("--public-host", default=None,
                   help="host name clients use (URLs, certificate); default: --host, or "
                        "127.0.0.1 when --host is a wildcard")
    s.add_argument("--identity-port", type=int, default=DEFAULT_IDENTITY_PORT)
    s.add_argument("--bc-port", type=int, default=DEFAULT_BC_PORT)
    s.add_argument("--dataverse-port", type=int, default=DEFAULT_DV_PORT)
    s.add_argument("--no-throttling", action="store_true")
    s.add_argument("--throttle-scale", type=float, default=None,
                   help="service protection limits' counts times F (window kept), e.g. 0.01")
    s.add_argument("--throttle", default=None, metavar="K=V,...",
                   help="explicit limits: requests, window_seconds, execution_ms, "
                        "concurrent, processing")
    s.add_argument("--latency", default=None,
                   help="latency profile: none, cloud or rtt_ms=..,read_row_ms=..,"
                        "write_row_ms=.. (row_ms = write_row_ms)")
    s.add_argument("--option", action="append", default=[], metavar="NAME=JSON",
                   help="a documented emulator option, e.g. bc_read_only='\"ignore\"'")
    e = sub.add_parser("env", help="print shell exports for the running emulators")
    e.add_argument("data_dir")
    r = sub.add_parser("reset")
    r.add_argument("data_dir")
    r.add_argument("--seed", default="empty")
    sd = sub.add_parser("seed")
    sd.add_argument("data_dir")
    sd.add_argument("seed")
    f = sub.add_parser("faults")
    f.add_argument("data_dir")
    f.add_argument("--service", default="all")
    f.add_argument("--off", action="store_true")
    f.add_argument("--json")
    f.add_argument("--latency-ms", type=int, default=0)
    f.add_argument("--rate", action="append", default=[], metavar="STATUS=P")
    f.add_argument("--next", default="")
    f.add_argument("--retry-after", type=int, default=1)
    f.add_argument("--reset-rate", type=float, default=0.0)
    f.add_argument("--timeout-rate", type=float, default=0.0)
    c = sub.add_parser("clock")
    c.add_argument("data_dir")
    c.add_argument("--offset", type=float, required=True)
    c.add_argument("--service", default="all")
    t = sub.add_parser("throttling")
    t.add_argument("data_dir")
    t.add_argument("--service", default="all")
    t.add_argument("--json")
    t.add_argument("--off", action="store_true")
    t.add_argument("--on", action="store_true")
    q = sub.add_parser("requests")
    q.add_argument("data_dir")
    q.add_argument("--service", default="all")
    st = sub.add_parser("stats")
    st.add_argument("data_dir")
    st.add_argument("--service", default="all")
    st.add_argument("--reset", action="store_true")
    la = sub.add_parser("latency")
    la.add_argument("data_dir")
    la.add_argument("--service", default="all")
    la.add_argument("--set", default=None, metavar="SPEC")
    la.add_argument("--off", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run a subcommand; returns the process exit code."""
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if args.cmd == "start":
            return _start(args)
        if args.cmd == "env":
            print(env_exports(Path(args.data_dir)))
            return 0
        return _admin_command(args)
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"bcdv emulators: {exc}", file=sys.stderr)
        return 1


def _start(args: argparse.Namespace) -> int:
    from bcdv_emulators import server
    options: dict[str, Any] = {}
    for item in args.option:
        name, _, raw = item.partition("=")
        try:
            options[name] = json.loads(raw)
        except ValueError:
            options[name] = raw
    if args.no_throttling:
        options["throttling"] = False
    if args.throttle_scale is not None:
        options["throttle_scale"] = args.throttle_scale
    if args.throttle:
        options["throttle"] = args.throttle
    if args.latency:
        options["latency"] = args.latency
    emu = server.start(args.data_dir, seed=args.seed, host=args.host,
                       public_host=args.public_host,
                       identity_port=args.identity_port, bc_port=args.bc_port,
                       dv_port=args.dataverse_port, reseed=args.reseed, **options)
    stop = threading.Event()

    def _on_signal(signum: int, frame: Any) -> None:
        stop.set()

    previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    ep = emu.endpoints
    print(f"identity          {ep['identity']['authority']}")
    print(f"business central  {ep['business_central']['base_url']}")
    print(f"dataverse         {ep['dataverse']['api_url']}")
    print(f"endpoints         {Path(args.data_dir).resolve() / 'endpoints.json'}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        emu.stop(graceful=True)
        for s, h in previous.items():
            signal.signal(s, h)
    return 0


def load_endpoints(data_dir: Path) -> dict[str, Any]:
    """DIR/endpoints.json."""
    path = data_dir / "endpoints.json"
    if not path.exists():
        raise OSError(f"{path} not found: start the emulators with --data-dir {data_dir}")
    return dict(json.loads(path.read_text()))


def env_exports(data_dir: Path) -> str:
    """Shell export lines pointing the CLI and the Airflow connections at the emulators."""
    ep = load_endpoints(data_dir)
    ident, bc, dv = ep["identity"], ep["business_central"], ep["dataverse"]
    bc_conn = {"conn_type": "bcdv_business_central", "host": bc["base_url"],
               "login": ident["client_id"], "password": ident["client_secret"],
               "extra": {"tenant_id": ident["tenant_id"], "authority": ident["authority"],
                         "scope": bc["scope"], "environment": bc["environment"],
                         "company_id": bc["company_id"], "ca_bundle": ep["ca_bundle"]}}
    dv_conn = {"conn_type": "bcdv_dataverse", "host": dv["base_url"],
               "login": ident["client_id"], "password": ident["client_secret"],
               "extra": {"tenant_id": ident["tenant_id"], "authority": ident["authority"],
                         "scope": dv["scope"], "ca_bundle": ep["ca_bundle"]}}
    lines = [f"export BCDV_ENDPOINTS={shlex.quote(str((data_dir / 'endpoints.json').resolve()))}",
             f"export AIRFLOW_CONN_BCDV_BUSINESS_CENTRAL={shlex.quote(json.dumps(bc_conn))}",
             f"export AIRFLOW_CONN_BCDV_DATAVERSE={shlex.quote(json.dumps(dv_conn))}"]
    return "\n".join(lines)


def service_urls(ep: dict[str, Any]) -> dict[str, str]:
    """scheme://host:port of each service."""
    def origin(url: str) -> str:
        """scheme://host:port of a URL."""
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.netloc}"
    return {"identity": origin(ep["identity"]["authority"]),
            "business_central": origin(ep["business_central"]["base_url"]),
            "dataverse": origin(ep["dataverse"]["base_url"])}


def admin(data_dir: Path, service: str, method: str, route: str,
          doc: dict[str, Any] | None = None) -> dict[str, Any]:
    """Call ``/_emulator/<route>`` on one or all services -> {service: response JSON}."""
    import requests
    ep = load_endpoints(data_dir)
    urls = service_urls(ep)
    name = ALIASES.get(service, service)
    targets = SERVICES if name == "all" else (name,)
    out = {}
    for svc in targets:
        if svc not in urls:
            raise ValueError(f"unknown service {service}")
        resp = requests.request(method, f"{urls[svc]}/_emulator/{route}", json=doc,
                                verify=ep["ca_bundle"], timeout=60)
        if resp.status_code >= 400:
            raise RuntimeError(f"{svc}: {resp.status_code} {resp.text}")
        out[svc] = resp.json()
    return out


def _admin_command(args: argparse.Namespace) -> int:
    ddir = Path(args.data_dir)
    if args.cmd == "reset":
        result = admin(ddir, "all", "POST", "reset", {"seed": args.seed})
    elif args.cmd == "seed":
        result = admin(ddir, "all", "POST", "seed", {"seed": args.seed})
    elif args.cmd == "faults":
        if args.off:
            result = admin(ddir, args.service, "DELETE", "faults")
        else:
            doc = json.loads(args.json) if args.json else {
                "latency_ms": args.latency_ms,
                "error_rates": {k: float(v) for k, v in (r.split("=") for r in args.rate)},
                "next": [int(x) if x.isdigit() else x for x in args.next.split(",") if x],
                "retry_after": args.retry_after, "reset_rate": args.reset_rate,
                "timeout_rate": args.timeout_rate}
            result = admin(ddir, args.service, "PUT", "faults", doc)
    elif args.cmd == "clock":
        result = admin(ddir, args.service, "PUT", "clock", {"offset_seconds": args.offset})
    elif args.cmd == "throttling":
        service = "business_central" if args.service == "all" else args.service
        services = ("business_central", "dataverse") if args.service == "all" else (service,)
        doc = json.loads(args.json) if args.json else {}
        if args.off or args.on:
            doc["enabled"] = bool(args.on)
        result = {s: admin(ddir, s, "PUT" if doc else "GET", "throttling", doc or None)[s]
                  for s in services}
    elif args.cmd == "stats":
        result = admin(ddir, args.service, "DELETE" if args.reset else "GET", "stats")
    elif args.cmd == "latency":
        service = "all" if args.service == "all" else args.service
        if args.off:
            result = admin(ddir, service, "DELETE", "latency")
        elif args.set:
            result = {}
            for svc in (("business_central", "dataverse") if service == "all" else (service,)):
                result.update(admin(ddir, svc, "PUT", "latency", _latency_doc(args.set, svc)))
        else:
            result = admin(ddir, service, "GET", "latency")
    else:
        result = admin(ddir, args.service, "GET", "requests")
    print(json.dumps(result, indent=2))
    return 0


def _latency_doc(spec: str, service: str) -> dict[str, Any]:
    """A --set SPEC as the admin API's document (the preset resolved for ``service``)."""
    from dataclasses import asdict

    from bcdv_emulators.perf import parse_latency
    return asdict(parse_latency(spec, ALIASES.get(service, service)))
