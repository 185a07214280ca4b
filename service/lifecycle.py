"""Graceful shutdown of one serving process: readiness off, a grace period, then drain.

On SIGTERM (or SIGINT) a replica behind a load balancer must not drop requests:

1. ``Lifecycle.draining`` turns true at once, so ``GET /readyz`` answers 503 and the load
   balancer (Kubernetes endpoints, an active health check) takes the replica out of rotation.
   The listener stays open and requests are still served.
2. ``shutdown_grace_s`` later uvicorn closes the listener and the idle keep-alive connections;
   a connection with a request in flight closes after its response. A load balancer that still
   connects is refused and retries the next replica.
3. uvicorn waits up to ``drain_timeout_s`` for the requests in flight (each awaiting its batch),
   then runs the lifespan's shutdown, which drains every batcher.
4. The process exits with status 0.

A second signal skips what is left of the grace period; a third forces the exit at once.

Only :class:`DrainingServer` does steps 1-2: uvicorn's own ``Server`` closes the listener on
the first signal, and re-raises the signal after shutdown so the process dies by it. ``serve``
runs a DrainingServer in its one process and, under ``--workers N``, in every worker process
(:mod:`service.process`; :mod:`service.workers` passes SIGTERM on to each). Only where there
is no ``SO_REUSEPORT`` does ``serve`` fall back to uvicorn's supervisor, whose workers run
uvicorn's ``Server``: they skip the readiness flip and the grace period but still finish their
requests and batches.
"""

from __future__ import annotations

import logging
import socket
import time
from dataclasses import dataclass
from types import FrameType

import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

STARTUP_FAILURE = 3  # a serving process whose app could not start exits so, as uvicorn does


@dataclass
class Lifecycle:
    """What the app knows about its process's shutdown (``app.state.lifecycle``)."""

    draining: bool = False

    def begin_drain(self) -> None:
        self.draining = True


class CloseWhenDraining:
    """ASGI middleware: while draining, every response says ``Connection: close``.

    A load balancer keeps idle connections to each replica (nginx: ``keepalive 32``). When the
    grace period ends uvicorn closes the idle ones, and a request nginx wrote on one at that
    moment was sent and then failed: nginx does not resend a POST it has sent
    (``deploy/nginx.conf.template``), so it would be lost. Closing each connection after its
    response during the grace period leaves none idle by then; new requests open new
    connections, accepted until the listener closes and refused (so resent) after.
    """

    def __init__(self, app: ASGIApp, lifecycle: Lifecycle) -> None:
        self.app = app
        self.lifecycle = lifecycle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.lifecycle.draining:
            await self.app(scope, receive, send)
            return

        async def send_closing(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (k, v) for k, v in message.get("headers", []) if k.lower() != b"connection"
                ]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        await self.app(scope, receive, send_closing)


class DrainingServer(uvicorn.Server):
    """A uvicorn server that serves through ``grace_s`` after SIGTERM before it drains."""

    def __init__(self, config: uvicorn.Config, lifecycle: Lifecycle, grace_s: float) -> None:
        super().__init__(config)
        self.lifecycle = lifecycle
        self.grace_s = grace_s
        self._signalled_at: float | None = None
        self._announced = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Runs as a signal handler: only flags here, the event loop acts on them in on_tick.
        # The signal is not recorded in _captured_signals, so uvicorn does not re-raise it.
        if self._signalled_at is None:
            self._signalled_at = time.monotonic()
            self.lifecycle.begin_drain()
        elif not self.should_exit:
            self.should_exit = True
        else:
            self.force_exit = True

    async def on_tick(self, counter: int) -> bool:
        if self._signalled_at is not None:
            if not self._announced:
                self._announced = True
                log.info("drain: not ready; serving for %.1f s more before closing", self.grace_s)
            if time.monotonic() - self._signalled_at >= self.grace_s:
                self.should_exit = True
        return await super().on_tick(counter)

    @property
    def exit_status(self) -> int:
        """0 after a drain, :data:`STARTUP_FAILURE` if the app never started (call after run)."""
        return 0 if self.started else STARTUP_FAILURE

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        started = time.monotonic()
        log.info(
            "drain: closing the listener with %d request(s) in flight",
            len(self.server_state.tasks),
        )
        await super().shutdown(sockets)
        log.info("drain: done in %.2f s", time.monotonic() - started)
