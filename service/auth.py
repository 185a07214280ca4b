"""The API key check: every request but the public ones must carry a valid key.

A plain ASGI middleware in front of the upload fast path (:mod:`service.routes.fastpath`) and
the routes, so no route can be reached around it; it runs inside CORS, whose preflights carry no
key. The key is read from ``X-API-Key: <key>`` or, if that header is absent,
``Authorization: Bearer <key>``. A request without a valid one is answered 401 with
``WWW-Authenticate: Bearer`` in the error shape of its API (:mod:`service.refusals`).

Public without a key: ``/healthz``, ``/readyz``, ``/v2/health/...`` (orchestrators probe them),
the web page (``/`` and ``/static/...``, which asks for a key itself); ``/metrics`` and the
API description (``/docs``, ``/redoc``, ``/openapi.json``) only when a setting opens them.
The key's *name* is left in the scope state for the metrics (``api_key``).
"""

from __future__ import annotations

from typing import Any, Final

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from service.errors import Unauthorized
from service.keys import ANONYMOUS, KeyRing
from service.metrics import STATE_KEY
from service.refusals import refusal
from service.settings import Auth

_HEALTH: Final = frozenset({"/healthz", "/readyz"})
_PAGE: Final = frozenset({"/"})
_DOCS: Final = frozenset({"/docs", "/redoc", "/openapi.json"})
_BEARER: Final = b"bearer "
MISSING: Final = (
    "an API key is required: send it as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
)
INVALID: Final = "the API key is not valid"


class PublicPaths:
    """Which paths answer without a key, by the ``auth`` settings."""

    def __init__(self, auth: Auth) -> None:
        exact = _HEALTH | _PAGE
        prefixes = ["/v2/health/", "/static/"]
        if auth.open_metrics:
            exact |= {"/metrics"}
        if auth.open_docs:
            exact |= _DOCS
            prefixes.append("/docs-static/")
        self._exact = exact
        self._prefixes = tuple(prefixes)

    def __contains__(self, path: str) -> bool:
        return path in self._exact or path.startswith(self._prefixes)


def presented_key(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    """The key in ``X-API-Key``, else in ``Authorization: Bearer``; ``None`` if neither."""
    bearer = None
    for name, value in headers:  # raw ASGI headers: names are lower-case bytes
        if name == b"x-api-key":
            return value.strip()
        if name == b"authorization" and value[:7].lower() == _BEARER:
            bearer = value[7:].strip()
    return bearer


class ApiKeyMiddleware:
    def __init__(self, app: ASGIApp, keys: KeyRing, public: PublicPaths) -> None:
        self.app = app
        self.keys = keys
        self.public = public

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        if scope["path"] in self.public:
            state[STATE_KEY] = ANONYMOUS
            await self.app(scope, receive, send)
            return
        key = presented_key(scope["headers"])
        name = None if not key else self.keys.name_for(key)
        state[STATE_KEY] = name or ANONYMOUS
        if name is None:
            response = refusal(scope, Unauthorized(MISSING if not key else INVALID))
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


SECURITY_SCHEMES: Final = {
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    "bearer": {"type": "http", "scheme": "bearer"},
}


def describe_in_openapi(app: FastAPI, public: PublicPaths) -> None:
    """Name the two ways to send a key in the OpenAPI description, so that /docs offers an
    "Authorize" button and its "Try it out" sends the key; public operations need none."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        schema.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
        schema["security"] = [{name: []} for name in SECURITY_SCHEMES]
        for path, operations in schema.get("paths", {}).items():
            if path in public:
                for operation in operations.values():
                    operation["security"] = []
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
