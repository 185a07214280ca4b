"""The predict endpoints without FastAPI's per-request machinery.

Under load the event loop, not the model, limited a worker: profiled at 32 concurrent clients,
FastAPI's middleware stack, routing, dependency solving and query validation took about
1 ms of the loop's time per prediction — as much as decoding and featurising the request —
while uvicorn itself needs about 0.1 ms for the same upload. So the two predict routes are
answered here, by a plain ASGI middleware in front of the app, which resolves the same inputs
directly and calls the same :func:`service.routes.predict.answer_predict`:

- ``POST /v1/predict`` and ``POST /v1/models/{model}/predict`` with no query or only
  ``top_k`` and ``version`` in their plain form are served here;
- anything else (other paths and methods, a query that needs percent-decoding, a value
  FastAPI would refuse) goes on to FastAPI unchanged, whose routes validate it, answer with
  the same error shape and describe the API in OpenAPI. Both paths run the same code from the
  parsed uploads onwards, so they cannot drift apart in what they answer.

Its answers pass through the app's request-id, metrics and CORS middleware like any other,
and its errors are rendered by the app's own exception handlers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from service import exception_handlers
from service.deps import (
    MODEL_NAME_PATTERN,
    TOP_K_DEFAULT,
    TOP_K_MAX,
    VERSION_PATTERN,
    get_default_model,
    get_model,
    get_repository,
    get_upload_call,
    get_uploads,
)
from service.errors import ServiceError
from service.routes.predict import answer_predict

_MODEL_PREDICT: Final = re.compile(r"/v1/models/([^/]+)/predict")
_MODEL_NAME: Final = re.compile(MODEL_NAME_PATTERN)
_VERSION: Final = re.compile(VERSION_PATTERN)
_TOP_K: Final = re.compile(r"[1-9][0-9]{0,3}")


@dataclass(frozen=True, slots=True)
class Query:
    """``top_k`` and ``version`` when the query string is plain enough to need no FastAPI."""

    top_k: int
    version: str | None


def plain_query(query_string: bytes) -> Query | None:
    """The query if every part is a valid ``top_k`` or ``version`` given once, else ``None``."""
    if not query_string:
        return Query(TOP_K_DEFAULT, None)
    if b"%" in query_string or b"+" in query_string:
        return None  # percent-encoded: leave the decoding and its corner cases to FastAPI
    top_k: int | None = None
    version: str | None = None
    for part in query_string.decode("latin-1").split("&"):
        key, equals, value = part.partition("=")
        if key == "top_k" and top_k is None and _TOP_K.fullmatch(value):
            top_k = int(value)
            if top_k > TOP_K_MAX:
                return None
        elif key == "version" and version is None and equals and _VERSION.match(value):
            version = value
        else:
            return None
    return Query(TOP_K_DEFAULT if top_k is None else top_k, version)


def upload_route(scope: Scope) -> tuple[str, str | None] | None:
    """``(route template, model name or None for the default)`` for a predict request."""
    if scope["type"] != "http" or scope["method"] != "POST":
        return None
    path: str = scope["path"]
    if path == "/v1/predict":
        return "/v1/predict", None
    match = _MODEL_PREDICT.fullmatch(path)
    if match is None or not _MODEL_NAME.match(match.group(1)):
        return None
    return "/v1/models/{model}/predict", match.group(1)


class PredictFastPath:
    """ASGI middleware: serves plain predict requests itself, passes the rest to ``app``.

    It sits inside the app's request-id, metrics and CORS middleware, so those apply to its
    answers as to any other; it tells the metrics which route it served.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = upload_route(scope)
        query = None if route is None else plain_query(scope["query_string"])
        if route is None or query is None:
            await self.app(scope, receive, send)
            return
        endpoint, name = route
        request = Request(scope, receive)
        request.state.endpoint = endpoint
        try:
            response = await self._predict(request, name, query)
        except ServiceError as exc:
            response = await exception_handlers.service_error(request, exc)
        except Exception as exc:  # the app's 500 answer: logged, no internals shown
            response = await exception_handlers.unexpected_error(request, exc)
        await response(scope, receive, send)

    @staticmethod
    async def _predict(request: Request, name: str | None, query: Query) -> Response:
        # The routes' own dependency functions, called directly instead of through FastAPI.
        repository = await get_repository(request)
        if name is None:
            model = await get_default_model(request, repository, query.version)
        else:
            model = await get_model(request, repository, name, query.version)
        # 429 at once if the queue is full; no place in it is held while the body arrives
        async with model.batcher.arriving():
            uploads = await get_uploads(request)
        return await answer_predict(model, uploads, await get_upload_call(request), query.top_k)
