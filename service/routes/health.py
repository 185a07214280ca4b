"""``GET /healthz`` (the process answers) and ``GET /readyz`` (every model loaded and warm)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from service.deps import LifecycleDep, RepositoryDep
from service.schemas import HealthResponse

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness")
async def healthz() -> HealthResponse:
    """200 while the process can answer at all."""
    return HealthResponse(status="ok")


@router.get(
    "/readyz",
    summary="Readiness",
    responses={
        503: {"model": HealthResponse, "description": "Not every model is ready, or draining."}
    },
)
async def readyz(
    repository: RepositoryDep, lifecycle: LifecycleDep, response: Response
) -> HealthResponse:
    """200 when every model folder loaded and warmed up; 503 (with the reasons) otherwise, and
    from the moment a shutdown begins (``draining``, see :mod:`service.lifecycle`)."""
    if lifecycle.draining:
        response.status_code = 503
        return HealthResponse(status="draining", models=repository.readiness())
    ready = repository.ready
    if not ready:
        response.status_code = 503
    return HealthResponse(status="ok" if ready else "unavailable", models=repository.readiness())
