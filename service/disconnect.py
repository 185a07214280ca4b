"""Stop working for clients that have gone away.

Starlette does not cancel a handler when its client disconnects: the request would still be
decoded, queued and run through the model, and the answer dropped. :func:`cancel_on_disconnect`
races the work against the ASGI ``http.disconnect`` message; if the client leaves first, the
work is cancelled — a row still in the batcher's queue is then skipped, so it costs no
inference — and :class:`~service.errors.ClientDisconnected` is raised (logged as 499).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import TypeVar

from starlette.types import Receive

from service.errors import ClientDisconnected

T = TypeVar("T")


async def _until_disconnected(receive: Receive) -> None:
    # Called only after the body has been read, so the next message can only be a disconnect.
    while (await receive())["type"] != "http.disconnect":
        pass


async def cancel_on_disconnect(work: Awaitable[T], receive: Receive) -> T:
    work_task = asyncio.ensure_future(work)
    watch = asyncio.create_task(_until_disconnected(receive))
    try:
        done, _ = await asyncio.wait({work_task, watch}, return_when=asyncio.FIRST_COMPLETED)
        if work_task in done:
            return work_task.result()
        work_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await work_task
        raise ClientDisconnected("the client closed the connection before its answer")
    finally:
        watch.cancel()
        if not work_task.done():
            work_task.cancel()
