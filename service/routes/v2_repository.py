"""The V2 model repository extension: ``POST /v2/repository/index``, ``.../models/{m}/load``
and ``.../models/{m}/unload``, as Triton answers them to its clients.

The work is :mod:`service.reload`'s: a ``load`` or ``unload`` is applied in the worker that
received it before the answer, and the replica's other workers follow within one poll
interval. Bodies are optional (tritonclient sends none to ``index``); errors take the
protocol's ``{"error": "..."}`` shape through :class:`~service.routes.v2_base.V2Route`.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Path, Request, Response
from pydantic import BaseModel, ValidationError

from service.deps import ReloaderDep, SettingsDep
from service.errors import BadRequest, InvalidInput
from service.manifest import NAME_PATTERN
from service.routes.v2_base import V2Route, read_body
from service.v2.schemas import (
    ErrorBody,
    RepositoryIndexEntry,
    RepositoryIndexRequest,
    RepositoryModelRequest,
)

router = APIRouter(
    prefix="/v2/repository",
    tags=["v2 (Open Inference Protocol)"],
    route_class=V2Route,
    responses={
        "4XX": {"model": ErrorBody, "description": "400 bad request or failed load, 404, 405"},
        "5XX": {"model": ErrorBody, "description": "503 starting or shutting down"},
    },
)
ModelName = Annotated[str, Path(description="A model folder's name.", pattern=NAME_PATTERN)]
Body = TypeVar("Body", bound=BaseModel)
# A body is a few fields; refusing more bounds the JSON parsing a request can cause.
MAX_BODY_BYTES = 64 * 1024


def _optional_body(schema: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI for a JSON body the handler reads itself (it may be empty)."""
    content = {"application/json": {"schema": schema.model_json_schema()}}
    return {"requestBody": {"required": False, "content": content}}


async def _body(request: Request, schema: type[Body]) -> Body:
    raw = await read_body(request, MAX_BODY_BYTES)
    if not raw.strip():
        return schema()
    try:
        return schema.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise BadRequest(f"{where}: {first['msg']}", field=where) from exc


@router.post(
    "/index", summary="Model repository index", openapi_extra=_optional_body(RepositoryIndexRequest)
)
async def index(request: Request, reloader: ReloaderDep) -> list[RepositoryIndexEntry]:
    """Every ``<name>/<version>`` folder of the model directory with its state in this worker:
    READY, LOADING, UNLOADING (draining) or UNAVAILABLE with the reason. ``{"ready": true}``
    lists only the READY ones."""
    body = await _body(request, RepositoryIndexRequest)
    entries = [
        RepositoryIndexEntry(name=e.name, version=e.version, state=e.state, reason=e.reason)
        for e in await reloader.index()
    ]
    return [e for e in entries if e.state == "READY"] if body.ready else entries


@router.post(
    "/models/{model}/load",
    summary="Load or reload a model",
    openapi_extra=_optional_body(RepositoryModelRequest),
)
async def load(
    request: Request, model: ModelName, reloader: ReloaderDep, settings: SettingsDep
) -> Response:
    """Serve every version folder of ``model`` as it is now: load new and changed versions
    (settled or not), retry failed ones, drop versions whose folder is gone. Answers once
    this worker has loaded them; the replica's other workers follow within one poll interval.
    400 with the reason when no version loads; 404 when there is no such folder."""
    body = await _body(request, RepositoryModelRequest)
    if overrides := sorted(k for k in body.parameters if k == "config" or k.startswith("file:")):
        raise InvalidInput(
            f"parameters.{overrides[0]}: mmserve loads models only from the model directory "
            f"({settings.model_dir.name}/{model}/<version>/); write the folder there instead",
            field=f"parameters.{overrides[0]}",
        )
    await reloader.load(model)
    return Response(status_code=200)


@router.post(
    "/models/{model}/unload",
    summary="Unload a model",
    openapi_extra=_optional_body(RepositoryModelRequest),
)
async def unload(request: Request, model: ModelName, reloader: ReloaderDep) -> Response:
    """Stop serving every version of ``model`` until it is loaded again (its requests in
    flight finish first); its routes then answer 404. Every worker of the replica follows
    within one poll interval. The folder is not touched."""
    await _body(request, RepositoryModelRequest)
    await reloader.unload(model)
    return Response(status_code=200)
