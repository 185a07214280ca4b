"""Dependencies of the route handlers, as ``Annotated`` aliases.

Every dependency is ``async def`` even though none awaits: FastAPI runs a plain ``def``
dependency in anyio's thread pool, which cost each request one thread round trip per
dependency (a profile under load showed the anyio worker threads and their hand-offs as a
large share of a worker's time). The fast path (:mod:`service.routes.fastpath`) calls the plain
functions underneath (:func:`repository_of`, :func:`resolve_model`), never FastAPI.

The settings, the repository and the CPU runner live on ``app.state`` (set by ``create_app``
and its lifespan), never in module globals, so every app built in a test is independent.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from starlette.requests import HTTPConnection

from service.errors import ModelNotReady
from service.lifecycle import Lifecycle
from service.metrics import Metrics
from service.middleware import arrival
from service.reload import Reloader
from service.repository import LoadedModel, ModelRepository
from service.routes.params import ModelName, ModelVersion
from service.runtime.threads import CpuRunner
from service.settings import Settings


def repository_of(conn: HTTPConnection) -> ModelRepository:
    repository: ModelRepository | None = getattr(conn.app.state, "repository", None)
    if repository is None:
        raise ModelNotReady("the service is starting")
    return repository


def resolve_model(conn: HTTPConnection, name: str | None, version: str | None) -> LoadedModel:
    """The model a request names (``None``: the default one), at ``version`` or the latest."""
    repository = repository_of(conn)
    loaded = repository.get_default(version) if name is None else repository.get(name, version)
    conn.scope.setdefault("state", {})["model"] = loaded.name  # for the metrics' model label
    return loaded


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_repository(request: Request) -> ModelRepository:
    return repository_of(request)


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


async def get_model(
    request: Request, model: ModelName, version: ModelVersion = None
) -> LoadedModel:
    return resolve_model(request, model, version)


SettingsDep = Annotated[Settings, Depends(get_settings)]
RepositoryDep = Annotated[ModelRepository, Depends(get_repository)]
ReloaderDep = Annotated[Reloader, Depends(get_reloader)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
LifecycleDep = Annotated[Lifecycle, Depends(get_lifecycle)]
CpuDep = Annotated[CpuRunner, Depends(get_cpu)]
ArrivalDep = Annotated[float, Depends(get_arrival)]
ModelDep = Annotated[LoadedModel, Depends(get_model)]
