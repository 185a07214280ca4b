"""Answers given before any route runs (API key, Host), in the error shape of the path's API.

The guards in :mod:`service.auth` and :mod:`service.hosts` are plain ASGI middleware outside
FastAPI's exception handlers, so they render their own answers here: ``/v2/...`` gets the
Open Inference Protocol's ``{"error": "<message>"}``, everything else the service's
``{"error": {"code", "message", "field", "request_id"}}``.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Scope

from service.errors import ServiceError
from service.exception_handlers import error_response
from service.v2.errors import from_service_error


def refusal(scope: Scope, exc: ServiceError) -> Response:
    path: str = scope["path"]
    if path == "/v2" or path.startswith("/v2/"):
        return from_service_error(exc)
    request = Request(scope)
    return error_response(
        request, exc.status_code, exc.code, exc.message, field=exc.field, headers=exc.headers
    )
