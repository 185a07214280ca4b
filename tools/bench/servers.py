"""Servers under test: started as subprocesses on a free loopback port, stopped afterwards.

``ready_s`` is measured from just before ``Popen`` to the first 200 from the readiness URL,
polled every 20 ms. A server is stopped with SIGTERM to its master (which stops its workers),
then SIGKILL to its own process group if it has not exited within a few seconds.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from tools.bench.memory import tree_rss_mb

_POLL_S = 0.02


class ServerFailed(RuntimeError):
    pass


@dataclass(frozen=True)
class ServerSpec:
    name: str
    command: list[str]
    env: Mapping[str, str]
    ready_path: str = "/readyz"


@dataclass
class RunningServer:
    spec: ServerSpec
    process: subprocess.Popen[bytes]
    port: int
    ready_s: float
    log: Path

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def rss_mb(self) -> float:
        return tree_rss_mb(self.process.pid)


# No proxies: the benchmark only ever talks to 127.0.0.1, whatever http_proxy says.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _is_ready(url: str) -> bool:
    try:
        with _OPENER.open(url, timeout=1.0) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def _log_tail(log: Path, chars: int = 3000) -> str:
    with contextlib.suppress(OSError):
        return log.read_text(errors="replace")[-chars:]
    return ""


def _wait_ready(server: RunningServer, started: float, timeout_s: float) -> float:
    url = server.url(server.spec.ready_path)
    while time.perf_counter() - started < timeout_s:
        if server.process.poll() is not None:
            raise ServerFailed(
                f"{server.spec.name} exited with {server.process.returncode} before it was "
                f"ready; log tail:\n{_log_tail(server.log)}"
            )
        if _is_ready(url):
            return time.perf_counter() - started
        time.sleep(_POLL_S)
    raise ServerFailed(
        f"{server.spec.name} not ready within {timeout_s:g} s; log tail:\n{_log_tail(server.log)}"
    )


def stop(server: RunningServer, grace_s: float = 10.0) -> None:
    process = server.process
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(grace_s)
        except subprocess.TimeoutExpired:
            pass
    # Workers that outlived their master are still in the group we created for it.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(5)


@contextlib.contextmanager
def running(
    spec: ServerSpec, port: int, log_dir: Path, *, timeout_s: float = 120.0
) -> Iterator[RunningServer]:
    log = log_dir / f"{spec.name}.log"
    with log.open("wb") as sink:
        started = time.perf_counter()
        process = subprocess.Popen(
            spec.command,
            env=dict(spec.env),
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = RunningServer(spec, process, port, 0.0, log)
    try:
        server.ready_s = _wait_ready(server, started, timeout_s)
        yield server
    finally:
        stop(server)
