"""State store: couplings, watermarks, job log, record errors, run locks (SQLAlchemy)."""

from bcdv.state.locks import LockHolder
from bcdv.state.store import StateStore, Stamp, default_state_url

__all__ = ["LockHolder", "StateStore", "Stamp", "default_state_url"]
