"""``GET /healthz`` (the process answers) and ``GET /readyz`` (every model loaded and warm)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from service import restarts as restart_log
from service.deps import LifecycleDep, RepositoryDep
from service.schemas import HealthResponse, ReadinessResponse

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness")
async def healthz() -> HealthResponse:
    """200 while the process can answer at all."""
    return HealthResponse(status="ok")


@router.get(
    "/readyz",
    summary="Readiness",
    response_model_exclude_none=True,
    responses={
        503: {"model": ReadinessResponse, "description": "Not every model is ready, or draining."}
    },
)
async def readyz(
    repository: RepositoryDep, lifecycle: LifecycleDep, response: Response
) -> ReadinessResponse:
    """200 when every model folder loaded and warmed up; 503 (with the reasons) otherwise, and
    from the moment a shutdown begins (``draining``, see :mod:`service.lifecycle`). Under
    ``serve --workers N`` it also counts the workers restarted in the last minute
    (:mod:`service.restarts`): a crash loop shows here while the other workers serve."""
    restarts = restart_log.read()
    recent = None if restarts is None else restarts.in_last_minute()
    if lifecycle.draining:
        response.status_code = 503
        return ReadinessResponse(
            status="draining", models=repository.readiness(), worker_restarts_last_minute=recent
        )
    ready = repository.ready
    if not ready:
        response.status_code = 503
    return ReadinessResponse(
        status="ok" if ready else "unavailable",
        models=repository.readiness(),
        worker_restarts_last_minute=recent,
    )
