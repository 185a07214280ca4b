"""``POST /v1/predict``, ``POST /v1/models/{model}/predict`` and ``.../embed``.

Handlers stay thin: the multipart body is parsed by a dependency (:mod:`service.uploads`),
the work happens in :func:`service.inference.infer`, and the handler builds the response.
The two predict routes are usually answered by :mod:`service.fastpath`, which resolves the
same inputs without FastAPI's per-request machinery and calls the same
:func:`answer_predict`; these routes answer whatever it passes on and describe the API in
OpenAPI.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import BaseModel

from service.deps import (
    TOP_K_DEFAULT,
    DefaultModelDep,
    ModelDep,
    TopKQuery,
    UploadCall,
    UploadCallDep,
    UploadsDep,
)
from service.errors import InvalidInput
from service.inference import Inference, contributions, ood, predictions
from service.repository import LoadedModel
from service.schemas import EmbedResponse, OodAssessment, PredictResponse, error_responses
from service.uploads import OPENAPI_REQUEST_BODY, Uploads

router = APIRouter(prefix="/v1", tags=["inference"])

ERRORS = error_responses(400, 404, 413, 415, 422, 429, 500, 503, 504)


def _json(answer: BaseModel) -> Response:
    # The answer was built from typed values just now; rendering it directly skips FastAPI's
    # second validation pass over the response model (2-4% of the loop's time under load).
    return Response(answer.model_dump_json(), media_type="application/json")


async def answer_predict(
    model: LoadedModel, uploads: Uploads, call: UploadCall, top_k: int
) -> Response:
    """The predict endpoints' work and answer, shared with :mod:`service.fastpath`."""
    inference = await call.infer(model, uploads)
    verdict = ood(inference)
    if verdict is not None:
        call.metrics.observe_ood(model.name, verdict.unsure)
    return _predict_response(inference, call.request_id, top_k, verdict)


def _predict_response(
    inference: Inference, request_id: str, top_k: int, verdict: OodAssessment | None
) -> Response:
    return _json(
        PredictResponse(
            model=inference.model.name,
            version=inference.model.version,
            request_id=request_id,
            modalities=inference.modalities,
            batch_size=inference.batch_size,
            tasks=predictions(inference, top_k),
            ood=verdict,
            contributions=contributions(inference),
            timings_ms=inference.timings,
        )
    )


@router.post(
    "/models/{model}/predict",
    summary="Predict with a model",
    response_model=PredictResponse,
    responses=ERRORS,
    openapi_extra=OPENAPI_REQUEST_BODY,
)
async def predict(
    model: ModelDep,
    uploads: UploadsDep,
    call: UploadCallDep,
    top_k: TopKQuery = TOP_K_DEFAULT,
) -> Response:
    """Every task's top label, its probability and the top-k list for the uploaded inputs."""
    return await answer_predict(model, uploads, call, top_k)


@router.post(
    "/predict",
    summary="Predict with the default model",
    response_model=PredictResponse,
    responses=ERRORS,
    openapi_extra=OPENAPI_REQUEST_BODY,
)
async def predict_default(
    model: DefaultModelDep,
    uploads: UploadsDep,
    call: UploadCallDep,
    top_k: TopKQuery = TOP_K_DEFAULT,
) -> Response:
    """As `POST /v1/models/{model}/predict`, on the default model (see `GET /v1/models`)."""
    return await answer_predict(model, uploads, call, top_k)


@router.post(
    "/models/{model}/embed",
    summary="Embed inputs with a model",
    responses=ERRORS,
    openapi_extra=OPENAPI_REQUEST_BODY,
)
async def embed(
    model: ModelDep,
    uploads: UploadsDep,
    call: UploadCallDep,
) -> EmbedResponse:
    """The model's fused representation of the uploaded inputs."""
    output = model.manifest.embedding_output
    if output is None:
        raise InvalidInput(f"model {model.name!r} has no embedding output")
    inference = await call.infer(model, uploads)
    vector = inference.outputs[output].astype(float).ravel().tolist()
    return EmbedResponse(
        model=model.name,
        version=model.version,
        request_id=call.request_id,
        modalities=inference.modalities,
        batch_size=inference.batch_size,
        dim=len(vector),
        embedding=vector,
        timings_ms=inference.timings,
    )
