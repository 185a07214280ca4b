"""Prometheus metrics, correct across worker processes.

The service runs one process per core. Each process writes its samples to files in
``PROMETHEUS_MULTIPROC_DIR`` (set by ``serve`` before the workers start, see ``service.cli``)
and ``GET /metrics`` merges every process's files, so any worker answers for all of them.
Without that variable (tests, a single process) the app's own registry is exposed.

Request metrics come from :class:`MetricsMiddleware`, which reads the matched route template
after routing (so paths with model names do not explode the label space); batch and queue
metrics come from the batcher through :class:`ModelObserver`.

Every label value is bounded by the configuration, never by what a client sends: a route
template or ``unmatched``, a status the service chose, a configured key name, and a model name
the repository knows or ``_unknown``. 300 requests naming random 4 KB models once grew
``/metrics`` from 37 KB to 21 MB and its render from 10 to 557 ms.
"""

from __future__ import annotations

import os
import time
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as prometheus_multiprocess
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.keys import ANONYMOUS
from service.restarts import RestartCollector

STATE_KEY = "api_key"  # where service.auth leaves the request's key name
UNKNOWN_MODEL = "_unknown"  # the model label of every name the repository does not know

_LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
_FAST_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class Metrics:
    """Every metric the service exports, registered on one registry per app."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "mmserve_requests",
            "Requests by model, endpoint and status.",
            ["model", "endpoint", "status"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "mmserve_request_duration_seconds",
            "Time from request start to response.",
            ["model", "endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_wait_seconds = Histogram(
            "mmserve_queue_wait_seconds",
            "Time a request waited for its batch to start.",
            ["model"],
            buckets=_FAST_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "mmserve_batch_size",
            "Rows per ONNX Runtime run.",
            ["model"],
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.feature_seconds = Histogram(
            "mmserve_feature_seconds",
            "Decode + feature extraction time per modality.",
            ["model", "modality"],
            buckets=_FAST_BUCKETS,
            registry=r,
        )
        self.inference_seconds = Histogram(
            "mmserve_inference_seconds",
            "ONNX Runtime time per batch.",
            ["model"],
            buckets=_FAST_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "mmserve_queue_depth",
            "Requests waiting for a batch (summed over workers).",
            ["model"],
            multiprocess_mode="livesum",
            registry=r,
        )
        # By API key *name* (the configured names and "anonymous"), never the key itself.
        self.requests_by_key = Counter(
            "mmserve_requests_by_key",
            "Requests by API key name and status.",
            ["key", "status"],
            registry=r,
        )
        self.rejected = Counter(
            "mmserve_rejected_requests",
            "Requests refused by back-pressure or deadlines.",
            ["model", "reason"],
            registry=r,
        )
        # A rising share of "unsure" is the first sign that clients send what the model was
        # not trained on.
        self.ood_answers = Counter(
            "mmserve_ood_answers",
            "Predictions with an out-of-distribution verdict, by verdict (sure or unsure).",
            ["model", "verdict"],
            registry=r,
        )

    def observer(self, model: str) -> ModelObserver:
        return ModelObserver(self, model)

    def observe_features(self, model: str, feature_ms: dict[str, float]) -> None:
        for modality, ms in feature_ms.items():
            self.feature_seconds.labels(model, modality).observe(ms / 1000.0)

    def observe_queue_wait(self, model: str, queue_ms: float) -> None:
        self.queue_wait_seconds.labels(model).observe(queue_ms / 1000.0)

    def observe_ood(self, model: str, unsure: bool) -> None:
        self.ood_answers.labels(model, "unsure" if unsure else "sure").inc()

    def render(self) -> tuple[bytes, str]:
        """The exposition text for ``GET /metrics`` and its content type."""
        if (path := multiprocess_dir()) is not None:
            merged = CollectorRegistry()
            prometheus_multiprocess.MultiProcessCollector(merged, path=path)  # type: ignore[no-untyped-call]
            merged.register(RestartCollector())  # the supervisor's count (service.restarts)
            return generate_latest(merged), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    @staticmethod
    def process_exiting() -> None:
        """Drop this process's live gauges from the merged view (call at shutdown)."""
        if multiprocess_dir() is not None:
            prometheus_multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


class ModelObserver:
    """The batcher's view of the metrics for one model (see ``BatchObserver``)."""

    def __init__(self, metrics: Metrics, model: str) -> None:
        self._depth = metrics.queue_depth.labels(model)
        self._batch_size = metrics.batch_size.labels(model)
        self._inference = metrics.inference_seconds.labels(model)
        self._rejected = metrics.rejected
        self._model = model

    def queue_changed(self, depth: int) -> None:
        self._depth.set(depth)

    def batch_done(self, size: int, inference_s: float) -> None:
        self._batch_size.observe(size)
        self._inference.observe(inference_s)

    def rejected(self, reason: str) -> None:
        self._rejected.labels(self._model, reason).inc()


class MetricsMiddleware:
    """Counts and times every HTTP request by route template, model and status."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_recording_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_recording_status)
        finally:
            endpoint, model = self._labels(scope)
            if endpoint != "/metrics":
                self.metrics.requests.labels(model, endpoint, str(status)).inc()
                key = scope.get("state", {}).get(STATE_KEY, ANONYMOUS)
                self.metrics.requests_by_key.labels(key, str(status)).inc()
                self.metrics.request_seconds.labels(model, endpoint).observe(
                    time.perf_counter() - start
                )

    def _labels(self, scope: Scope) -> tuple[str, str]:
        route: Any = scope.get("route")
        state: dict[str, Any] = scope.get("state", {})
        endpoint = getattr(route, "path", None) or "unmatched"
        params: dict[str, Any] = scope.get("path_params") or {}
        # Routes that resolve a model (the default one included) name it in the scope state.
        model = str(state.get("model") or "")
        if not model and (named := params.get("model")):
            model = str(named) if _known_model(scope, str(named)) else UNKNOWN_MODEL
        return endpoint, model or "-"


def _known_model(scope: Scope, name: str) -> bool:
    repository = getattr(getattr(scope.get("app"), "state", None), "repository", None)
    return repository is not None and bool(repository.knows(name))
