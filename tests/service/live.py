"""A real ``python -m service serve`` in a subprocess, its output kept in a file.

Unlike ``conftest.serve_subprocess`` it waits for ``/healthz`` only (a repository with a broken
folder never becomes ready), takes the environment whole (keys, hosts, log level) and hands
back the process and its log, so tests can signal it and read what it logged.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from service.settings import REPO_ROOT
from tests.service.conftest import _free_port


@dataclass
class LiveServer:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextlib.contextmanager
def live_server(
    model_dir: Path,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    workers: int = 1,
    ready_path: str = "/healthz",
) -> Iterator[LiveServer]:
    port = _free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MMSERVE_")}
    base = {
        "MMSERVE_RUNTIME__PROVIDERS": "CPUExecutionProvider",
        "MMSERVE_RUNTIME__FEATURE_THREADS": "1",
        "PYTHONUNBUFFERED": "1",
    }
    command = [
        sys.executable, "-m", "service", "serve", "--host", "127.0.0.1",
        "--port", str(port), "--workers", str(workers), "--model-dir", str(model_dir),
    ]  # fmt: skip
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, env=clean | base | dict(env or {}), stdout=log, stderr=log
        )
    server = LiveServer(f"http://127.0.0.1:{port}", process, log_path)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"the server exited with {process.returncode}:\n{server.log()}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(server.url + ready_path, timeout=2).status_code == 200:
                    break
            time.sleep(0.1)
        else:
            pytest.fail(f"the server did not answer {ready_path} in 120 s:\n{server.log()}")
        yield server
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
