"""The one place that moves CPU work off the event loop.

Decoding and feature extraction run on a small pool of threads, one per app, sized by
``runtime.feature_threads``, so a burst of uploads cannot start more threads than there are
cores to run them (they would only contend for the GIL and the caches); the app's pool loads
and warms models and decodes V2 bodies. Each batcher runs its batches (decode, features,
inference) on a runner of its own (:mod:`service.runtime.batching`).

The hand-off is as lean as a thread hand-off gets, because the event loop pays it on every
request and the loop's time is what limits a worker under load: a job goes on a C
``SimpleQueue``, the thread answers through ``call_soon_threadsafe`` on a plain asyncio
future. Profiles at 32 concurrent clients put anyio's ``to_thread`` at 7-18% of the loop's GIL
time and ``run_in_executor`` (a ``concurrent.futures.Future`` with its condition variable,
chained to an asyncio future, plus the executor's bookkeeping) at about 10%. Jobs beyond the
threads wait in the queue (a batcher hands over one job per batch, so its queue stays short);
a job whose caller was cancelled before a thread took it is skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar, TypeVarTuple

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

_Job = tuple[asyncio.Future[Any], asyncio.AbstractEventLoop, Callable[..., Any], tuple[Any, ...]]


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the caller was cancelled while the job ran
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class CpuRunner:
    def __init__(self, threads: int, *, name: str = "features") -> None:
        self.threads = threads
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._workers = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
            for i in range(threads)
        ]
        for worker in self._workers:
            worker.start()

    async def run(self, func: Callable[[*Ts], T], *args: *Ts) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put((future, loop, func, args))
        return await future

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            future, loop, func, args = job
            if future.done():  # cancelled while queued: costs nothing
                continue
            try:
                result, error = func(*args), None
            except Exception as exc:
                result, error = None, exc
            with contextlib.suppress(RuntimeError):  # the loop closed while the job ran
                loop.call_soon_threadsafe(_settle, future, result, error)
            del job, future, result, error  # drop references before blocking for the next job

    def close(self) -> None:
        """Cancel queued jobs, let running ones finish, stop the threads."""
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                future, loop = job[0], job[1]
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(future.cancel)
        for _ in self._workers:
            self._jobs.put(None)
        for worker in self._workers:
            worker.join()
