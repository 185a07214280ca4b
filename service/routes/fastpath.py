"""The upload routes without FastAPI's per-request machinery.

Under load the event loop, not the model, limited a worker: profiled at 32 concurrent clients,
FastAPI's middleware stack, routing, dependency solving and query validation took about
1 ms of the loop's time per prediction — as much as decoding and featurising the request —
while uvicorn itself needs about 0.1 ms for the same upload. So the upload routes
(:data:`service.routes.predict.UPLOAD_ROUTES`) are matched here, by a plain ASGI middleware in
front of the app, and served by the same :func:`~service.routes.upload.serve_upload` that their
FastAPI handlers call:

- a POST to one of their templates, with a model name the routes accept and a query that
  :func:`~service.routes.params.plain_query` can read, is served here;
- anything else (other paths and methods, a query that needs percent-decoding, a value
  FastAPI would refuse) goes on to FastAPI unchanged, whose routes validate it, answer with
  the same error shape and describe the API in OpenAPI.

Its answers pass through the app's request-id, metrics and CORS middleware like any other:
it puts in the scope what FastAPI's routing would (the route, the model path parameter), and
its errors are rendered by the app's own exception handlers.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from service import exception_handlers
from service.errors import ServiceError
from service.manifest import NAME_PATTERN
from service.routes.params import plain_query
from service.routes.predict import UPLOAD_ROUTES, router
from service.routes.upload import UploadRoute, serve_upload

_MODEL = "{model}"  # the one path parameter of the upload routes
Found = tuple[UploadRoute[Any], str | None]


class UploadRoutes:
    """Finds an upload route by path, with one regular expression at most."""

    def __init__(self, routes: tuple[UploadRoute[Any], ...]) -> None:
        self._plain = {route.path: route for route in routes if _MODEL not in route.path}
        self._named = [route for route in routes if _MODEL in route.path]
        name = f"({NAME_PATTERN.removeprefix('^').removesuffix('$')})"
        # One alternative, and so one group, per route: the group that matched names it.
        self._pattern = re.compile(
            "|".join(
                re.escape(route.path).replace(re.escape(_MODEL), name) for route in self._named
            )
        )

    def find(self, path: str) -> Found | None:
        """``(route, model name or None for the default model)``, or None for other paths."""
        route = self._plain.get(path)
        if route is not None:
            return route, None
        match = self._pattern.fullmatch(path)
        if match is None:
            return None
        index = match.lastindex
        assert index is not None
        return self._named[index - 1], match.group(index)


class UploadFastPath:
    """ASGI middleware: serves plain upload requests itself, passes the rest to ``app``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.routes = UploadRoutes(UPLOAD_ROUTES)
        # FastAPI's own route objects, put in the scope as its routing would (the metrics read
        # the template from there).
        templates = {route.path for route in UPLOAD_ROUTES}
        self._api_routes = {
            route.path: route
            for route in router.routes
            if isinstance(route, APIRoute) and route.path in templates
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = None
        if scope["type"] == "http" and scope["method"] == "POST":
            found = self.routes.find(scope["path"])
        query = None if found is None else plain_query(scope["query_string"], found[0].query)
        if found is None or query is None:
            await self.app(scope, receive, send)
            return
        route, name = found
        scope["route"] = self._api_routes[route.path]
        if name is not None:
            scope["path_params"] = {"model": name}
        request = Request(scope, receive)
        try:
            response = await serve_upload(request, route, name, query)
        except ServiceError as exc:
            response = await exception_handlers.service_error(request, exc)
        except Exception as exc:  # the app's 500 answer: logged, no internals shown
            response = await exception_handlers.unexpected_error(request, exc)
        await response(scope, receive, send)
