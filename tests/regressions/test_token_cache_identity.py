"""A token cached for one identity setup is never offered to another, and a token a service
refuses is dropped and fetched again once.

Found in CI: two emulator sets in one test process, the second on a port the first had used,
got the first set's cached token (401 Authentication_InvalidCredentials from Business
Central) or reused the first set's CA bundle for the token request (CERTIFICATE_VERIFY_FAILED).
The msal applications were keyed by authority and client id only. On a real tenant the same
happens when a connection's secret or CA bundle changes in a long-lived worker, or when a
token is revoked before it expires: Microsoft Entra's guidance is that a client which gets a
401 with ``error="invalid_token"`` acquires a new token
(https://learn.microsoft.com/en-us/entra/identity-platform/access-tokens#token-lifetime).
"""

from __future__ import annotations

import socket
from pathlib import Path

from bcdv.clients.auth import reset_token_cache
from bcdv.clients.business_central import BusinessCentralClient
from bcdv.settings import endpoints_from_dict
from bcdv_emulators.testing import run_emulators


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _customers(endpoints: dict) -> list:
    settings = endpoints_from_dict(endpoints)
    client = BusinessCentralClient(settings.business_central)
    try:
        return client.list("customers")
    finally:
        client.close()


def test_a_new_identity_setup_on_the_same_authority_gets_its_own_token(tmp_path: Path) -> None:
    reset_token_cache()
    port = _free_port()
    with run_emulators(tmp_path / "first", identity_port=port) as endpoints:
        assert _customers(endpoints) is not None
    # Same authority URL, another CA, signing key and client secret.
    with run_emulators(tmp_path / "second", identity_port=port) as endpoints:
        assert _customers(endpoints) is not None


def test_a_refused_token_is_replaced_once(tmp_path: Path) -> None:
    """Same data directory (CA, secret), new signing key: the cached token is refused."""
    reset_token_cache()
    port = _free_port()
    with run_emulators(tmp_path / "emu", identity_port=port) as endpoints:
        assert _customers(endpoints) is not None
    (tmp_path / "emu" / "signing.key").unlink()
    with run_emulators(tmp_path / "emu", identity_port=port) as endpoints:
        assert _customers(endpoints) is not None
