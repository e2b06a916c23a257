"""Start/stop the three services: uvicorn with TLS, one background thread per service.

Sockets are bound before the servers start (port 0 = a free port, no race), and the first
start of a data directory creates certificates, keys, the secret and seeds the databases.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import ssl
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import uvicorn

from bcdv_emulators.base import Service, Throttling
from bcdv_emulators.config import Settings, endpoints_document, load_or_create_secret
from bcdv_emulators.perf import parse_latency, parse_throttle, scaled_limits
from bcdv_emulators.seeds import parse_seed
from bcdv_emulators.tls import ensure_certificates
from bcdv_emulators.tokens import TokenAuthority


class _QuietDrops(logging.Filter):
    """Drop uvicorn's complaint about a request left unanswered: the fault injection (reset,
    lost response, held request) does that on purpose, hundreds of times in a drill."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "returned without starting response" not in record.getMessage()


def _quiet_drops() -> None:
    log = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _QuietDrops) for f in log.filters):
        log.addFilter(_QuietDrops())


def _bind(host: str, port: int) -> socket.socket:
    # proto=IPPROTO_TCP matters: asyncio only sets TCP_NODELAY on accepted sockets whose proto
    # says TCP, and without it every response with a body waits ~40 ms (Nagle + delayed ACK).
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM,
                         socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(512)
    sock.set_inheritable(True)
    return sock


@dataclass
class _Running:
    service: Service
    server: uvicorn.Server
    thread: threading.Thread
    sock: socket.socket


@dataclass
class Emulators:
    """The three running services plus what clients need (``endpoints``)."""

    settings: Settings
    endpoints: dict[str, Any]
    services: dict[str, Service]
    _running: list[_Running] = field(default_factory=list)

    def stop(self, graceful: bool = False) -> None:
        """Stop all servers (``graceful``: let open requests finish) and close the databases."""
        for r in self._running:
            r.server.should_exit = True
            # Idle keep-alive TLS connections would otherwise hold the shutdown for its timeout.
            r.server.force_exit = not graceful
        for r in self._running:
            r.thread.join(timeout=10)
            with contextlib.suppress(OSError):
                r.sock.close()
        for svc in self.services.values():
            close = getattr(svc, "close", None)
            if close is not None:
                close()
            elif getattr(svc, "db", None) is not None:
                svc.db.close()
        self._running.clear()


def start(data_dir: str | Path, seed: str = "empty", host: str = "127.0.0.1",
          identity_port: int = 0, bc_port: int = 0, dv_port: int = 0,
          public_host: str | None = None, **options: Any) -> Emulators:
    """Start the services (ports 0 = free ports) and write DIR/endpoints.json.

    ``seed`` is applied when a database is new or when ``options["reseed"]`` is true; an
    existing data directory otherwise keeps its data.
    """
    from bcdv_emulators.bc.service import BCService
    from bcdv_emulators.dv.service import DVService
    from bcdv_emulators.identity import IdentityService

    parse_seed(seed)
    _quiet_drops()
    ddir = Path(data_dir).resolve()
    ddir.mkdir(parents=True, exist_ok=True)
    # The host name clients use (in URLs, tokens' audiences and the certificate): the bind
    # address unless that is a wildcard, or --public-host (e.g. a docker compose service).
    advertised = public_host or (host if host not in ("0.0.0.0", "::", "") else "127.0.0.1")
    _ca, cert, key = ensure_certificates(ddir, [advertised])
    socks = {"identity": _bind(host, identity_port), "bc": _bind(host, bc_port),
             "dv": _bind(host, dv_port)}
    ports = {k: s.getsockname()[1] for k, s in socks.items()}
    settings = Settings(ddir, advertised, ports["identity"], ports["bc"], ports["dv"],
                        load_or_create_secret(ddir), dict(options))
    authority = TokenAuthority.load(ddir)
    fresh = not (ddir / "bc.sqlite").exists() or bool(options.get("reseed"))
    bc = BCService(settings, authority)
    dv = DVService(settings, authority)
    ident = IdentityService(settings, authority)
    if fresh or not bc.company_id():
        bc.reset_data(seed)
    if fresh or not dv.has_data():
        dv.reset_data(seed)
    for svc in (bc, dv):
        throttling = options.get("throttling")
        if throttling is False:
            svc.state.throttling.enabled = False
            svc.state.default_throttling.enabled = False
        _profile(svc, options)
    services: dict[str, Service] = {"identity": ident, "business_central": bc, "dataverse": dv}
    endpoints = endpoints_document(settings, bc.company_id())
    # Atomically (a temporary file renamed into place): a client waiting for the file may
    # read it the moment it exists, never half written.
    tmp = ddir / f".endpoints.json.{os.getpid()}"
    tmp.write_text(json.dumps(endpoints, indent=2))
    os.replace(tmp, ddir / "endpoints.json")
    emu = Emulators(settings, endpoints, services)
    ssl_ctx_args = {"ssl_certfile": str(cert), "ssl_keyfile": str(key)}
    try:
        for (svc, key_name) in ((ident, "identity"), (bc, "bc"), (dv, "dv")):
            config = uvicorn.Config(svc, host=host, port=ports[key_name], log_level="warning",
                                    access_log=False, lifespan="off", http="h11", ws="none",
                                    loop="asyncio",
                                    server_header=False, date_header=False,
                                    timeout_graceful_shutdown=2, timeout_keep_alive=30,
                                    ssl_ciphers="TLSv1.2:TLSv1.3",
                                    ssl_version=ssl.PROTOCOL_TLS_SERVER, **ssl_ctx_args)
            server = uvicorn.Server(config)
            sock = socks[key_name]
            thread = threading.Thread(target=_serve, args=(server, sock), daemon=True,
                                      name=f"bcdv-emulator-{key_name}")
            thread.start()
            emu._running.append(_Running(svc, server, thread, sock))
        deadline = time.monotonic() + 15
        while not all(r.server.started for r in emu._running):
            if time.monotonic() > deadline or not all(r.thread.is_alive()
                                                      for r in emu._running):
                raise RuntimeError("emulators did not start")
            time.sleep(0.01)
    except BaseException:
        emu.stop()
        raise
    return emu


def _profile(svc: Service, options: dict[str, Any]) -> None:
    """Options ``latency`` (a preset, ``key=value`` list or dict, see
    :func:`bcdv_emulators.perf.parse_latency`), ``throttle_scale`` (the default service
    protection limits' counts times this) and ``throttle`` (explicit limits, a dict or
    ``requests=60,window_seconds=10,...``): they become the service's defaults, which
    ``POST /_emulator/reset`` returns to."""
    st = svc.state
    if options.get("latency") not in (None, "", "none"):
        st.default_latency = parse_latency(options["latency"], svc.name)
        st.latency = parse_latency(options["latency"], svc.name)
    scale, limits = options.get("throttle_scale"), options.get("throttle")
    if scale is not None or limits:
        overrides = parse_throttle(limits) if isinstance(limits, str) else dict(limits or {})
        st.default_throttling = scaled_limits(
            st.default_throttling, None if scale is None else float(scale), overrides)
        st.throttling = Throttling(**asdict(st.default_throttling))


def _serve(server: uvicorn.Server, sock: socket.socket) -> None:
    asyncio.run(server.serve(sockets=[sock]))
