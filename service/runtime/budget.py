"""A request's CPU budget for decoding, shared by its rows (a V2 batch of encoded files).

Each row's decode is bounded by the limits on its own; a request of many rows could still
spend ``rows x`` that. The budget counts the CPU time (``time.thread_time``: this thread's own
CPU, so time spent waiting for the GIL or the cores does not count) of the rows decoded so
far; once it is spent, the request's remaining rows are refused (413) without being decoded.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

from service.errors import PayloadTooLarge

T = TypeVar("T")


class DecodeBudget:
    def __init__(self, limit_ms: float) -> None:
        self.limit_ms = limit_ms
        self.spent_ms = 0.0
        self.rows = 0
        self._lock = threading.Lock()  # rows may run on several batch threads

    def run(self, decode: Callable[[], T]) -> T:
        """Runs on a batch thread: ``decode`` if budget is left, counting what it costs."""
        with self._lock:
            if self.spent_ms >= self.limit_ms:
                raise PayloadTooLarge(
                    f"the request's {self.rows} rows decoded so far took {self.spent_ms:.0f} ms "
                    f"of CPU; the limit (limits.max_request_decode_ms) is {self.limit_ms:g} ms"
                )
        start = time.thread_time()
        try:
            return decode()
        finally:
            with self._lock:
                self.spent_ms += (time.thread_time() - start) * 1000.0
                self.rows += 1
