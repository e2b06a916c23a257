"""The local emulators, for the demo, ``bcdv up`` and ``bcdv emulators``.

They are their own distribution (``bcdv-emulators``, package ``bcdv_emulators``, in the
``emulators/`` folder of a bcdv checkout) and are never part of the product: a production
install has no use for them. Commands that need them say how to install them.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from bcdv.errors import ConfigError

INSTALL_HINT = ("the local emulators are not installed; they are for the demo, tests and "
                "benchmarks: from a bcdv checkout run `make venv`, or "
                "`pip install -e emulators/`")


def emulators_module(name: str = "testing") -> ModuleType:
    """``bcdv_emulators.<name>``, or a ConfigError that says how to install it."""
    try:
        return importlib.import_module(f"bcdv_emulators.{name}")
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] == "bcdv_emulators":
            raise ConfigError(INSTALL_HINT) from None
        raise
