"""Several worker processes on one port, each with its own listening socket.

One Python process is capped by the GIL and feature extraction is most of a request's CPU, so
``serve`` runs one worker process per core. uvicorn's own multi-worker mode shares one
listening socket between the workers; whichever worker wakes first accepts, and keep-alive
connections then stay where they landed. The benchmark saw that split 32 connections 32/0 in 3
runs out of 31 and 26/6 or worse in 10 more, leaving a core idle (158-186 against 280-440
requests/s). Here each worker binds its own socket with ``SO_REUSEPORT`` and the kernel spreads
new connections over them by hash, evenly in every run measured.

Each worker runs :class:`~service.lifecycle.DrainingServer`, so SIGTERM to the supervisor gives
every worker the full drain: readiness 503 at once, the grace period, in-flight work finished,
exit 0. A worker that dies otherwise is restarted; one that fails to start stops the lot.
The supervisor first binds the port itself (without listening) so that ``--port 0`` and a busy
port are settled before any worker starts.

A worker binds its socket at once but listens only after its lifespan has loaded and warmed
every model (uvicorn listens on the sockets it is given after the lifespan's startup): the
kernel hands new connections only to listening sockets, so none waits on a worker that is still
loading. Restarts back off: the first after ``RESTART_BASE_S``, doubling with each restart in the
last minute up to ``RESTART_MAX_S``, so a crash loop costs little CPU and shows in ``/readyz``
and ``mmserve_worker_restarts_total`` (:mod:`service.restarts`).
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import threading
import time
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType

from service import restarts as restart_log
from service.lifecycle import STARTUP_FAILURE
from service.restarts import RestartLog
from service.settings import Settings

log = logging.getLogger("mmserve")

RESTART_BASE_S = 1.0
RESTART_MAX_S = 30.0
BACKLOG = 2048


def reuseport_supported() -> bool:
    return hasattr(socket, "SO_REUSEPORT")


def reuseport_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def _drain_when_orphaned(parent: int) -> None:
    # A supervisor killed with SIGKILL cannot pass the signal on; without this its workers
    # would live on and keep taking connections on the shared port.
    while os.getppid() == parent:
        time.sleep(1.0)
    os.kill(os.getpid(), signal.SIGTERM)


def run_worker(host: str, port: int) -> None:
    """One worker: its own socket, the app built from ``MMSERVE_*``, drained on SIGTERM."""
    threading.Thread(
        target=_drain_when_orphaned, args=(os.getppid(),), daemon=True, name="orphan-watch"
    ).start()
    from service.process import serve_draining

    settings = Settings()  # the only Settings of this process: the app is built from it
    sock = reuseport_socket(host, port)  # not listening yet: uvicorn listens once warm
    raise SystemExit(serve_draining(settings, sockets=[sock], backlog=BACKLOG))


def restart_delay(recent_restarts: int) -> float:
    """Seconds before a restart, given the restarts already made in the last minute."""
    return min(RESTART_BASE_S * 2.0**recent_restarts, RESTART_MAX_S)


class Supervisor:
    def __init__(self, settings: Settings, restarts_file: Path) -> None:
        self.settings = settings
        self.stopping = False
        self._context = multiprocessing.get_context("spawn")  # no fork of a loaded process
        self._workers: list[BaseProcess] = []
        self._due: dict[int, float] = {}  # worker slot -> monotonic time of its restart
        self.restarts = RestartLog(restarts_file)

    def _start(self, port: int) -> BaseProcess:
        process = self._context.Process(
            target=run_worker, args=(self.settings.host, port), name="mmserve-worker"
        )
        process.start()
        return process

    def _forward(self, sig: int, frame: FrameType | None) -> None:
        self.stopping = True
        for process in self._workers:
            if process.pid is not None and process.exitcode is None:
                os.kill(process.pid, sig)

    def _reload_keys(self, sig: int, frame: FrameType | None) -> None:
        # Each worker holds its own copy of the API keys (service.keys): all must re-read.
        for process in self._workers:
            if process.pid is not None and process.exitcode is None:
                os.kill(process.pid, sig)

    def run(self) -> int:
        logging.basicConfig(
            level=self.settings.log_level.upper(), format="%(levelname)s: %(message)s"
        )
        # SO_REUSEPORT would let us join a port that another server already listens on and
        # silently share its traffic; a plain bind first fails with "address in use" instead.
        family = socket.AF_INET6 if ":" in self.settings.host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((self.settings.host, self.settings.port))
            except OSError as exc:
                log.error("cannot listen on %s:%s: %s", self.settings.host, self.settings.port, exc)
                return 1
            port = probe.getsockname()[1]
        holder = reuseport_socket(self.settings.host, port)  # settles the port for the workers
        log.info("serving on http://%s:%d with %d workers", self.settings.host, port,
                 self.settings.workers)  # fmt: skip
        signal.signal(signal.SIGTERM, self._forward)
        signal.signal(signal.SIGINT, self._forward)
        if hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, self._reload_keys)
        os.environ[restart_log.ENV] = str(self.restarts.path)  # inherited by every worker
        self._workers = [self._start(port) for _ in range(self.settings.workers)]
        status = 0
        while any(p.exitcode is None for p in self._workers) or (self._due and not self.stopping):
            self._wait()
            for i, process in enumerate(self._workers):
                code = process.exitcode
                if code is None or self.stopping or code == 0 or i in self._due:
                    continue
                if code == STARTUP_FAILURE:
                    log.error("a worker could not start; stopping the others")
                    status = STARTUP_FAILURE
                    self._forward(signal.SIGTERM, None)
                    continue
                delay = restart_delay(self.restarts.in_last_minute())
                log.warning("worker %s exited with %s; starting a new one in %g s",
                            process.pid, code, delay)  # fmt: skip
                self.restarts.record()
                self._due[i] = time.monotonic() + delay
            self._restart_due(port)
        holder.close()
        if status == 0 and any(p.exitcode not in (0, None) for p in self._workers):
            status = 1
        return status

    def _wait(self) -> None:
        sentinels = [p.sentinel for p in self._workers if p.exitcode is None]
        timeout = 1.0
        if self._due:
            timeout = min(timeout, max(min(self._due.values()) - time.monotonic(), 0.0))
        if sentinels:
            multiprocessing.connection.wait(sentinels, timeout=timeout)
        else:
            time.sleep(timeout)

    def _restart_due(self, port: int) -> None:
        if self.stopping:
            self._due.clear()
            return
        now = time.monotonic()
        for i in [i for i, due in self._due.items() if due <= now]:
            del self._due[i]
            self._workers[i] = self._start(port)
