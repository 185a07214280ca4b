"""Every error answer in one JSON shape: ``{"error": {"code", "message", "field", "request_id"}}``.

One handler serves the whole :class:`~service.errors.ServiceError` tree (each error carries its
status); FastAPI's validation errors and Starlette's HTTP errors (unknown route, wrong method)
are mapped into the same shape, and anything unexpected becomes a logged 500 without internals.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from http import HTTPStatus

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from service.errors import ErrorCode, InvalidInput, RoutingErrorCode, ServiceError
from service.middleware import request_id
from service.schemas import ErrorDetail, ErrorResponse
from service.uploads import OPENAPI_REQUEST_BODY, wrong_method_message

log = logging.getLogger(__name__)
_HTTP_CODES: dict[int, RoutingErrorCode] = {404: "not_found", 405: "method_not_allowed"}


def error_response(
    request: Request,
    status: int,
    code: ErrorCode,
    message: str,
    *,
    field: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    detail = ErrorDetail(code=code, message=message, field=field, request_id=request_id(request))
    body = ErrorResponse(error=detail).model_dump(mode="json")
    return JSONResponse(body, status_code=status, headers=headers)


async def service_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    if exc.status_code >= 500:
        log.warning("%s: %s", exc.code, exc.message, exc_info=exc.__cause__)
    return error_response(
        request, exc.status_code, exc.code, exc.message, field=exc.field, headers=exc.headers
    )


async def validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {}
    location = [str(part) for part in first.get("loc", ())]
    field = location[-1] if location else None
    message = f"{'.'.join(location)}: {first.get('msg', 'invalid request')}"
    return error_response(
        request, InvalidInput.status_code, InvalidInput.code, message, field=field
    )


async def http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    message = exc.detail or HTTPStatus(exc.status_code).phrase
    if exc.status_code == 405:
        message = _method_message(request, exc)
    return error_response(request, exc.status_code, code, message, headers=exc.headers)


def _method_message(request: Request, exc: HTTPException) -> str:
    # Starlette's 405 carries the allowed methods; FastAPI puts the matched route in the scope
    # (scope["route"], not a documented API: tests/service/test_error_messages.py fails on the
    # message if it goes, and the answer falls back to naming the allowed method).
    route = request.scope.get("route")
    if isinstance(route, APIRoute) and route.openapi_extra is OPENAPI_REQUEST_BODY:
        url = str(request.url.replace(query=""))
        return wrong_method_message(request.method, url, f"{request.base_url}docs")
    allowed = (exc.headers or {}).get("Allow", "another method")
    return f"{request.method} is not allowed on {request.url.path}; use {allowed}"


async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(
        request, ServiceError.status_code, ServiceError.code, "internal server error"
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, service_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, unexpected_error)
