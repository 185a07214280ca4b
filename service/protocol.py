"""HTTP responses written with one system call, so a replica that dies sends all or nothing.

A load balancer may send a request to another replica only while nothing of the answer has
reached the client. uvicorn writes a response's head when the app starts it and the body
after it; between those two writes the event loop can wait milliseconds for the GIL, held by
a feature-extraction thread. A replica killed in that window leaves nginx with a head and no
body: nginx has already begun answering, cannot retry, and the client gets a truncated
response. Under load that window caught about one SIGKILL in seven
(``tests/deploy/test_failover.py``).

:class:`CoalescingHttpToolsProtocol` gives uvicorn a transport that collects what is written
during one step of the event loop and passes it to the socket at the end of that step. Every
answer of this service is ready at once, so its head and body leave in one ``send()``: the
kernel then delivers all of it even if the process dies right after. A streamed body would
still leave one chunk per step. uvicorn's httptools protocol is private: pyproject.toml pins
uvicorn to the minor version tested, and ``tests/service/test_uvicorn_internals.py`` fails if
what this relies on changes.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class CoalescingTransport(asyncio.Transport):
    """Wraps a transport; writes made in one loop step reach it as one write."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(extra=None)
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview[Any]) -> None:
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(bytes(data))

    def flush(self) -> None:
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending.clear()
        self._transport.abort()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def is_reading(self) -> bool:
        return self._transport.is_reading()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._transport.get_protocol()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(map(len, self._pending))

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._transport.set_write_buffer_limits(high, low)

    def can_write_eof(self) -> bool:
        return self._transport.can_write_eof()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol over a :class:`CoalescingTransport`."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CoalescingTransport(transport, self.loop))
