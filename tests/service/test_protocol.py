"""service.protocol: what a response writes in one loop step reaches the socket as one write."""

from __future__ import annotations

import asyncio
from typing import Any

from service.protocol import CoalescingTransport


class RecordingTransport(asyncio.Transport):
    """A transport that keeps every write it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview[Any]) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_write_buffer_size(self) -> int:
        return 0


async def one_step_then_next(transport: CoalescingTransport) -> None:
    transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    transport.write(b"{}")
    await asyncio.sleep(0)  # the end of this step


def test_head_and_body_leave_together() -> None:
    async def scenario() -> list[bytes]:
        inner = RecordingTransport()
        transport = CoalescingTransport(inner, asyncio.get_running_loop())
        await one_step_then_next(transport)
        assert transport.get_write_buffer_size() == 0
        return inner.writes

    assert asyncio.run(scenario()) == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]


def test_close_sends_what_is_pending_and_abort_drops_it() -> None:
    async def scenario() -> tuple[list[bytes], list[bytes]]:
        loop = asyncio.get_running_loop()
        closed, aborted = RecordingTransport(), RecordingTransport()
        transport = CoalescingTransport(closed, loop)
        transport.write(b"last answer")
        transport.close()  # before the step ends
        transport = CoalescingTransport(aborted, loop)
        transport.write(b"dropped")
        transport.abort()
        await asyncio.sleep(0)
        return closed.writes, aborted.writes

    assert asyncio.run(scenario()) == ([b"last answer"], [])
