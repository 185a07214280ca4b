"""``python -m service serve``: flags become settings, and a real server answers over TCP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service.cli import build_parser, export_flags
from service.settings import REPO_ROOT, Settings
from tests.service import media
from tests.service.conftest import DEFAULT_MODEL


def test_flags_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    environ = {"MMSERVE_PORT": "9000", "MMSERVE_HOST": "0.0.0.0", "OPENBLAS_NUM_THREADS": "4"}
    args = build_parser().parse_args(
        ["serve", "--port", "8011", "--providers", "CPUExecutionProvider", "--workers", "3"]
    )
    export_flags(args, environ)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert (settings.port, settings.host, settings.workers) == (8011, "0.0.0.0", 3)
    assert settings.runtime.providers == ["CPUExecutionProvider"]
    assert environ["OMP_NUM_THREADS"] == "1"
    assert environ["OPENBLAS_NUM_THREADS"] == "4"  # the user's choice stands


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def server(model_root: Path) -> Iterator[str]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMSERVE_")}
    command = [
        sys.executable,
        "-m",
        "service",
        "serve",
        "--port",
        str(port),
        "--workers",
        "1",
        "--model-dir",
        str(model_root),
        "--log-level",
        "warning",
    ]
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, "the server exited during start-up"
            time.sleep(0.1)
        else:
            pytest.fail("the server did not become ready within 60 s")
        yield base
    finally:
        process.terminate()
        # uvicorn shuts down gracefully on SIGTERM (lifespan included), then re-raises it.
        assert process.wait(timeout=30) in (0, -signal.SIGTERM)


def test_served_over_tcp(server: str) -> None:
    files = {"image": ("digit.png", media.png()), "text": (None, b"seven")}
    response = httpx.post(f"{server}/v1/predict", files=files, timeout=10)
    assert response.status_code == 200, response.text
    assert response.json()["model"] == DEFAULT_MODEL
    assert httpx.get(f"{server}/openapi.json", timeout=10).json()["openapi"].startswith("3.")


def test_bench_slot_exists() -> None:
    args, rest = build_parser().parse_known_args(["bench", "--json"])
    assert args.command == "bench" and rest == ["--json"]
