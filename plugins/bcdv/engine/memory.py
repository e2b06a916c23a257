"""Keep a sync's memory to what it holds: few glibc malloc arenas, and their free pages
given back as a load goes.

A load writes from several threads at once (batches of creates and updates, the pace's
requests). glibc gives each thread that allocates while another holds the heap an
arena of its own, up to eight per core, and memory freed in one arena is kept for it: the
large, short-lived buffers of HTTP bodies (a CreateMultiple of 1,000 rows, a page of
5,000) then leave each arena at its own high-water mark. A 100,000-row full
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
import functools
import platform
import time

from bcdv.settings import load_settings

_M_ARENA_MAX = -8  # glibc's malloc.h
TRIM_EVERY_S = 1.0  # the most often give_back_free_memory trims
_done = False
_last_trim = float("-inf")


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """The C library, when it is glibc (None elsewhere or when it cannot be loaded); looked
    up once (``platform.libc_ver`` reads the interpreter's binary)."""
    if platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def few_malloc_arenas() -> bool:
    """Cap glibc's malloc arenas for this process at ``BCDV_MALLOC_ARENAS`` (once); True if
    set."""
    global _done
    arenas = load_settings().malloc_arenas
    libc = _glibc()
    if _done or arenas <= 0 or libc is None:
        return False
    try:
        _done = bool(libc.mallopt(_M_ARENA_MAX, arenas))
    except AttributeError:
        return False
    return _done


def give_back_free_memory(every: float = TRIM_EVERY_S) -> bool:
    """Return the free pages inside glibc's arenas to the system (``malloc_trim``), at most
    once per ``every`` seconds of the process; True if it ran and gave any back.

    glibc hands back only the free memory at the top of its heap on its own; what is freed
    below a chunk still in use stays resident. A load frees a batch's payloads and answers
    after each batch, while the next batches' are still held, so without
    this the free space left behind grows with the length of the load: a 1,000,000-row
    full load peaked at 390 MB (77 MB of it free inside the arenas) against 295 MB at
    100,000; trimmed after each batch, 362 MB. A trim takes a few milliseconds; the
    interval keeps loads of many small batches (Business Central's 100 operations) from
    paying it per batch."""
    global _last_trim
    libc = _glibc()
    now = time.monotonic()
    if libc is None or now - _last_trim < every:
        return False
    _last_trim = now
    try:
        return bool(libc.malloc_trim(0))
    except AttributeError:
        return False
