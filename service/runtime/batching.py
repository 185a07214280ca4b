"""Dynamic batching: concurrent requests for one model share one ONNX Runtime run.

One :class:`Batcher` per model. Requests put a :class:`FeatureRow` and a future on a bounded
queue; one collector task on the event loop forms batches and hands each to the batcher's own
inference thread (ONNX Runtime releases the GIL while it runs), then resolves each future with
its row of the outputs.

Batch forming, adaptively:
- take the oldest live request, then everything already queued, up to ``max_batch_size``;
- wait up to ``max_wait_ms`` for more only while requests are known to be on their way (they
  announced themselves with :meth:`Batcher.arriving` before feature extraction); a lone request
  never waits, so batching costs nothing at concurrency 1;
- while a batch runs, the next one forms in the queue, so inference overlaps feature work.

Failure isolation: a batch that fails is re-run row by row, so one bad row fails alone.
Back-pressure: at most ``max_queue`` requests per model are admitted (extracting features or
queued); beyond that :class:`Overloaded` (429 with Retry-After) answers at once. A request
whose client went away (its task cancelled) or whose deadline passed is dropped before
inference.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from service.errors import (
    InferenceFailed,
    ModelNotReady,
    Overloaded,
    RequestTimeout,
    ServiceError,
)
from service.manifest import Manifest
from service.runtime.rows import FeatureRow, collate, split_rows
from service.runtime.session import ModelSession
from service.runtime.threads import CpuRunner


class BatchObserver(Protocol):
    """What the batcher reports as it works (metrics implement this)."""

    def queue_changed(self, depth: int) -> None: ...

    def batch_done(self, size: int, inference_s: float) -> None: ...


@dataclass(frozen=True)
class RowResult:
    outputs: dict[str, np.ndarray]
    queue_ms: float
    inference_ms: float
    batch_size: int


@dataclass
class _Pending:
    row: FeatureRow
    future: asyncio.Future[RowResult]
    enqueued: float = field(default_factory=time.perf_counter)


class Batcher:
    def __init__(
        self,
        session: ModelSession,
        manifest: Manifest,
        *,
        max_batch_size: int,
        max_wait_ms: float,
        max_queue: int,
        observer: BatchObserver | None = None,
    ) -> None:
        self.session = session
        self.manifest = manifest
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000.0
        self.max_queue = max_queue
        self._observer = observer
        self._queue: deque[_Pending] = deque()
        self._wakeup = asyncio.Event()
        self._incoming = 0
        self._running_batch = False
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._inference = CpuRunner(1, name=f"infer-{manifest.name}")

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    @property
    def busy(self) -> bool:
        return bool(self._queue) or self._running_batch

    async def start(self) -> None:
        self._task = asyncio.create_task(
            self._collect_forever(), name=f"batcher-{self.manifest.name}"
        )

    @property
    def pending(self) -> int:
        """Requests admitted and not yet taken into a batch (extracting or queued)."""
        return self._incoming + len(self._queue)

    def _check_open(self) -> None:
        if self._closing or self._task is None:
            raise ModelNotReady(f"model {self.manifest.name!r} is not accepting requests")

    def _admit(self) -> None:
        self._check_open()
        if self.pending >= self.max_queue:
            raise Overloaded(
                f"model {self.manifest.name!r} has {self.pending} requests pending "
                f"(limit {self.max_queue}); retry shortly"
            )

    @contextlib.asynccontextmanager
    async def arriving(self) -> AsyncIterator[None]:
        """Admit a request that will extract features and then submit.

        Admission counts requests from here on, so the bound covers feature extraction too:
        under overload, requests are refused at once instead of piling up in front of the
        feature threads.
        """
        self._admit()
        self._incoming += 1
        try:
            yield
        finally:
            self._incoming -= 1
            self._wakeup.set()

    async def submit(self, row: FeatureRow, *, timeout_s: float) -> RowResult:
        self._check_open()
        # Requests admitted through arriving() are already counted; this bounds direct callers.
        if len(self._queue) >= self.max_queue:
            raise Overloaded(
                f"model {self.manifest.name!r} has {len(self._queue)} requests queued "
                f"(limit {self.max_queue}); retry shortly"
            )
        loop = asyncio.get_running_loop()
        pending = _Pending(row, loop.create_future())
        self._queue.append(pending)
        self._wakeup.set()
        if self._observer is not None:
            self._observer.queue_changed(len(self._queue))
        # A timer that fails the future, rather than wait_for(shield(...)): that wrapped every
        # request in two more futures and a task. Awaiting the future itself also means a
        # cancelled caller (its client went away) cancels it, so its row is skipped.
        timer = loop.call_later(timeout_s, _expire, pending.future, timeout_s)
        try:
            return await pending.future
        finally:
            timer.cancel()

    async def close(self, drain_timeout_s: float) -> None:
        """Stop taking requests, finish queued and running batches, then stop."""
        self._closing = True
        deadline = time.monotonic() + drain_timeout_s
        while self.busy and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for pending in self._queue:
            if not pending.future.done():
                pending.future.set_exception(ModelNotReady("the service is shutting down"))
        self._queue.clear()
        self._inference.close()

    async def _collect_forever(self) -> None:
        while True:
            batch = await self._next_batch()
            if self._observer is not None:
                self._observer.queue_changed(len(self._queue))
            self._running_batch = True
            try:
                started = time.perf_counter()
                results = await self._inference.run(self._infer, [p.row for p in batch])
                inference_s = time.perf_counter() - started
            finally:
                self._running_batch = False
            if self._observer is not None:
                self._observer.batch_done(len(batch), inference_s)
            for pending, result in zip(batch, results, strict=True):
                if pending.future.done():
                    continue
                if isinstance(result, ServiceError):
                    pending.future.set_exception(result)
                else:
                    pending.future.set_result(
                        RowResult(
                            outputs=result,
                            queue_ms=(started - pending.enqueued) * 1000.0,
                            inference_ms=inference_s * 1000.0,
                            batch_size=len(batch),
                        )
                    )

    def _take_live(self, batch: list[_Pending]) -> None:
        while self._queue and len(batch) < self.max_batch_size:
            pending = self._queue.popleft()
            if not pending.future.done():  # cancelled or timed out: costs no inference
                batch.append(pending)

    async def _next_batch(self) -> list[_Pending]:
        batch: list[_Pending] = []
        while not batch:
            self._take_live(batch)
            if not batch:
                self._wakeup.clear()
                await self._wakeup.wait()
        deadline = time.perf_counter() + self.max_wait_s
        while len(batch) < self.max_batch_size:
            self._take_live(batch)
            remaining = deadline - time.perf_counter()
            if len(batch) >= self.max_batch_size or self._incoming == 0 or remaining <= 0:
                break
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), remaining)
        return batch

    def _infer(self, rows: list[FeatureRow]) -> list[dict[str, np.ndarray] | ServiceError]:
        """Runs on the inference thread. A failed batch is retried row by row."""
        try:
            outputs = self.session.run(collate(rows, self.manifest))
            return list(split_rows(outputs, len(rows)))
        except (ServiceError, ValueError) as exc:
            if len(rows) == 1:
                return [_as_service_error(exc)]
        return [self._infer(rows[i : i + 1])[0] for i in range(len(rows))]


def _expire(future: asyncio.Future[RowResult], timeout_s: float) -> None:
    if not future.done():
        future.set_exception(RequestTimeout(f"no answer within {timeout_s:g} s"))


def _as_service_error(exc: Exception) -> ServiceError:
    if isinstance(exc, ServiceError):
        return exc
    return InferenceFailed(f"could not build the batch: {exc}")
