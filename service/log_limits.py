"""Logs a client cannot flood: repeats of one message are let through a few times a window.

Any client can cause a warning (a request uvicorn cannot parse logs one line each, a 5xx logs
its traceback), so 1,000 bad requests of 7 bytes once wrote thousands of lines. Only warnings
and errors are limited: no request logs at info unless the access log is on (one line each).
The filter keys records by (logger, level, message template), not by the formatted text, so
a message that names the client's path or id is still one key. Within each window ``limit``
records of a key pass, the last of them saying that the rest are suppressed; the first one
after the window says how many were. Each worker process filters its own records.

C libraries write to file descriptor 2 behind logging's back: libmpg123 (inside libsndfile)
writes about 7 lines per malformed MP3. :func:`capture_native_stderr` puts a pipe on fd 2 and
logs what comes through it, so those lines are limited like any other record.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time

# Loggers whose handlers get the filter: the root (the service's loggers propagate to it) and
# uvicorn's own, which do not propagate (uvicorn's logging config).
_LOGGERS = ("", "uvicorn", "uvicorn.access")


class RepeatLimiter(logging.Filter):
    def __init__(self, limit: int, window_s: float) -> None:
        super().__init__()
        self.limit = limit
        self.window_s = window_s
        self._lock = threading.Lock()  # records come from batch threads too
        # key -> [window start, records seen in the window, suppressed in the last window]
        self._seen: dict[tuple[str, int, str], list[float]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True  # info is the service's own (startup, the access log if asked for)
        key = (record.name, record.levelno, str(record.msg))
        now = time.monotonic()
        with self._lock:
            entry = self._seen.get(key)
            if entry is None or now - entry[0] >= self.window_s:
                suppressed = 0 if entry is None else int(max(entry[1] - self.limit, 0))
                self._seen[key] = [now, 1]
                if suppressed:
                    self._append(record, f"{suppressed} similar messages were suppressed")
                if self.limit == 1:
                    self._append(record, f"similar messages are suppressed for {self.window_s:g} s")
                self._forget_old(now)
                return True
            entry[1] += 1
            count = int(entry[1])
        if count < self.limit:
            return True
        if count == self.limit:
            self._append(record, f"similar messages are suppressed for {self.window_s:g} s")
            return True
        return False

    @staticmethod
    def _append(record: logging.LogRecord, note: str) -> None:
        record.msg = f"{record.msg} [{note}]"

    def _forget_old(self, now: float) -> None:
        # Bounded memory: keys are templates (a few dozen), but drop idle ones all the same.
        if len(self._seen) > 1000:
            idle = [k for k, (start, _) in self._seen.items() if now - start >= self.window_s]
            for key in idle:
                del self._seen[key]


def limit_repeats(limit: int, window_s: float) -> RepeatLimiter | None:
    """Attach one :class:`RepeatLimiter` to the handlers logging is configured with (0: off).

    Call after uvicorn's ``Config`` has configured logging, so that its handlers are there.
    """
    if limit <= 0:
        return None
    limiter = RepeatLimiter(limit, window_s)
    for name in _LOGGERS:
        for handler in logging.getLogger(name).handlers:
            handler.addFilter(limiter)
    return limiter


def capture_native_stderr(limiter: RepeatLimiter | None) -> None:
    """Log what native code writes to fd 2 (``mmserve.native``), through ``limiter``.

    Python's own stderr (and every handler that wrote to it) moves to a copy of the original
    descriptor first, so nothing logged can come back through the pipe.
    """
    original = os.fdopen(os.dup(2), "w", buffering=1, errors="backslashreplace")
    old = sys.stderr
    for name in _LOGGERS:
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream is old:
                handler.setStream(original)
    sys.stderr = original
    native = logging.getLogger("mmserve.native")
    native.propagate = False  # its own handler, on the original descriptor
    handler = logging.StreamHandler(original)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    if limiter is not None:
        handler.addFilter(limiter)
    native.addHandler(handler)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    threading.Thread(target=_pump, args=(read_end, native), daemon=True, name="stderr").start()


def _pump(read_end: int, native: logging.Logger) -> None:
    with os.fdopen(read_end, "rb") as pipe:
        for line in pipe:
            text = line.rstrip().decode("utf-8", "replace")[:500]
            native.warning("native library: %s", text)
