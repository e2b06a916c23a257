"""Keep a sync's memory to what it holds: few glibc malloc arenas.

A load writes from several threads at once (batches of creates, their read-backs, the
pace's requests). glibc gives each thread that allocates while another holds the heap an
arena of its own, up to eight per core, and memory freed in one arena is kept for it: the
large, short-lived buffers of HTTP answers (a read-back of 10,000 rows is several MB of
text, then its rows) then leave each arena at its own high-water mark. A 100,000-row full
load held 387 MB at its peak with glibc's default and 299 MB with two arenas, in the same
time (41.9 s against 40.7 s, in process against the emulators). Two is the value commonly
set for threaded services through glibc's ``MALLOC_ARENA_MAX`` tunable; ``mallopt`` sets the
same limit from inside the process, for the arenas made from then on.

Only glibc (Linux) has arenas; elsewhere nothing changes, nor with ``BCDV_MALLOC_ARENAS=0``
or when ``MALLOC_ARENA_MAX`` is set in the environment (the operator's choice wins).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

from bcdv.settings import load_settings

_M_ARENA_MAX = -8  # glibc's malloc.h
_done = False


def few_malloc_arenas() -> bool:
    """Cap glibc's malloc arenas for this process at ``BCDV_MALLOC_ARENAS`` (once); True if
    set."""
    global _done
    arenas = load_settings().malloc_arenas
    if _done or arenas <= 0 or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        _done = bool(libc.mallopt(_M_ARENA_MAX, arenas))
    except (OSError, AttributeError):
        return False
    return _done
