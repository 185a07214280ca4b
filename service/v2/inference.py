"""One V2 request's rows through the model's batcher, next to the ``/v1`` requests.

Raw rows go through :func:`service.inference.infer`, exactly as a ``/v1`` upload does (feature
extraction on the batcher's thread, just before the batch's inference); feature rows go to the
batcher at once. All rows of a request are submitted together, admitted by
:meth:`~service.runtime.batching.Batcher.admit` as that many rows. Feature rows land in the same
batch when it has room; raw rows (each a decode) share a
:class:`~service.runtime.budget.DecodeBudget` (``limits.max_request_decode_ms`` of CPU for all
their decoding) that also groups them, so a batch takes at most
``batching.max_request_rows_per_batch`` of them and other clients' requests get their turn in
between.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence

import numpy as np

from service.errors import ServiceError
from service.inference import infer
from service.metrics import Metrics
from service.repository import LoadedModel
from service.runtime.budget import DecodeBudget
from service.runtime.rows import FeatureRow
from service.settings import Settings
from service.v2.binding import RawRow

RowOutputs = dict[str, np.ndarray]


async def run_rows(
    model: LoadedModel,
    rows: Sequence[RawRow] | Sequence[FeatureRow],
    *,
    settings: Settings,
    metrics: Metrics,
    started: float,
) -> list[RowOutputs]:
    """Every row's outputs, in order; the first row's error fails the request."""
    # Admitted as that many rows, by the rule every request meets (refusals counted alike).
    model.batcher.admit(len(rows))
    # Shared by this request's rows: their decoding's CPU budget, and their group in the
    # batcher, so that a batch takes only its share of them.
    budget = DecodeBudget(settings.limits.max_request_decode_ms)
    jobs: list[Awaitable[RowOutputs]] = []
    for row in rows:
        if isinstance(row, FeatureRow):
            jobs.append(_features(model, row, settings, metrics))
        else:
            jobs.append(_raw(model, row, settings, metrics, started, budget))
    results = await asyncio.gather(*jobs, return_exceptions=True)
    outputs: list[RowOutputs] = []
    for i, result in enumerate(results):
        if isinstance(result, BaseException):
            raise _for_row(result, i, len(rows))
        outputs.append(result)
    return outputs


async def _features(
    model: LoadedModel, row: FeatureRow, settings: Settings, metrics: Metrics
) -> RowOutputs:
    """As :func:`service.inference.infer` after its feature extraction, metrics included."""
    result = await model.batcher.submit(row, timeout_s=settings.batching.request_timeout_s)
    metrics.observe_queue_wait(model.name, result.queue_ms)
    return result.outputs


async def _raw(
    model: LoadedModel,
    row: RawRow,
    settings: Settings,
    metrics: Metrics,
    started: float,
    budget: DecodeBudget,
) -> RowOutputs:
    inference = await infer(
        model, row, settings=settings, metrics=metrics, started=started, budget=budget
    )
    return inference.outputs


def _for_row(exc: BaseException, row: int, rows: int) -> BaseException:
    """Name the row in a client error when the request had several."""
    if rows > 1 and isinstance(exc, ServiceError) and 400 <= exc.status_code < 500:
        exc.message = f"row {row}: {exc.message}"
    return exc
