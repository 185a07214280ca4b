"""The in-process ceiling: the service's CPU work on every core with no HTTP in the way.

Each worker loops: decode and featurise ``batch_size`` requests (``extract_row``), collate
them, one ONNX Runtime run, split the outputs — the service's per-request work minus HTTP,
multipart parsing, queueing and the event loop. Two layouts are measured:

- threads: one process, one shared session, one thread per core (the GIL is released in
  Pillow, libsndfile, soxr, numpy's FFT and BLAS, tokenizers and ONNX Runtime, not between);
- processes: one process per core, each with its own session (the service's own topology).

The faster is the ceiling. Every worker keeps BLAS/OpenMP pools at one thread and ONNX
Runtime at one intra-op thread without spinning, as the service does, so workers do not
fight for the cores.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any, Literal

from threadpoolctl import threadpool_limits

from tools.bench.model import InProcessModel, load_model
from tools.bench.uploads import Uploads

Layout = Literal["threads", "processes"]
_WARMUP_BATCHES = 3
_START_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class CeilingRun:
    layout: Layout
    workers: int
    batch_size: int
    requests: int
    seconds: float
    rps: float

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "seconds": round(self.seconds, 3), "rps": round(self.rps, 1)}


def _loop(
    model: InProcessModel, uploads: Uploads, batch_size: int, seconds: float
) -> tuple[int, float]:
    """Serve batches for ``seconds``; returns (requests served, seconds taken)."""
    fields = uploads.as_fields()
    start = time.perf_counter()
    deadline = start + seconds
    served = 0
    while time.perf_counter() < deadline:
        model.infer([model.features(fields) for _ in range(batch_size)])
        served += batch_size
    return served, time.perf_counter() - start


def _warm(model: InProcessModel, uploads: Uploads, batch_size: int) -> None:
    fields = uploads.as_fields()
    for _ in range(_WARMUP_BATCHES):
        model.infer([model.features(fields) for _ in range(batch_size)])


def single_request_ms(model: InProcessModel, uploads: Uploads, count: int) -> float:
    """Median ms of one request's decode + features + inference at batch 1."""
    fields = uploads.as_fields()
    _warm(model, uploads, 1)
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        model.infer([model.features(fields)])
        samples.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(samples)


def run_threads(
    model: InProcessModel, uploads: Uploads, workers: int, batch_size: int, seconds: float
) -> CeilingRun:
    _warm(model, uploads, batch_size)
    with ThreadPoolExecutor(workers) as pool:
        futures = [pool.submit(_loop, model, uploads, batch_size, seconds) for _ in range(workers)]
        results = [f.result() for f in futures]
    return _combine("threads", workers, batch_size, results)


def _process_worker(
    model_dir: Path,
    uploads: Uploads,
    batch_size: int,
    seconds: float,
    barrier: Barrier,
    results: mp.Queue[tuple[int, float]],
    providers: list[str] | None,
) -> None:
    with threadpool_limits(1):
        model = load_model(model_dir, providers=providers)
        _warm(model, uploads, batch_size)
        barrier.wait(_START_TIMEOUT_S)  # start together, once every worker is loaded and warm
        results.put(_loop(model, uploads, batch_size, seconds))


def run_processes(
    model_dir: Path,
    uploads: Uploads,
    workers: int,
    batch_size: int,
    seconds: float,
    providers: list[str] | None = None,
) -> CeilingRun:
    # spawn, not fork: a forked copy of a process holding ONNX Runtime threads is unsafe.
    context = mp.get_context("spawn")
    barrier = context.Barrier(workers)
    results: mp.Queue[tuple[int, float]] = context.Queue()
    procs = [
        context.Process(
            target=_process_worker,
            args=(model_dir, uploads, batch_size, seconds, barrier, results, providers),
        )
        for _ in range(workers)
    ]
    for proc in procs:
        proc.start()
    try:
        collected = [results.get(timeout=seconds + _START_TIMEOUT_S) for _ in procs]
    except queue.Empty:
        codes = [proc.exitcode for proc in procs]
        raise RuntimeError(
            f"ceiling worker processes gave no result (exit codes {codes})"
        ) from None
    finally:
        for proc in procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
    return _combine("processes", workers, batch_size, collected)


def _combine(
    layout: Layout, workers: int, batch_size: int, results: list[tuple[int, float]]
) -> CeilingRun:
    requests = sum(served for served, _ in results)
    seconds = max(taken for _, taken in results)
    rps = sum(served / taken for served, taken in results)
    return CeilingRun(layout, workers, batch_size, requests, seconds, rps)
