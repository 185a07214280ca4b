"""A client that leaves stops its work (service/disconnect.py)."""

from __future__ import annotations

import asyncio

import pytest
from starlette.types import Message

from service.disconnect import cancel_on_disconnect
from service.errors import ClientDisconnected


def test_work_is_cancelled_when_the_client_disconnects() -> None:
    cancelled = asyncio.Event()

    async def scenario() -> None:
        left = asyncio.Event()

        async def receive() -> Message:
            await left.wait()
            return {"type": "http.disconnect"}

        async def work() -> str:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                cancelled.set()
                raise
            return "answer"

        asyncio.get_running_loop().call_later(0.05, left.set)
        await cancel_on_disconnect(work(), receive)

    with pytest.raises(ClientDisconnected):
        asyncio.run(scenario())
    assert cancelled.is_set()


def test_work_finishing_first_returns_its_result() -> None:
    async def scenario() -> str:
        async def receive() -> Message:
            await asyncio.sleep(10)
            return {"type": "http.disconnect"}

        async def work() -> str:
            return "answer"

        return await cancel_on_disconnect(work(), receive)

    assert asyncio.run(scenario()) == "answer"
