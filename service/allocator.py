"""glibc's allocator made to give memory back after large requests.

A decoded upload is large for a moment (a 6000×6000 RGBA PNG is 144 MB of pixels, then float
copies) and freed at once. glibc's default keeps much of it: after freeing a large block it
raises its mmap threshold (up to 32 MB), so the next large arrays come from the heap arenas,
one per thread, and are not returned to the system when freed. Measured with
``serve --workers 2`` and 3 bursts of 8 concurrent worst-case uploads (148 KB RGBA PNG and
83 KB 16-bit PNG, both 6000×6000, and a 30 s stereo 48 kHz FLAC) across the four models, RSS
per worker from ``/proc`` (baseline about 170 MB, peak 1.8-2.8 GB during the bursts):

=============================================================  ==================
allocator                                                      RSS after, vs base
=============================================================  ==================
glibc defaults                                                 +1,572 / +2,091 MB
``MALLOC_ARENA_MAX=2``                                         +917 / +810 MB
``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` 1 MiB  +26 / +27 MB
the same and ``MALLOC_ARENA_MAX=2``                            +3 / +17 MB
=============================================================  ==================

The 1 MiB thresholds cost every request, though: each large block is mapped and unmapped, and
each heap top trimmed, so its pages fault in again on the next request. The workers' CPU per
predict went from 2.0-2.1 to 2.3-2.4 ms (``hey -n 3000 -c 16``, the benchmark's upload,
alternated), 10-15 % of the service's throughput. So glibc keeps its defaults and a thread
calls ``malloc_trim(0)`` (every arena's free pages, heap tops and middles, back to the system)
when the process has grown by :data:`TRIM_GROWTH_BYTES` over its lowest RSS of the last
minute, checked every :data:`CHECK_INTERVAL_S` from ``/proc/self/statm``: after a burst RSS
returns near its baseline within a second, and under a steady load, where RSS is flat,
nothing is trimmed at all.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
import time
from collections import deque
from collections.abc import Callable

CHECK_INTERVAL_S = 0.5
FLOOR_WINDOW_S = 60.0
TRIM_GROWTH_BYTES = 32 << 20
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _rss_bytes() -> int:
    with open("/proc/self/statm", "rb") as statm:
        return int(statm.read().split()[1]) * _PAGE


def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def _trim_when_grown(trim: Callable[[int], int]) -> None:
    # The floor is the lowest RSS of the last FLOOR_WINDOW_S: memory that is really in use
    # (a model loaded while serving, a longer queue) raises it within that window, so the
    # thread does not go on trimming what cannot be given back.
    recent: deque[int] = deque(maxlen=round(FLOOR_WINDOW_S / CHECK_INTERVAL_S))
    recent.append(_rss_bytes())
    while True:
        time.sleep(CHECK_INTERVAL_S)
        rss = _rss_bytes()
        if rss > min(recent) + TRIM_GROWTH_BYTES:
            trim(0)
            rss = _rss_bytes()
        recent.append(rss)


def give_memory_back() -> bool:
    """Start the trimming thread (glibc only, and only where /proc is); whether it started."""
    trim = _malloc_trim()
    if trim is None or not os.path.exists("/proc/self/statm"):
        return False
    threading.Thread(target=_trim_when_grown, args=(trim,), daemon=True, name="malloc-trim").start()
    return True
