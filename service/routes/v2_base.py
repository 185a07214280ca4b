"""What every ``/v2`` router shares: the protocol's error answers, the body reader, and the
catch-all for unknown paths and wrong methods (included after every ``/v2`` router)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.requests import ClientDisconnect

from service.disconnect import timed_out
from service.errors import InvalidInput, PayloadTooLarge, ServiceError
from service.v2.errors import error_response, from_service_error

log = logging.getLogger(__name__)
Handler = Callable[[Request], Coroutine[Any, Any, Response]]


class V2Route(APIRoute):
    """A route whose errors take the protocol's shape and statuses."""

    def get_route_handler(self) -> Handler:
        handler = super().get_route_handler()

        async def v2_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except ServiceError as exc:
                if exc.status_code >= 500:
                    log.warning("%s: %s", exc.code, exc.message, exc_info=exc.__cause__)
                return from_service_error(exc)
            except RequestValidationError as exc:
                first = exc.errors()[0] if exc.errors() else {}
                where = ".".join(str(p) for p in first.get("loc", ()))
                return error_response(f"{where}: {first.get('msg', 'invalid request')}", 400)
            except Exception:
                log.exception("unhandled error on %s %s", request.method, request.url.path)
                return error_response("internal server error", 500)

        return v2_handler


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body; over ``limit`` bytes it is refused (413, 400 on ``/v2``) unread."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body is {declared} bytes; the limit is {limit}")
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise PayloadTooLarge(f"the body is larger than {limit} bytes")
    except ClientDisconnect as exc:
        raise timed_out(request.scope) or InvalidInput(
            "the client disconnected before the body was complete"
        ) from exc
    return bytes(body)


def fallback_router(*routers: APIRouter) -> APIRouter:
    """A router answering the ``/v2`` paths that ``routers`` do not: 404 for an unknown path,
    405 (with ``Allow``) for a known path and the wrong method."""
    fallback = APIRouter(prefix="/v2", include_in_schema=False)

    @fallback.api_route(
        "/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
    )
    async def unknown(request: Request) -> Response:
        path = request.scope["path"]
        allowed = sorted(
            method
            for router in routers
            for route in router.routes
            if isinstance(route, APIRoute) and route.path_regex.match(path)
            for method in route.methods or ()
        )
        if allowed:
            message = f"{request.method} is not allowed on {path}; use {', '.join(allowed)}"
            return error_response(message, 405, {"Allow": ", ".join(allowed)})
        return error_response(f"no V2 endpoint {request.method} {path}", 404)

    return fallback
