"""A tiny real ASGI app served by DrainingServer, for the drain sequence's timing tests.

``python -m tests.service.slow_app PORT GRACE_S DRAIN_S`` serves ``/readyz`` (503 once the
lifecycle drains) and ``/slow?s=SECONDS`` (answers after sleeping), nothing else.
"""

from __future__ import annotations

import asyncio
import logging
import sys

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from service.lifecycle import DrainingServer, Lifecycle


def build(lifecycle: Lifecycle) -> Starlette:
    async def readyz(request: Request) -> JSONResponse:
        draining = lifecycle.draining
        return JSONResponse({"draining": draining}, status_code=503 if draining else 200)

    async def slow(request: Request) -> JSONResponse:
        seconds = float(request.query_params.get("s", "0"))
        await asyncio.sleep(seconds)
        return JSONResponse({"slept": seconds})

    return Starlette(routes=[Route("/readyz", readyz), Route("/slow", slow)])


def main(port: int, grace_s: float, drain_s: float) -> int:
    logging.basicConfig(level=logging.INFO)
    lifecycle = Lifecycle()
    config = uvicorn.Config(
        build(lifecycle), host="127.0.0.1", port=port, timeout_graceful_shutdown=drain_s
    )
    server = DrainingServer(config, lifecycle, grace_s)
    server.run()
    return 0 if server.started else 3


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])))
