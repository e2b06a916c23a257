"""``python crashsync.py <bcdv argv...>``: the bcdv CLI, SIGKILLed at a chosen point.

``BCDV_DRILL_KILL=<point>[:<nth>]`` picks the point (the nth time it is reached, default 1):

- ``after_extract``: a pass's source records are staged, nothing planned yet;
- ``mid_transform``: inside the plan stage, while the mapping's transform runs;
- ``after_write``: a write was answered, its coupling not yet committed (the engine's
  ``after_write_hook``, made for this);
- ``after_create``: the same, counting only creates (a pass writes its actions in the order
  its source read returned them, so the nth write can be a create one run and an update the next);
- ``before_watermark``: every write and coupling of the pass committed, the watermark not.

Killing between two write batches is done from outside (the emulators hold the nth batch and
the drill kills this process), so it needs no point here. Nothing in the engine is changed:
the points wrap the functions the CLI calls. ``BCDV_DRILL_LOG=DEBUG`` logs everything to
stderr (the secrets drill reads it).
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from typing import Any


def _die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def _nth(nth: int) -> Callable[[], bool]:
    seen = [0]

    def reached() -> bool:
        seen[0] += 1
        return seen[0] == nth

    return reached


def install(point: str, nth: int) -> None:
    """Arm one kill point."""
    reached = _nth(nth)
    if point == "after_extract":
        from bcdv.engine import runner

        real_extract = runner.extract

        def extract(*args: Any, **kwargs: Any) -> Any:
            state = real_extract(*args, **kwargs)
            if reached():
                _die()
            return state

        runner.extract = extract
    elif point == "mid_transform":
        from bcdv.engine import plan

        real_transform = plan.transform

        def transform(*args: Any, **kwargs: Any) -> Any:
            if reached():
                _die()
            return real_transform(*args, **kwargs)

        plan.transform = transform
    elif point in ("after_write", "after_create"):
        from bcdv.engine import apply

        def hook(action: dict[str, Any]) -> None:
            if (point == "after_write" or action["action"] == "insert") and reached():
                _die()

        apply.after_write_hook = hook
    elif point == "before_watermark":
        from bcdv.state.store import StateStore

        real_advance = StateStore.advance_watermark

        def advance(self: StateStore, *args: Any, **kwargs: Any) -> Any:
            if reached():
                _die()
            return real_advance(self, *args, **kwargs)

        StateStore.advance_watermark = advance  # type: ignore[method-assign]
    elif point:
        raise SystemExit(f"unknown kill point {point!r}")


def main() -> int:
    if os.environ.get("BCDV_DRILL_LOG"):  # e.g. DEBUG: every library's records on stderr
        import logging

        logging.basicConfig(level=os.environ["BCDV_DRILL_LOG"], stream=sys.stderr)
    point, _, nth = os.environ.get("BCDV_DRILL_KILL", "").partition(":")
    install(point, int(nth or 1))
    from bcdv.cli import main as bcdv

    return bcdv(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
