"""CLI fixtures (see demo_env): ``demo`` (shared, read-only), ``fresh`` (own), ``bcdv``."""

from .demo_env import bcdv, demo, fresh  # noqa: F401
