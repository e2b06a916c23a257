"""The deferrable wait of :class:`bcdv.airflow.sensors.BcdvMappingSyncedSensor`.

Runs in the triggerer: it checks bcdv's job log every ``poke_interval`` seconds (the check is
a short blocking database read, run in a thread so the triggerer's event loop never blocks)
and fires one event: ``success`` with the job ids, or ``timeout`` with what it last saw.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent


class BcdvMappingSyncedTrigger(BaseTrigger):
    """Fires when every direction of ``mapping`` has a successful, non-dry-run job that
    finished after ``since`` (ISO 8601), or when ``timeout`` seconds have passed."""

    def __init__(self, *, state_url: str, mapping: str, directions: list[str], since: str,
                 accept_partial: bool = False, poke_interval: float = 60,
                 timeout: float = 3600) -> None:
        super().__init__()
        self.state_url = state_url
        self.mapping = mapping
        self.directions = list(directions)
        self.since = since
        self.accept_partial = accept_partial
        self.poke_interval = poke_interval
        self.timeout = timeout

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Class path and arguments (the state URL is the connection's: the triggerer needs
        it to read the job log)."""
        return (f"{type(self).__module__}.{type(self).__name__}",
                {"state_url": self.state_url, "mapping": self.mapping,
                 "directions": self.directions, "since": self.since,
                 "accept_partial": self.accept_partial, "poke_interval": self.poke_interval,
                 "timeout": self.timeout})

    def _check(self) -> Any:
        from bcdv.airflow.synced import check_synced
        from bcdv.service.validate import when
        from bcdv.state.store import StateStore

        # The store's engine is process-wide (cached by URL): nothing to close per check.
        return check_synced(StateStore(self.state_url), self.mapping, self.directions,
                            when(self.since, "since"), accept_partial=self.accept_partial)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Check until satisfied or timed out; one event either way."""
        deadline = time.monotonic() + self.timeout
        while True:
            check = await asyncio.to_thread(self._check)
            if check.done:
                yield TriggerEvent({"status": "success", "job_ids": check.job_ids})
                return
            if time.monotonic() >= deadline:
                yield TriggerEvent({"status": "timeout", "message": check.describe()})
                return
            await asyncio.sleep(min(self.poke_interval, max(0.0, deadline - time.monotonic())))
