"""Request ids and arrival times. The id is the client's ``X-Request-ID`` if sane, else new.

A plain ASGI middleware, not ``BaseHTTPMiddleware``: that one runs the app in a separate task
and copies the response through a memory stream, which costs every request.
"""

from __future__ import annotations

import itertools
import os
import re
import time

from starlette.datastructures import MutableHeaders
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = "X-Request-ID"
_SANE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# 32 hex digits like a UUID, but from a random per-process prefix and a counter: uuid4 reads
# the kernel's random source on every request, a system call that hands the GIL to a feature
# thread and leaves the event loop waiting to get it back.
_PREFIX = os.urandom(8).hex()
_COUNTER = itertools.count()


def new_request_id() -> str:
    return f"{_PREFIX}{next(_COUNTER) & 0xFFFFFFFFFFFFFFFF:016x}"


def choose_request_id(incoming: str) -> str:
    """The client's id if sane, else a new one."""
    return incoming if _SANE.match(incoming) else new_request_id()


def remember(scope: Scope, rid: str) -> None:
    """Record the request's id and arrival time in the scope for handlers and error answers."""
    state = scope.setdefault("state", {})
    state["request_id"], state["arrival"] = rid, time.perf_counter()


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
        rid = choose_request_id(HTTPConnection(scope).headers.get(HEADER, ""))
        remember(scope, rid)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[HEADER] = rid
            await send(message)

        await self.app(scope, receive, send_with_id)
