"""Request ids and arrival times. The id is the client's ``X-Request-ID`` if sane, else new.

A plain ASGI middleware, not ``BaseHTTPMiddleware``: that one runs the app in a separate task
and copies the response through a memory stream, which costs every request.
"""

from __future__ import annotations

import re
import time
import uuid

from starlette.datastructures import MutableHeaders
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = "X-Request-ID"
_SANE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def request_id(conn: HTTPConnection) -> str | None:
    value = conn.scope.get("state", {}).get("request_id")
    return value if isinstance(value, str) else None


def arrival(conn: HTTPConnection) -> float:
    """``time.perf_counter()`` when the request arrived."""
    value = conn.scope.get("state", {}).get("arrival")
    return value if isinstance(value, float) else time.perf_counter()


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = HTTPConnection(scope).headers.get(HEADER, "")
        rid = incoming if _SANE.match(incoming) else uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"], state["arrival"] = rid, time.perf_counter()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[HEADER] = rid
            await send(message)

        await self.app(scope, receive, send_with_id)
