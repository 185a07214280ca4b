"""The Open Inference Protocol (KServe V2): ``/v2`` health, metadata, config and ``infer``.

Every model path has a versioned twin (``/v2/models/{m}/versions/{v}/...``). Handlers stay
thin: decoding, binding and encoding run on the CPU runner (:mod:`service.v2`), the rows go
through the model's batcher (:mod:`service.v2.inference`). Errors on these routes are the
protocol's ``{"error": "..."}`` (see :mod:`service.v2.errors`): :class:`V2Route` answers them
for its handlers, and :func:`~service.routes.v2_base.fallback_router` answers unknown ``/v2``
paths and wrong methods.
"""

from __future__ import annotations

import functools
from typing import Any

from fastapi import APIRouter, Request, Response

from service import __version__
from service.deps import ArrivalDep, CpuDep, MetricsDep, ModelDep, RepositoryDep, SettingsDep
from service.repository import LoadedModel
from service.routes.v2_base import V2Route, read_body
from service.runtime.rows import FeatureRow
from service.runtime.threads import CpuRunner
from service.settings import Limits
from service.v2 import metadata
from service.v2.annotations import row_flags
from service.v2.binding import (
    RawRow,
    assemble_outputs,
    bind_inputs,
    carried_modalities,
    check_declared,
    resolve_outputs,
)
from service.v2.codec import (
    HEADER_LENGTH,
    InferenceRequest,
    decode_request,
    decompress,
    encode_response,
    parse_header_length,
)
from service.v2.inference import run_rows
from service.v2.schemas import (
    ErrorBody,
    Liveness,
    ModelMetadata,
    ModelReadiness,
    Readiness,
    ServerMetadata,
)

router = APIRouter(
    prefix="/v2",
    tags=["v2 (Open Inference Protocol)"],
    route_class=V2Route,
    # Ranges, not single codes: FastAPI then documents no 422, which these routes never send.
    responses={
        "4XX": {"model": ErrorBody, "description": "400 bad request, 404 unknown model, 405"},
        "5XX": {"model": ErrorBody, "description": "503 not ready or queue full, 504, 500"},
    },
)
_BINARY = {"schema": {"type": "string", "format": "binary"}}
INFER_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "The JSON inference request; with binary tensor data after it, the "
        "Inference-Header-Content-Length header gives the JSON part's length.",
        "content": {
            "application/json": {"schema": {"type": "object"}},
            "application/octet-stream": _BINARY,
        },
    },
    "responses": {
        "200": {
            "description": "The JSON inference response; binary outputs follow it when the "
            "Inference-Header-Content-Length header is present.",
            "content": {
                "application/json": {"schema": {"type": "object"}},
                "application/octet-stream": _BINARY,
            },
        }
    },
}
MODEL = "/models/{model}"
VERSION = "/models/{model}/versions/{version}"


@router.get("", summary="Server metadata")
@router.get("/", include_in_schema=False)
async def server_metadata() -> ServerMetadata:
    """The server's name, version and the protocol extensions it supports."""
    return metadata.server_metadata(__version__)


@router.get("/health/live", summary="Server liveness")
async def live() -> Liveness:
    return Liveness(live=True)


@router.get("/health/ready", summary="Server readiness", responses={503: {"model": Readiness}})
async def ready(repository: RepositoryDep, response: Response) -> Readiness:
    """200 when every model is loaded and warm; 503 otherwise."""
    if not repository.ready:
        response.status_code = 503
    return Readiness(ready=repository.ready)


@router.get(MODEL, summary="Model metadata")
@router.get(VERSION, summary="Model metadata (a version)")
async def model_metadata(model: ModelDep, repository: RepositoryDep) -> ModelMetadata:
    """The graph's inputs and outputs (datatype, shape with -1 for dynamic axes); the raw BYTES
    inputs that may replace them are named in ``parameters``."""
    return metadata.model_metadata(model.manifest, repository.versions(model.name))


@router.get(f"{MODEL}/ready", summary="Model readiness")
@router.get(f"{VERSION}/ready", summary="Model readiness (a version)")
async def model_ready(model: ModelDep) -> ModelReadiness:
    """200 when the model is loaded and warm; 404 when unknown; 503 when it failed to load."""
    return ModelReadiness(name=model.name, version=model.version, ready=True)


@router.get(f"{MODEL}/config", summary="Model configuration")
@router.get(f"{VERSION}/config", summary="Model configuration (a version)")
async def model_config(model: ModelDep) -> dict[str, Any]:
    """Triton's model configuration in JSON: max batch size, inputs (all optional), outputs,
    dynamic batching."""
    return metadata.model_config(model.manifest, model.batching, gpu=model.session.on_gpu)


@router.post(f"{MODEL}/infer", summary="Inference", openapi_extra=INFER_OPENAPI)
@router.post(f"{VERSION}/infer", summary="Inference (a version)", openapi_extra=INFER_OPENAPI)
async def infer(
    request: Request,
    model: ModelDep,
    cpu: CpuDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    arrival: ArrivalDep,
) -> Response:
    """An inference request: JSON, or JSON followed by binary tensor data (its length in the
    ``Inference-Header-Content-Length`` header). Send either raw BYTES inputs (``image``,
    ``audio``, ``text``) or the graph's feature tensors."""
    # Admitted before its body is read, as every upload is (service.routes.upload), holding no
    # place in the queue meanwhile; then admitted as its number of rows (run_rows).
    async with model.batcher.arriving():
        decoded, rows = await _read_request(request, model, cpu, settings.limits)
    outputs = resolve_outputs(decoded.outputs, model.manifest, decoded.binary_output)
    results = await run_rows(model, rows, settings=settings, metrics=metrics, started=arrival)
    carried = carried_modalities(rows, model.manifest)
    flags = row_flags(model.manifest, model.ood, carried, results)
    tensors = assemble_outputs(outputs, results, flags)
    answer, json_length = await cpu.run(
        encode_response, model.name, model.version, decoded.id, tensors
    )
    if json_length is None:
        return Response(answer, media_type="application/json")
    return Response(
        answer,
        media_type="application/octet-stream",
        headers={HEADER_LENGTH: str(json_length)},
    )


async def _read_request(
    request: Request, model: LoadedModel, cpu: CpuRunner, limits: Limits
) -> tuple[InferenceRequest, list[RawRow] | list[FeatureRow]]:
    """The request's body read, decompressed, decoded (on the CPU runner) and bound to rows."""
    body = await read_body(request, limits.max_body_bytes)
    header_length = parse_header_length(request.headers.get(HEADER_LENGTH))
    check = functools.partial(
        check_declared, manifest=model.manifest, max_rows=model.batching.max_batch_size
    )
    if encoding := request.headers.get("content-encoding"):
        body = await cpu.run(
            functools.partial(
                decompress,
                json_length=header_length,
                max_elements=limits.max_v2_elements,
                check_inputs=check,
            ),
            body,
            encoding,
            limits.max_body_bytes,
        )
    decoded = await cpu.run(
        functools.partial(decode_request, max_elements=limits.max_v2_elements, check_inputs=check),
        body,
        header_length,
    )
    return decoded, await cpu.run(_bind, decoded, model)


def _bind(request: InferenceRequest, model: LoadedModel) -> list[RawRow] | list[FeatureRow]:
    tokenizer = model.tokenizer
    return bind_inputs(
        request.inputs,
        model.manifest,
        max_rows=model.batching.max_batch_size,
        vocab_size=None if tokenizer is None else tokenizer.get_vocab_size(with_added_tokens=True),
    )
