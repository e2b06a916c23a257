"""State store: couplings, watermarks, job log, record errors (SQLAlchemy)."""

from bcdv.state.store import StateStore, Stamp, default_state_url

__all__ = ["StateStore", "Stamp", "default_state_url"]
