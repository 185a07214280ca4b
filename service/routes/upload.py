"""Serving one upload request, whichever way it came in: :func:`serve_upload`.

The predict and embed routes call it from FastAPI, and the fast path
(:mod:`service.routes.fastpath`) calls it for the same routes without FastAPI's per-request
machinery; so both answer through the same steps, in the same order:

1. resolve the model (404 before anything is read);
2. admission: :meth:`~service.runtime.batching.Batcher.arriving` refuses the request (429) at
   once when the model's queue is full, before its body is read, and holds no place in the
   queue while the body arrives (a slow sender locks no one out);
3. read and split the body (:func:`service.uploads.read_uploads`);
4. features and inference in a batch (:func:`service.inference.infer`), cancelled if the
   client goes away;
5. the route's answer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive

from service.deps import resolve_model
from service.inference import Inference, infer
from service.metrics import Metrics
from service.middleware import arrival, request_id
from service.repository import LoadedModel
from service.routes.params import Q
from service.settings import Settings
from service.uploads import Uploads, read_uploads


@dataclass(frozen=True, slots=True)
class RequestContext:
    """What serving an upload needs of its request and app, besides the model and uploads."""

    request_id: str
    settings: Settings
    metrics: Metrics
    arrival: float
    receive: Receive  # the ASGI channel: the work is cancelled if the client disconnects

    @classmethod
    def of(cls, request: Request) -> RequestContext:
        state = request.app.state
        return cls(
            request_id=request_id(request) or "",
            settings=state.settings,
            metrics=state.metrics,
            arrival=arrival(request),
            receive=request.receive,
        )

    async def infer(self, model: LoadedModel, uploads: Uploads) -> Inference:
        return await infer(
            model,
            uploads,
            settings=self.settings,
            metrics=self.metrics,
            started=self.arrival,
            receive=self.receive,
        )


def _any_model(model: LoadedModel) -> None:
    """Every model can give the route's answer."""


@dataclass(frozen=True, slots=True)
class UploadRoute(Generic[Q]):
    """An upload route: its template, its query, its answer, and which models can give it."""

    path: str
    query: type[Q]
    answer: Callable[[Inference, RequestContext, Q], Response]
    # Raises the route's error for a model that cannot answer, before the body is read.
    check_model: Callable[[LoadedModel], None] = _any_model


async def serve_upload(
    request: Request, route: UploadRoute[Q], name: str | None, query: Q
) -> Response:
    """Serve one upload to ``route`` for model ``name`` (``None``: the default model)."""
    model = resolve_model(request, name, query.version)
    route.check_model(model)
    context = RequestContext.of(request)
    async with model.batcher.arriving():
        uploads = await read_uploads(request, context.settings.limits)
    inference = await context.infer(model, uploads)
    return route.answer(inference, context, query)
