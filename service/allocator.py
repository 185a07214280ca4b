"""glibc's allocator told to give memory back after large requests.

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
``MALLOC_*_THRESHOLD_`` 128 KiB and ``MALLOC_ARENA_MAX=2``     +7 / +12 MB
=============================================================  ==================

So every block of 1 MiB or more is mapped on its own and unmapped when freed, and a heap top
over 1 MiB free is trimmed. The arena count is left alone: fewer arenas means the feature
threads contend for one lock. Set at start with ``mallopt`` (the environment variables are
read only when a process starts, too late for ``serve --workers 1``), unless the variables are
set: then glibc has read them and they win.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

THRESHOLD_BYTES = 1 << 20
# mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_PARAMETERS = {
    "MALLOC_TRIM_THRESHOLD_": _M_TRIM_THRESHOLD,
    "MALLOC_MMAP_THRESHOLD_": _M_MMAP_THRESHOLD,
}


def give_memory_back() -> list[str]:
    """Set the thresholds the environment does not set; the variables set, by name."""
    name = ctypes.util.find_library("c")
    if name is None:
        return []
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
        return []
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    done = []
    for variable, parameter in _PARAMETERS.items():
        if variable not in os.environ and mallopt(parameter, THRESHOLD_BYTES) == 1:
            done.append(variable)
    return done
