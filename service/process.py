"""One serving process: the app under a :class:`~service.lifecycle.DrainingServer`.

``serve`` runs this in its one process (``--workers 1``) and in each worker process that
:mod:`service.workers` starts; either way the process builds its app from the settings it is
given (built once per process) and drains on SIGTERM as :mod:`service.lifecycle` describes.
"""

from __future__ import annotations

import logging
import math
import socket
from typing import Any

from service.allocator import give_memory_back
from service.app import create_app
from service.connections import uvicorn_config
from service.lifecycle import DrainingServer
from service.log_limits import capture_native_stderr, limit_repeats
from service.settings import Settings


def serve_draining(
    settings: Settings, sockets: list[socket.socket] | None = None, **uvicorn_options: Any
) -> int:
    """Serve until drained; the process's exit status (:data:`~service.lifecycle.STARTUP_FAILURE`
    when the app could not start). ``uvicorn_options`` go to ``uvicorn.Config``."""
    give_memory_back()  # before any model or upload is allocated (service.allocator)
    logging.basicConfig(level=settings.log_level.upper())
    app = create_app(settings)
    config = uvicorn_config(
        app,
        settings,
        timeout_graceful_shutdown=math.ceil(settings.drain_timeout_s),
        **uvicorn_options,
    )
    # After the Config: uvicorn's logging config must be in place to be limited.
    capture_native_stderr(limit_repeats(settings.log_repeat_limit, settings.log_repeat_window_s))
    server = DrainingServer(config, app.state.lifecycle, settings.shutdown_grace_s)
    server.run(sockets=sockets)
    return server.exit_status
