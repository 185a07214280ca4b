"""Dependencies of the route handlers, as ``Annotated`` aliases.

Every dependency is ``async def`` even though none awaits: FastAPI runs a plain ``def``
dependency in anyio's thread pool, which cost each request one thread round trip per
dependency (a profile under load showed the anyio worker threads and their hand-offs as a
large share of a worker's time).

The settings, the repository and the CPU runner live on ``app.state`` (set by ``create_app``
and its lifespan), never in module globals, so every app built in a test is independent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Path, Query, Request
from starlette.types import Receive

from service.errors import ModelNotReady
from service.inference import Inference, infer
from service.lifecycle import Lifecycle
from service.metrics import Metrics
from service.middleware import arrival, request_id
from service.reload import Reloader
from service.repository import LoadedModel, ModelRepository
from service.runtime.threads import CpuRunner
from service.settings import Settings
from service.uploads import Uploads, read_uploads


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_repository(request: Request) -> ModelRepository:
    repository: ModelRepository | None = getattr(request.app.state, "repository", None)
    if repository is None:
        raise ModelNotReady("the service is starting")
    return repository


async def get_reloader(request: Request) -> Reloader:
    reloader: Reloader | None = getattr(request.app.state, "reloader", None)
    if reloader is None:
        raise ModelNotReady("the service is starting")
    return reloader


async def get_lifecycle(request: Request) -> Lifecycle:
    lifecycle: Lifecycle = request.app.state.lifecycle
    return lifecycle


async def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


async def get_cpu(request: Request) -> CpuRunner:
    cpu: CpuRunner = request.app.state.cpu
    return cpu


async def get_arrival(request: Request) -> float:
    return arrival(request)


async def get_uploads(request: Request) -> Uploads:
    return await read_uploads(request, (await get_settings(request)).limits)


@dataclass(frozen=True)
class UploadCall:
    """What an upload endpoint needs besides its model and uploads, resolved as one dependency."""

    request_id: str
    settings: Settings
    metrics: Metrics
    arrival: float
    receive: Receive  # the ASGI channel: the work is cancelled if the client disconnects

    async def infer(self, model: LoadedModel, uploads: Uploads) -> Inference:
        return await infer(
            model,
            uploads,
            settings=self.settings,
            metrics=self.metrics,
            started=self.arrival,
            receive=self.receive,
        )


async def get_upload_call(request: Request) -> UploadCall:
    state = request.app.state
    return UploadCall(
        request_id=request_id(request) or "",
        settings=state.settings,
        metrics=state.metrics,
        arrival=arrival(request),
        receive=request.receive,
    )


SettingsDep = Annotated[Settings, Depends(get_settings)]
RepositoryDep = Annotated[ModelRepository, Depends(get_repository)]
ReloaderDep = Annotated[Reloader, Depends(get_reloader)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
LifecycleDep = Annotated[Lifecycle, Depends(get_lifecycle)]
CpuDep = Annotated[CpuRunner, Depends(get_cpu)]
ArrivalDep = Annotated[float, Depends(get_arrival)]
UploadsDep = Annotated[Uploads, Depends(get_uploads)]
UploadCallDep = Annotated[UploadCall, Depends(get_upload_call)]
# Shared with service.fastpath, which must accept exactly what these validators accept.
MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
VERSION_PATTERN = r"^[A-Za-z0-9_.-]+$"
TOP_K_DEFAULT, TOP_K_MAX = 3, 1000

VersionQuery = Annotated[
    str | None,
    Query(description="A model version; default: the latest.", pattern=VERSION_PATTERN),
]
TopKQuery = Annotated[int, Query(ge=1, le=TOP_K_MAX, description="Labels listed per task.")]
ModelPath = Annotated[
    str, Path(description="A model name from `GET /v1/models`.", pattern=MODEL_NAME_PATTERN)
]


async def get_model(
    request: Request, repository: RepositoryDep, model: ModelPath, version: VersionQuery = None
) -> LoadedModel:
    loaded = repository.get(model, version)
    request.state.model = loaded.name  # for the metrics' model label
    return loaded


async def get_default_model(
    request: Request, repository: RepositoryDep, version: VersionQuery = None
) -> LoadedModel:
    loaded = repository.get_default(version)
    request.state.model = loaded.name
    return loaded


ModelDep = Annotated[LoadedModel, Depends(get_model)]
DefaultModelDep = Annotated[LoadedModel, Depends(get_default_model)]
