"""One request through a model: uploads -> batcher (features + inference on its thread) -> outputs.

Shared by every endpoint that answers from uploads (predict, embed, and the V2 protocol's
BYTES inputs), so they all time, batch and fail the same way. Nothing here blocks the loop:
decoding, feature extraction and inference run on the batcher's threads
(:mod:`service.runtime.batching`).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from starlette.types import Receive

from service.disconnect import cancel_on_disconnect
from service.manifest import Modality
from service.metrics import Metrics
from service.repository import LoadedModel
from service.runtime.budget import DecodeBudget
from service.runtime.extract import extract_row
from service.schemas import LabelProbability, OodAssessment, TaskPrediction, Timings
from service.settings import Settings


@dataclass(frozen=True)
class Inference:
    model: LoadedModel
    modalities: list[Modality]
    outputs: dict[str, np.ndarray]
    batch_size: int
    timings: Timings


async def infer(
    model: LoadedModel,
    uploads: Mapping[Modality, bytes | str],
    *,
    settings: Settings,
    metrics: Metrics,
    started: float,
    receive: Receive | None = None,
    budget: DecodeBudget | None = None,
) -> Inference:
    """Run one request; ``started`` is its ``time.perf_counter()`` at arrival.

    With ``receive`` (the request's ASGI channel), the work is cancelled if the client
    disconnects before its answer is ready. Rows of one request pass the same ``budget``: their
    decoding shares it, and it groups them in the batcher
    (:meth:`~service.runtime.batching.Batcher.submit_job`).
    """
    work = _infer(
        model, uploads, settings=settings, metrics=metrics, started=started, budget=budget
    )
    if receive is None:
        return await work
    return await cancel_on_disconnect(work, receive)


async def _infer(
    model: LoadedModel,
    uploads: Mapping[Modality, bytes | str],
    *,
    settings: Settings,
    metrics: Metrics,
    started: float,
    budget: DecodeBudget | None,
) -> Inference:
    job = functools.partial(extract_row, model, uploads, settings.limits)
    if budget is not None:
        job = functools.partial(budget.run, job)
    result = await model.batcher.submit_job(
        job, timeout_s=settings.batching.request_timeout_s, group=budget
    )
    metrics.observe_features(model.name, {str(m): ms for m, ms in result.feature_ms.items()})
    metrics.observe_queue_wait(model.name, result.queue_ms)
    timings = Timings(
        decode_features=sum(result.feature_ms.values()),
        queue=result.queue_ms,
        inference=result.inference_ms,
        total=(time.perf_counter() - started) * 1000.0,
    )
    present = [m for m in model.manifest.modality_order if m in uploads]
    return Inference(model, present, result.outputs, result.batch_size, timings)


def task_prediction(probabilities: np.ndarray, labels: list[str], top_k: int) -> TaskPrediction:
    # Runs on the event loop for every answer: plain Python on a handful of floats is faster
    # than numpy's argsort and clip, whose per-call overhead dominates on 10 elements.
    values: list[float] = probabilities.astype(np.float64).tolist()
    # Python's sort is stable with reverse=True too: ties keep the label order.
    order = sorted(range(len(values)), key=values.__getitem__, reverse=True)[: max(1, top_k)]
    # float32 softmax can land a hair outside [0, 1]
    ranked = [
        LabelProbability(label=labels[i], probability=min(1.0, max(0.0, values[i]))) for i in order
    ]
    return TaskPrediction(label=ranked[0].label, probability=ranked[0].probability, top_k=ranked)


def predictions(inference: Inference, top_k: int) -> dict[str, TaskPrediction]:
    """Every task that applies: one needing more modalities than were sent is left out."""
    carried = len(inference.modalities)
    return {
        task.name: task_prediction(inference.outputs[task.output], task.labels, top_k)
        for task in inference.model.manifest.tasks
        if carried >= task.min_modalities
    }


def ood(inference: Inference) -> OodAssessment | None:
    check = inference.model.ood
    return None if check is None else check.assess(inference.modalities, inference.outputs)


def contributions(inference: Inference) -> dict[Modality, float] | None:
    manifest = inference.model.manifest
    if manifest.contribution_output is None:
        return None
    weights = inference.outputs[manifest.contribution_output]
    return {m: float(w) for m, w in zip(manifest.modality_order, weights, strict=True)}
