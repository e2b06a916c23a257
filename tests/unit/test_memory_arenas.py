"""A sync process caps glibc's malloc arenas (``bcdv.engine.memory``): threads that allocate
at once share two arenas instead of one each, so memory freed by one thread is reused by
the next instead of kept at each arena's high-water mark (the figures are the benchmark's,
README: Performance; no memory is measured here).

The check counts the arenas glibc reports (``malloc_stats``) after eight threads compress
data at once: zlib allocates its state without Python's lock, as OpenSSL does while a load's
threads read their answers, so the threads really do allocate at the same time."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc",
                                reason="malloc arenas are glibc's (Linux)")

SCRIPT = """
import ctypes, os, sys, threading, zlib
if sys.argv[1] == "engine":
    from bcdv.engine import SyncContext  # noqa: F401 (the import alone changes nothing)
    from bcdv.engine.memory import few_malloc_arenas
    print(few_malloc_arenas(), flush=True)
data = os.urandom(1 << 20)
def work():
    for _ in range(6):
        zlib.compress(data, 6)
threads = [threading.Thread(target=work) for _ in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
ctypes.CDLL("libc.so.6").malloc_stats()
"""


def _arenas(mode: str, **env: str) -> tuple[str, int]:
    environ = {k: v for k, v in os.environ.items()
               if k not in ("MALLOC_ARENA_MAX", "BCDV_MALLOC_ARENAS")} | env
    done = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True,
                          text=True, env=environ, timeout=120, check=True)
    return done.stdout.strip(), sum(line.startswith("Arena ") for line in
                                    done.stderr.splitlines())


def test_a_sync_process_allocates_from_two_arenas() -> None:
    capped, arenas = _arenas("engine")
    assert capped == "True" and arenas <= 2
    # The same threads without the cap: an arena each, or nearly.
    _, default = _arenas("plain")
    assert default > 2


def test_an_operator_s_malloc_arena_max_or_bcdv_malloc_arenas_0_is_left_alone() -> None:
    capped, arenas = _arenas("engine", MALLOC_ARENA_MAX="4")
    assert capped == "False" and arenas <= 4
    capped, arenas = _arenas("engine", BCDV_MALLOC_ARENAS="0")
    assert capped == "False" and arenas > 2


TRIM = """
import random
from bcdv.engine.memory import give_back_free_memory

def rss():
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmRSS")).split()[1])

random.seed(7)
# 200 MB in pieces well under glibc's mmap threshold, every 50th kept: what is freed lies
# below memory still in use, which free() alone never hands back.
held = [bytearray(random.randint(10_000, 30_000)) for _ in range(10_000)]
kept = held[::50]
del held
before = rss()
print(give_back_free_memory(), give_back_free_memory(), before, rss())
"""


def test_a_load_gives_the_free_pages_inside_the_heap_back() -> None:
    """What a load frees below memory it still holds stays resident until trimmed; the
    writer trims after each batch it finishes, at most once a second."""
    done = subprocess.run([sys.executable, "-c", TRIM], capture_output=True, text=True,
                          timeout=120, check=True)
    first, second, before, after = done.stdout.split()
    assert (first, second) == ("True", "False")  # the second, within the second: skipped
    assert int(before) - int(after) > 100_000, (before, after)  # KB: over 100 MB back
