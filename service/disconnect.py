"""Stop working for clients that have gone away.

Starlette does not cancel a handler when its client disconnects: the request would still be
decoded, queued and run through the model, and the answer dropped. :func:`cancel_on_disconnect`
races the work against the ASGI ``http.disconnect`` message; if the client leaves first, the
work is cancelled — a row still in the batcher's queue is then skipped, so it costs no
inference — and :class:`~service.errors.ClientDisconnected` is raised (logged as 499).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from starlette.types import Receive, Scope

from service.errors import ClientDisconnected, ClientTimeout

T = TypeVar("T")
# Set in a request's scope state by service.connections when it ended a request that was too
# slow to arrive: the app then sees a disconnect, and reports the 408 the client was sent.
TIMED_OUT_KEY = "client_timeout"


def timed_out(scope: Scope) -> ClientTimeout | None:
    """The 408 the server sent if it closed this request for arriving too slowly, else None."""
    message = scope.get("state", {}).get(TIMED_OUT_KEY)
    return ClientTimeout(message) if isinstance(message, str) else None


async def _until_disconnected(receive: Receive) -> None:
    # Called only after the body has been read, so the next message can only be a disconnect.
    while (await receive())["type"] != "http.disconnect":
        pass


async def cancel_on_disconnect(work: Awaitable[T], receive: Receive) -> T:
    # One watcher task that cancels this one, rather than the work in a task of its own raced
    # with asyncio.wait: that cost two tasks and a waiter on every request.
    this_task = asyncio.current_task()
    assert this_task is not None
    disconnected = False

    async def watch() -> None:
        nonlocal disconnected
        await _until_disconnected(receive)
        disconnected = True
        this_task.cancel()

    watcher = asyncio.create_task(watch())
    try:
        return await work
    except asyncio.CancelledError:
        if not disconnected:
            raise
        this_task.uncancel()
        raise ClientDisconnected("the client closed the connection before its answer") from None
    finally:
        watcher.cancel()
