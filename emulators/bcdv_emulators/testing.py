"""In-process emulators for tests: ``with run_emulators(tmp_path) as endpoints: ...``."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bcdv_emulators import server
from bcdv_emulators.config import TENANT_ID
from bcdv_emulators.tokens import TokenAuthority


@contextmanager
def run_emulators(data_dir: str | Path, seed: str = "empty", **options: Any
                  ) -> Iterator[dict[str, Any]]:
    """Start identity, Business Central and Dataverse on free loopback ports.

    Yields the endpoints dict (same content as DIR/endpoints.json); stops them on exit.
    Keyword options: ``host``, ``identity_port``, ``bc_port``, ``dv_port`` (0 = free port),
    ``reseed`` (apply ``seed`` even if DIR holds data), ``throttling`` (False disables the
    service protection limits), and the services' documented options (``bc_read_only``,
    ``bc_delete_requires_if_match``, ``bc_maxpagesize_over_limit``, ``dv_alternate_keys``,
    ``dv_maxpagesize_over_limit``, ...).
    """
    emu = server.start(data_dir, seed=seed, **options)
    try:
        yield emu.endpoints
    finally:
        emu.stop()


def mint_token(data_dir: str | Path, audience: str, lifetime: int = 3599,
               now: float | None = None, claims: dict[str, Any] | None = None) -> str:
    """A token signed with DIR's key, for tests: already expired (``lifetime=-600``), or with
    claims Entra would not issue (``claims={"appid": other, "roles": None}``; None removes)."""
    return TokenAuthority.load(Path(data_dir)).mint(audience, now=now, lifetime=lifetime,
                                                    claims=claims)


__all__ = ["TENANT_ID", "mint_token", "run_emulators"]
