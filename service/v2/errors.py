"""The protocol's error answers: ``{"error": "<message>"}`` with the protocol's status codes.

The service's own errors carry the statuses of the ``/v1`` API; on ``/v2`` they are mapped to
the few the protocol names, so V2 clients see what Triton would send them:

    Unauthorized                                                   -> 401
    InvalidInput, UnsupportedMediaType, PayloadTooLarge (other 4xx)-> 400
    ModelNotFound                                                  -> 404
    ModelNotReady, Overloaded                                      -> 503 (with Retry-After)
    RequestTimeout                                                 -> 504
    InferenceFailed and anything unexpected                        -> 500
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.responses import JSONResponse

from service.errors import ModelNotFound, ModelNotReady, Overloaded, ServiceError, Unauthorized


def status_for(exc: ServiceError) -> int:
    if isinstance(exc, ModelNotFound):
        return 404
    if isinstance(exc, Unauthorized):
        return 401
    if isinstance(exc, ModelNotReady | Overloaded):
        return 503
    if 400 <= exc.status_code < 500:
        return 400
    return exc.status_code


def error_response(
    message: str, status: int, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def from_service_error(exc: ServiceError) -> JSONResponse:
    return error_response(exc.message, status_for(exc), exc.headers)
