"""The one place that moves CPU work off the event loop.

Decoding and feature extraction run in anyio's worker threads, bounded by one limiter per app
so a burst of uploads cannot start more threads than there are cores to run them (they would
only contend for the GIL and the caches). Most of the heavy work (Pillow decoding,
libsndfile, soxr, numpy's FFT, tokenizers) releases the GIL. The app's lifespan creates one
:class:`CpuRunner` (``app.state.cpu``); route handlers ``await cpu.run(func, *args)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar, TypeVarTuple, Unpack

import anyio.to_thread
from anyio import CapacityLimiter

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


class CpuRunner:
    def __init__(self, threads: int) -> None:
        self.threads = threads
        self._limiter: CapacityLimiter | None = None

    async def run(self, func: Callable[[Unpack[Ts]], T], *args: *Ts) -> T:
        if self._limiter is None:  # created inside the running event loop
            self._limiter = CapacityLimiter(self.threads)
        return await anyio.to_thread.run_sync(func, *args, limiter=self._limiter)
