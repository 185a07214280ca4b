"""``POST /v1/predict``, ``POST /v1/models/{model}/predict`` and ``.../embed``: the upload routes.

Each route is an :class:`~service.routes.upload.UploadRoute` (template, query, answer) served
by :func:`~service.routes.upload.serve_upload`. The fast path (:mod:`service.routes.fastpath`)
serves the same routes without FastAPI's per-request machinery whenever their query is plain;
the handlers here answer whatever it passes on, and describe the API in OpenAPI.
"""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel

from service.errors import InvalidInput
from service.inference import Inference, contributions, ood, predictions
from service.repository import LoadedModel
from service.routes.params import ModelName, ModelQuery, PredictQuery
from service.routes.upload import RequestContext, UploadRoute, serve_upload
from service.schemas import EmbedResponse, PredictResponse, error_responses
from service.uploads import OPENAPI_REQUEST_BODY

router = APIRouter(tags=["inference"])

ERRORS = error_responses(400, 404, 413, 415, 422, 429, 500, 503, 504)


def _json(answer: BaseModel) -> Response:
    # The answer was built from typed values just now; rendering it directly skips FastAPI's
    # second validation pass over the response model (2-4% of the loop's time under load).
    return Response(answer.model_dump_json(), media_type="application/json")


def predict_answer(inference: Inference, context: RequestContext, query: PredictQuery) -> Response:
    verdict = ood(inference)
    if verdict is not None:
        context.metrics.observe_ood(inference.model.name, verdict.unsure)
    return _json(
        PredictResponse(
            model=inference.model.name,
            version=inference.model.version,
            request_id=context.request_id,
            modalities=inference.modalities,
            batch_size=inference.batch_size,
            tasks=predictions(inference, query.top_k),
            ood=verdict,
            contributions=contributions(inference),
            timings_ms=inference.timings,
        )
    )


def _has_embedding(model: LoadedModel) -> None:
    if model.manifest.embedding_output is None:
        raise InvalidInput(f"model {model.name!r} has no embedding output")


def embed_answer(inference: Inference, context: RequestContext, query: ModelQuery) -> Response:
    output = inference.model.manifest.embedding_output
    assert output is not None  # checked before the body was read (_has_embedding)
    vector = inference.outputs[output].astype(float).ravel().tolist()
    return _json(
        EmbedResponse(
            model=inference.model.name,
            version=inference.model.version,
            request_id=context.request_id,
            modalities=inference.modalities,
            batch_size=inference.batch_size,
            dim=len(vector),
            embedding=vector,
            timings_ms=inference.timings,
        )
    )


PREDICT: Final = UploadRoute("/v1/models/{model}/predict", PredictQuery, predict_answer)
PREDICT_DEFAULT: Final = UploadRoute("/v1/predict", PredictQuery, predict_answer)
EMBED: Final = UploadRoute("/v1/models/{model}/embed", ModelQuery, embed_answer, _has_embedding)
UPLOAD_ROUTES: Final = (PREDICT, PREDICT_DEFAULT, EMBED)


@router.post(
    PREDICT.path,
    summary="Predict with a model",
    response_model=PredictResponse,
    responses=ERRORS,
    openapi_extra=OPENAPI_REQUEST_BODY,
)
async def predict(
    request: Request, model: ModelName, query: Annotated[PredictQuery, Query()]
) -> Response:
    """Every task's top label, its probability and the top-k list for the uploaded inputs."""
    return await serve_upload(request, PREDICT, model, query)


@router.post(
    PREDICT_DEFAULT.path,
    summary="Predict with the default model",
    response_model=PredictResponse,
    responses=ERRORS,
    openapi_extra=OPENAPI_REQUEST_BODY,
)
async def predict_default(request: Request, query: Annotated[PredictQuery, Query()]) -> Response:
    """As `POST /v1/models/{model}/predict`, on the default model (see `GET /v1/models`)."""
    return await serve_upload(request, PREDICT_DEFAULT, None, query)


@router.post(
    EMBED.path,
    summary="Embed inputs with a model",
    response_model=EmbedResponse,
    responses=ERRORS,
    openapi_extra=OPENAPI_REQUEST_BODY,
)
async def embed(
    request: Request, model: ModelName, query: Annotated[ModelQuery, Query()]
) -> Response:
    """The model's fused representation of the uploaded inputs."""
    return await serve_upload(request, EMBED, model, query)
