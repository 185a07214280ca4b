"""uvicorn's private httptools protocol, as service.protocol and service.connections use it.

Both subclass ``uvicorn.protocols.http.httptools_impl.HttpToolsProtocol``, which is not a public
API: pyproject.toml pins uvicorn to the minor version tested here. A uvicorn release that moves
what they override or read must fail here (then re-check both modules and move the pin), not
leave the server quietly unguarded or writing answers in two pieces.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import pytest
from starlette.types import Receive, Scope, Send
from uvicorn import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from service.connections import GuardedHttpToolsProtocol
from service.protocol import CoalescingHttpToolsProtocol

# What the subclasses override or call, with uvicorn's parameter names.
METHODS = {
    "__init__": ["self", "config", "server_state", "app_state", "_loop"],
    "connection_made": ["self", "transport"],
    "connection_lost": ["self", "exc"],
    "data_received": ["self", "data"],
    "on_message_begin": ["self"],
    "on_url": ["self", "url"],
    "on_header": ["self", "name", "value"],
    "on_headers_complete": ["self"],
    "on_body": ["self", "body"],
    "on_message_complete": ["self"],
    "send_400_response": ["self", "msg"],
    "handle_websocket_upgrade": ["self"],
    "_unset_keepalive_if_required": ["self"],
    "_should_upgrade": ["self"],
    "_unsupported_upgrade_warning": ["self"],
}
REQUEST = b"GET /anything HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


class RecordingTransport(asyncio.Transport):
    """A socket's transport that keeps every write and answers uvicorn's address questions."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False
        self.eof = False

    def write(self, data: bytes | bytearray | memoryview[Any]) -> None:
        self.writes.append(bytes(data))

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(
            name, default
        )

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof = True

    def get_write_buffer_size(self) -> int:
        return 0


async def two_part_answer(scope: Scope, receive: Receive, send: Send) -> None:
    """Starts the response and sends its body in two ASGI messages, as Starlette does."""
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
    )
    await send({"type": "http.response.body", "body": b"{}"})


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_the_subclasses_use_keeps_its_signature(name: str) -> None:
    method = getattr(HttpToolsProtocol, name)
    assert list(inspect.signature(method).parameters) == METHODS[name]


def test_the_subclasses_override_nothing_else() -> None:
    # A method overridden here but missing from METHODS would go unchecked.
    for cls in (CoalescingHttpToolsProtocol, GuardedHttpToolsProtocol):
        own = {name for name, value in vars(cls).items() if inspect.isfunction(value)}
        inherited = own & set(dir(HttpToolsProtocol))
        assert inherited <= set(METHODS), cls


async def _serve(protocol_class: type[HttpToolsProtocol], data: bytes) -> tuple[Any, list[bytes]]:
    """One connection to a real uvicorn protocol over a recording transport."""
    config = Config(two_part_answer, log_config=None, lifespan="off")
    protocol = protocol_class(config=config, server_state=ServerState(), app_state={})
    transport = RecordingTransport()
    protocol.connection_made(transport)
    # The state connections.py reads, where uvicorn keeps it.
    assert protocol in protocol.connections
    assert protocol.loop is asyncio.get_running_loop()
    assert protocol.flow.read_paused is False
    assert protocol.scope is None and protocol.cycle is None
    protocol.data_received(data)
    cycle = protocol.cycle
    for _ in range(100):
        if transport.writes or transport.closed:
            break
        await asyncio.sleep(0)
    protocol.connection_lost(None)
    return cycle, transport.writes


def test_head_and_body_leave_in_one_write_through_uvicorn() -> None:
    cycle, writes = asyncio.run(_serve(CoalescingHttpToolsProtocol, REQUEST))
    assert len(writes) == 1, writes
    assert writes[0].startswith(b"HTTP/1.1 200 OK\r\n") and writes[0].endswith(b"\r\n\r\n{}")
    # The request's cycle, with the state connections.py reads and sets.
    assert cycle.scope["path"] == "/anything"
    assert (cycle.response_started, cycle.response_complete, cycle.disconnected) == (
        True,
        True,
        False,
    )
    assert isinstance(cycle.message_event, asyncio.Event)


def test_a_guard_refuses_inside_uvicorns_parser_callbacks() -> None:
    too_many = b"".join(
        b"X-%d: 1\r\n" % i for i in range(GuardedHttpToolsProtocol.limits.max_headers + 1)
    )
    head = REQUEST.removesuffix(b"\r\n") + too_many + b"\r\n"
    cycle, writes = asyncio.run(_serve(GuardedHttpToolsProtocol, head))
    assert cycle is None  # refused before the app saw the request
    assert len(writes) == 1 and writes[0].startswith(b"HTTP/1.1 431 ")
    assert b"(connections.max_headers)" in writes[0]
