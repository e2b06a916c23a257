"""State store: couplings, watermarks, job log, record errors, run locks (SQLAlchemy)."""

from bcdv.state.locks import LockHolder
from bcdv.state.store import Stamp, StateStore, default_state_url

__all__ = ["LockHolder", "Stamp", "StateStore", "default_state_url"]
