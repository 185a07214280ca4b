"""What one client connection may cost a worker: time to send its head and body, head size,
and how many connections a worker holds open (settings: ``connections``).

uvicorn has no timeout for a request still arriving: a client that opens a connection and
sends one byte a second keeps it, and its request's place in the model's queue, for ever
(700 such clients took every admission slot of two workers in the attack that prompted this).
It also lets httptools buffer a head of any size (4 connections x 100 MB of headers cost each
worker 190 MB). :class:`GuardedHttpToolsProtocol` enforces, before the app sees a request:

- ``header_timeout_s``: the request head, from the connection's first moment or the new
  request's first byte, must be complete within this time;
- ``body_timeout_s``, ``body_grace_s`` and ``min_body_rate``: the body must be complete within
  ``body_timeout_s`` of the head, and after ``body_grace_s`` must keep up an average of
  ``min_body_rate`` bytes/s (checked lazily: one timer per slow request, none for a body that
  arrives with its head). Time while the server itself is not reading (the app has not taken
  what was sent) is not held against the client;
- ``max_header_bytes`` and ``max_headers``: counted as the head arrives, so an oversized head
  is refused once it passes the limit, not once it is complete;
- ``max_connections``: a connection beyond it is answered 503 and closed at once, so that a
  flood of idle connections cannot exhaust the process's file descriptors (asyncio then stops
  accepting for a second, for every client) or its memory.

A client over a limit gets the error in the service's JSON shape (the V2 protocol's on
``/v2``) with ``Connection: close`` when no answer has begun, and the connection is closed.
``idle_timeout_s`` (between keep-alive requests) is uvicorn's own ``timeout_keep_alive``.
This subclasses uvicorn's httptools protocol and uses its private attributes: pyproject.toml
pins uvicorn to the minor version tested (so does ``deploy/requirements.lock``) and
``tests/service/test_uvicorn_internals.py`` fails if what it overrides or reads changes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import resource
from http import HTTPStatus
from typing import Any, ClassVar, Literal

import httptools
import uvicorn

from service.disconnect import TIMED_OUT_KEY
from service.errors import ClientTimeout, HeadersTooLarge, ServiceError, TooManyConnections
from service.middleware import new_request_id
from service.protocol import CoalescingHttpToolsProtocol
from service.schemas import ErrorDetail, ErrorResponse
from service.settings import Connections, Settings
from service.v2.errors import status_for as v2_status_for

log = logging.getLogger("mmserve")

# File descriptors a worker needs besides its client connections: the listening socket,
# metrics files, model files while loading, pipes, the event loop's own.
FD_RESERVE = 128

# After an error answer the connection is half-closed and what the client still sends is read
# and dropped for a moment: closing a socket with unread data makes the kernel reset the
# connection, and the client, still sending, would lose the answer. At most this long, and
# this much, so that lingering costs no more than the limit it enforces.
LINGER_S = 1.0
LINGER_BYTES = 1 << 20

Phase = Literal["head", "body", "done", "closing"]


class _Refused(Exception):
    """Raised inside httptools callbacks to stop parsing; the error is in ``.error``."""

    def __init__(self, error: ServiceError) -> None:
        super().__init__(error.message)
        self.error = error


class GuardedHttpToolsProtocol(CoalescingHttpToolsProtocol):
    """uvicorn's httptools protocol with the limits of :class:`~service.settings.Connections`."""

    limits: ClassVar[Connections] = Connections()
    max_connections: ClassVar[int] = Connections().max_connections

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._phase: Phase = "head"
        self._started = 0.0  # when the current phase began (loop time)
        self._timer: asyncio.TimerHandle | None = None
        self._armed_at = 0.0
        self._messages = 0  # requests begun on this connection
        self._head_bytes = 0  # bytes of reads that fell wholly inside the current head
        self._head_size = 0  # URL and header bytes counted exactly by the parser callbacks
        self._header_count = 0
        self._body_bytes = 0
        self._lingered = 0

    @classmethod
    def configured(cls, limits: Connections) -> type[GuardedHttpToolsProtocol]:
        """This protocol with ``limits`` (uvicorn builds one instance per connection)."""
        cap = connection_capacity(limits.max_connections)
        return type(cls.__name__, (cls,), {"limits": limits, "max_connections": cap})

    # Connection events

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            message = (
                f"this worker has {self.max_connections} connections open "
                "(connections.max_connections); retry shortly"
            )
            # Closed at once, not lingering: the point is to give its file descriptor back.
            self._refuse(TooManyConnections(message), None, linger=False)
            return
        self._start_phase("head")

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._phase == "closing":
            self._lingered += len(data)
            if self._lingered > LINGER_BYTES:
                self.transport.close()
            return
        self._unset_keepalive_if_required()
        messages, phase = self._messages, self._phase
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError as exc:
            if isinstance(exc.__context__, _Refused):
                self._refuse(exc.__context__.error, self._path())
            else:  # as uvicorn answers a malformed request, without a log line per request
                self.send_400_response("Invalid HTTP request received.")
            return
        if self._phase == "head" and phase == "head" and self._messages == messages:
            # All of this read is head (one that began in this read is counted by the callbacks
            # when complete, so at most one read of a head goes uncounted until the next).
            self._head_bytes += len(data)
            if self._head_bytes > self.limits.max_header_bytes:
                self._refuse(self._head_too_large(), self._path())
                return
        if (
            self._timer is None
            and self._phase in ("head", "body")
            and not self.transport.is_closing()
        ):
            self._arm(self._deadline())

    # Parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._messages += 1
        if self._phase != "head":  # a keep-alive request: its head's clock starts now
            self._start_phase("head")

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        self._head_size += len(url)
        self._check_head(self._head_size)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_size += len(name) + len(value) + 4  # ": " and CRLF
        self._header_count += 1
        self._check_head(self._head_size)
        if self._header_count > self.limits.max_headers:
            raise _Refused(
                HeadersTooLarge(
                    f"the request has more than {self.limits.max_headers} header fields "
                    "(connections.max_headers)"
                )
            )
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._start_phase("body")
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._cancel_timer()
        self._phase = "done"
        super().on_message_complete()

    # Limits

    def _check_head(self, size: int) -> None:
        if size > self.limits.max_header_bytes:
            raise _Refused(self._head_too_large())

    def _head_too_large(self) -> HeadersTooLarge:
        return HeadersTooLarge(
            f"the request head is larger than {self.limits.max_header_bytes} bytes "
            "(connections.max_header_bytes)"
        )

    def _start_phase(self, phase: Phase) -> None:
        self._cancel_timer()
        self._phase = phase
        self._started = self.loop.time()
        self._head_bytes = self._head_size = self._header_count = self._body_bytes = 0
        if phase == "head" and self._messages == 0:
            self._arm(self._deadline())  # a connection that sends nothing at all

    def _deadline(self) -> float:
        limits = self.limits
        if self._phase == "head":
            return self._started + limits.header_timeout_s
        deadline = self._started + limits.body_timeout_s
        if limits.min_body_rate > 0:
            earned = limits.body_grace_s + self._body_bytes / limits.min_body_rate
            deadline = min(deadline, self._started + earned)
        return deadline

    def _arm(self, when: float) -> None:
        self._cancel_timer()
        self._armed_at = self.loop.time()
        self._timer = self.loop.call_at(when, self._on_deadline)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_deadline(self) -> None:
        self._timer = None
        now = self.loop.time()
        if self._phase == "body" and self.flow.read_paused:
            # The server is not reading (the app has not taken what was sent): not the
            # client's delay. The clock moves on by the time waited.
            self._started += now - self._armed_at
            self._arm(now + max(self.limits.body_grace_s, 1.0))
            return
        deadline = self._deadline()
        if now < deadline:  # the body has earned more time since the timer was set
            self._arm(deadline)
            return
        if self._phase == "head" and self._messages == 0:
            # Not one byte of a request: an idle (pre-)connection, closed without an answer
            # that a client could take for the answer to a request it sends just now.
            self.transport.close()
            return
        self._refuse(ClientTimeout(self._timeout_message(now)), self._path())

    def _timeout_message(self, now: float) -> str:
        limits = self.limits
        if self._phase == "head":
            return (
                f"the request head was not complete within {limits.header_timeout_s:g} s "
                "(connections.header_timeout_s)"
            )
        if now - self._started >= limits.body_timeout_s:
            return (
                f"the request body was not complete within {limits.body_timeout_s:g} s "
                "(connections.body_timeout_s)"
            )
        return (
            f"the request body arrived slower than {limits.min_body_rate} bytes/s "
            "(connections.min_body_rate)"
        )

    # Answers

    def _path(self) -> str | None:
        return self.scope.get("path") if self.scope is not None else None

    def _refuse(self, error: ServiceError, path: str | None, *, linger: bool = True) -> None:
        """Answer ``error`` if no answer to this request has begun, then close the connection."""
        self._cancel_timer()
        self._phase = "done"
        cycle = self.cycle
        current = cycle is not None and cycle.scope is self.scope  # the app has this request
        answered = current and cycle.response_started
        earlier_unanswered = cycle is not None and not current and not cycle.response_complete
        if answered or earlier_unanswered or self.transport.is_closing():
            self.transport.close()  # no room for another answer on this connection
            return
        if current:  # the app is still reading the body: it sees a disconnect, and learns why
            self.scope["state"][TIMED_OUT_KEY] = error.message
            cycle.disconnected = True
            cycle.message_event.set()
        state = self.scope.get("state", {}) if self.scope is not None else {}
        rid = state.get("request_id") or new_request_id()
        self.transport.write(error_answer(error, rid, path))
        if not linger or not self.transport.can_write_eof():
            self.transport.close()
            return
        self.transport.write_eof()
        self._phase = "closing"
        self._timer = self.loop.call_later(LINGER_S, self.transport.close)


def error_answer(error: ServiceError, request_id: str, path: str | None) -> bytes:
    """A whole HTTP/1.1 response carrying ``error``, in the V2 protocol's shape on ``/v2``."""
    if path is not None and path.startswith("/v2"):
        status = v2_status_for(error)
        payload = json.dumps({"error": error.message}).encode()
    else:
        status = error.status_code
        detail = ErrorDetail(code=error.code, message=error.message, request_id=request_id)
        payload = ErrorResponse(error=detail).model_dump_json().encode()
    headers = {
        "content-type": "application/json",
        "content-length": str(len(payload)),
        "x-request-id": request_id,
        "connection": "close",
        **{name.lower(): value for name, value in error.headers.items()},
    }
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload


def connection_capacity(wanted: int) -> int:
    """``wanted``, or fewer if this process cannot hold that many open files.

    Raises the soft limit on open files to the hard one first (a connection is a file
    descriptor; many systems default to 1024 soft with a far higher hard limit).
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or hard > soft):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY or soft - FD_RESERVE >= wanted:
        return wanted
    capacity = max(1, soft - FD_RESERVE)
    log.warning(
        "connections.max_connections is %d but this process may open only %d files; "
        "holding at most %d connections per worker",
        wanted, soft, capacity,
    )  # fmt: skip
    return capacity


def uvicorn_config(app: Any, settings: Settings, **options: Any) -> uvicorn.Config:
    """The uvicorn configuration every way of serving uses, with the connection limits."""
    return uvicorn.Config(
        app,
        log_level=settings.log_level,
        access_log=settings.access_log,
        http=GuardedHttpToolsProtocol.configured(settings.connections),
        timeout_keep_alive=math.ceil(settings.connections.idle_timeout_s),
        **options,
    )


class EnvGuardedHttpToolsProtocol(GuardedHttpToolsProtocol):
    """For uvicorn's own multi-worker mode (no ``SO_REUSEPORT``), which names the protocol by
    import path: the limits are read from ``MMSERVE_*`` once per worker process."""

    _loaded: ClassVar[bool] = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        cls = type(self)
        if not cls._loaded:
            cls.limits = Settings().connections
            cls.max_connections = connection_capacity(cls.limits.max_connections)
            cls._loaded = True
        super().__init__(*args, **kwargs)
