"""Dynamic batching: concurrent requests for one model share one ONNX Runtime run.

One :class:`Batcher` per model. A request puts a job (its decode + feature extraction, or a
ready feature row) and a future on a bounded queue; a collector task on the event loop forms
batches and hands each to one of the batcher's threads, which extracts every row's features,
runs the batch through ONNX Runtime and splits the outputs; the loop then resolves each future.

Why features run on the batch's thread: with one worker process per core, each worker's
event loop and its CPU threads share one GIL. Extracting features on a separate pool and then
handing rows to an inference thread cost each request two more thread hand-offs and left
three threads contending for the GIL; profiled at 32 concurrent clients, the same decode,
features and inference took 20-40% more CPU inside the server than in the benchmark's
in-process loop. Doing a whole batch on one thread is exactly that loop: the loop thread only
parses HTTP and hands off one job per batch.

Batch forming, adaptively:
- when a thread is free, take the oldest live request and everything already queued, up to
  ``max_batch_size``; requests that arrive while a batch runs form the next one;
- wait up to ``max_wait_ms`` for more only while requests are known to be on their way (they
  announced themselves with :meth:`Batcher.arriving` while their body is read); a lone
  request never waits, so batching costs nothing at concurrency 1.

Failure isolation: a row whose features fail fails alone; a batch that fails in ONNX Runtime
is re-run row by row, so one bad row fails alone.

Fairness: a request with many rows to decode (a V2 request with a batch of encoded files) puts
each row on the queue under one ``group``, and a batch takes at most
``max_request_rows_per_batch`` rows of one group; the others wait for the next batch, behind
whatever other requests queued meanwhile. As each row's decode is bounded by the limits
(~250 ms at worst), no request holds a batch thread for more than that many rows' decoding
before other requests' rows get their turn. Back-pressure: at most ``max_queue``
requests per model are queued (a request still reading its body holds no place, see
:meth:`Batcher.arriving`); beyond that :class:`Overloaded` (429
with Retry-After) answers at once. A request whose client went away (its task cancelled) or
whose deadline passed before its batch started is dropped, costing no features or inference.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable
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
from service.manifest import Manifest, Modality
from service.runtime.extract import ExtractedRow
from service.runtime.rows import FeatureRow, collate, split_rows
from service.runtime.session import ModelSession
from service.runtime.threads import CpuRunner


class BatchObserver(Protocol):
    """What the batcher reports as it works (metrics implement this)."""

    def queue_changed(self, depth: int) -> None: ...

    def batch_done(self, size: int, inference_s: float) -> None: ...

    def rejected(self, reason: str) -> None: ...


# How long a replaced model's batcher must be idle before it closes: longer than a request
# takes from resolving its model to submitting (its body read and decoded, milliseconds here).
RETIRE_QUIET_S = 1.0

# A request's CPU work before inference, run on the batch's thread: decode and extract
# features (raising a ServiceError for bad input), or hand over a ready row.
RowJob = Callable[[], ExtractedRow]
Outputs = dict[str, np.ndarray]


@dataclass(frozen=True)
class RowResult:
    outputs: Outputs
    queue_ms: float
    inference_ms: float
    batch_size: int
    feature_ms: dict[Modality, float] = field(default_factory=dict)


@dataclass
class _Pending:
    job: RowJob
    future: asyncio.Future[RowResult]
    group: object | None = None  # rows of one request share it (see _take_live)
    enqueued: float = field(default_factory=time.perf_counter)


@dataclass
class _BatchRun:
    """What a batch thread hands back: each row's features or error, then the outputs."""

    extracted: list[ExtractedRow | Exception]
    outputs: list[Outputs | ServiceError]  # one per extracted row, in order
    started: float
    inference_s: float


class Batcher:
    def __init__(
        self,
        session: ModelSession,
        manifest: Manifest,
        *,
        max_batch_size: int,
        max_wait_ms: float,
        max_queue: int,
        threads: int = 1,
        observer: BatchObserver | None = None,
        max_request_rows_per_batch: int | None = None,
    ) -> None:
        self.session = session
        self.manifest = manifest
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000.0
        self.max_queue = max_queue
        self.max_group_rows = max_request_rows_per_batch or max_batch_size
        self._observer = observer
        self._queue: deque[_Pending] = deque()
        self._wakeup = asyncio.Event()
        self._incoming = 0
        self._threads = threads
        self._running = 0  # batches on the threads
        self._thread_free = asyncio.Event()
        self._runs: set[asyncio.Task[None]] = set()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._runner = CpuRunner(threads, name=f"batch-{manifest.name}")

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    @property
    def busy(self) -> bool:
        return bool(self._queue) or self._running > 0

    async def start(self) -> None:
        self._task = asyncio.create_task(
            self._collect_forever(), name=f"batcher-{self.manifest.name}"
        )

    @property
    def pending(self) -> int:
        """Requests admitted and not yet taken into a batch (queued)."""
        return len(self._queue)

    def _check_open(self) -> None:
        if self._closing or self._task is None:
            raise ModelNotReady(f"model {self.manifest.name!r} is not accepting requests")

    def _refused(self, error: Overloaded | RequestTimeout) -> Overloaded | RequestTimeout:
        """Report a refusal (429 or 504) to the observer; returns ``error`` to raise or set."""
        if self._observer is not None:
            self._observer.rejected(error.code)
        return error

    def admit(self, rows: int = 1) -> None:
        """The one admission rule, for every API: refuse (429, counted) unless ``rows`` more
        fit under ``max_queue``. A ``/v1`` request is one row, a V2 request as many as it
        carries; each row is checked again as it is queued (:meth:`submit_job`)."""
        self._check_open()
        if self.pending + rows > self.max_queue:
            several = ""
            if rows > 1:  # a V2 request: say why it does not fit although places are free
                several = f": this request's {rows} rows would pass batching.max_queue"
            raise self._refused(
                Overloaded(
                    f"model {self.manifest.name!r} has {self.pending} requests queued "
                    f"(limit {self.max_queue}){several}; retry shortly"
                )
            )

    @contextlib.asynccontextmanager
    async def arriving(self) -> AsyncIterator[None]:
        """A request whose inputs are still being read, and that will then submit.

        Refused at once (429) when the queue is already full, so under overload a request is
        refused before its body is read. But it takes no place in the queue until it submits:
        a client that opens a request and then sends nothing (or a byte a second) must not
        hold one of ``max_queue`` places (700 such clients once locked every normal request
        out). It is counted so that a batch may wait for it and a retiring model version is
        not closed under it; that wait is at most ``max_wait_ms`` per batch.
        """
        self.admit()
        self._incoming += 1
        try:
            yield
        finally:
            self._incoming -= 1
            self._wakeup.set()

    async def submit(self, row: FeatureRow, *, timeout_s: float) -> RowResult:
        """A ready feature row (the V2 protocol's FP32 inputs, the warm-up)."""
        return await self.submit_job(functools.partial(ExtractedRow, row), timeout_s=timeout_s)

    async def submit_job(
        self, job: RowJob, *, timeout_s: float, group: object | None = None
    ) -> RowResult:
        """Queue ``job``; it runs on a batch thread just before its batch's inference.

        Jobs of one request with several rows share a ``group`` (any object), so that a batch
        takes only ``max_request_rows_per_batch`` of them."""
        self.admit()
        loop = asyncio.get_running_loop()
        pending = _Pending(job, loop.create_future(), group)
        self._queue.append(pending)
        self._wakeup.set()
        if self._observer is not None:
            self._observer.queue_changed(len(self._queue))
        # A timer that fails the future, rather than wait_for(shield(...)): that wrapped every
        # request in two more futures and a task. Awaiting the future itself also means a
        # cancelled caller (its client went away) cancels it, so its row is skipped.
        timer = loop.call_later(timeout_s, self._expire, pending.future, timeout_s)
        try:
            return await pending.future
        finally:
            timer.cancel()

    async def retire(self, drain_timeout_s: float, quiet_s: float = RETIRE_QUIET_S) -> None:
        """Close a model version that requests no longer resolve (replaced or removed).

        A request that resolved it just before the swap may still be reading its body or
        decoding it, and only then submit; so the batcher keeps accepting work until it has
        been idle (nothing arriving, queued or running) for ``quiet_s``, at most
        ``drain_timeout_s`` in all, and then closes as at shutdown.
        """
        started = time.monotonic()
        quiet_since = started
        while (now := time.monotonic()) - started < drain_timeout_s:
            if self.busy or self._incoming:
                quiet_since = now
            elif now - quiet_since >= quiet_s:
                break
            await asyncio.sleep(0.05)
        await self.close(max(0.0, drain_timeout_s - (time.monotonic() - started)))

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
        for run in list(self._runs):
            with contextlib.suppress(asyncio.CancelledError):
                await run
        for pending in self._queue:
            if not pending.future.done():
                pending.future.set_exception(ModelNotReady("the service is shutting down"))
        self._queue.clear()
        self._runner.close()

    async def _collect_forever(self) -> None:
        while True:
            while self._running >= self._threads:
                self._thread_free.clear()
                await self._thread_free.wait()
            batch = await self._next_batch()
            if self._observer is not None:
                self._observer.queue_changed(len(self._queue))
            self._running += 1
            run = asyncio.create_task(self._run(batch))
            self._runs.add(run)
            run.add_done_callback(self._runs.discard)

    async def _run(self, batch: list[_Pending]) -> None:
        try:
            done = await self._runner.run(self._process, [p.job for p in batch])
        except Exception as exc:  # the thread could not run the batch at all
            done = _BatchRun([exc] * len(batch), [], time.perf_counter(), 0.0)
        finally:
            self._running -= 1
            self._thread_free.set()
        rows = len(done.outputs)
        if self._observer is not None and rows:
            self._observer.batch_done(rows, done.inference_s)
        outputs = iter(done.outputs)
        for pending, extracted in zip(batch, done.extracted, strict=True):
            result = extracted if isinstance(extracted, Exception) else next(outputs)
            if pending.future.done():
                continue
            if isinstance(result, Exception):
                pending.future.set_exception(result)
            else:
                assert isinstance(extracted, ExtractedRow)
                pending.future.set_result(
                    RowResult(
                        outputs=result,
                        queue_ms=(done.started - pending.enqueued) * 1000.0,
                        inference_ms=done.inference_s * 1000.0,
                        batch_size=rows,
                        feature_ms=extracted.feature_ms,
                    )
                )

    def _process(self, jobs: list[RowJob]) -> _BatchRun:
        """Runs on a batch thread: every row's features, then one inference for the good rows."""
        started = time.perf_counter()
        extracted: list[ExtractedRow | Exception] = []
        for job in jobs:
            try:
                extracted.append(job())
            except Exception as exc:  # this row's error; the handlers map it to its answer
                extracted.append(exc)
        rows = [e.row for e in extracted if isinstance(e, ExtractedRow)]
        inference_start = time.perf_counter()
        outputs = self._infer(rows) if rows else []
        return _BatchRun(extracted, outputs, started, time.perf_counter() - inference_start)

    def _take_live(self, batch: list[_Pending]) -> None:
        taken = Counter(p.group for p in batch if p.group is not None)
        deferred: list[_Pending] = []
        while self._queue and len(batch) < self.max_batch_size:
            pending = self._queue.popleft()
            if pending.future.done():  # cancelled or timed out: costs no inference
                continue
            if pending.group is not None:
                if taken[pending.group] >= self.max_group_rows:
                    deferred.append(pending)  # its request has its share of this batch
                    continue
                taken[pending.group] += 1
            batch.append(pending)
        self._queue.extendleft(reversed(deferred))  # first in line for the next batch

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

    def _expire(self, future: asyncio.Future[RowResult], timeout_s: float) -> None:
        if not future.done():
            future.set_exception(self._refused(RequestTimeout(f"no answer within {timeout_s:g} s")))

    def _infer(self, rows: list[FeatureRow]) -> list[Outputs | ServiceError]:
        """Runs on a batch thread. A failed batch is retried row by row."""
        try:
            outputs = self.session.run(collate(rows, self.manifest))
            return list(split_rows(outputs, len(rows)))
        except (ServiceError, ValueError) as exc:
            if len(rows) == 1:
                return [_as_service_error(exc)]
        return [self._infer(rows[i : i + 1])[0] for i in range(len(rows))]


def _as_service_error(exc: Exception) -> ServiceError:
    if isinstance(exc, ServiceError):
        return exc
    return InferenceFailed(f"could not build the batch: {exc}")
