"""Fixtures for the web client's tests: the real service in its own process, a real browser.

``service_url`` runs ``python -m service serve`` on a free loopback port over the committed
models (or, until the trained models are committed, a random-weight model with the same
contract named ``digits-xattn``), so the page is served exactly as users get it. ``browser`` is
Debian's chromium driven by Playwright; the tests that need it skip, saying why, when either
is missing (``scripts/setup.sh dev`` installs both).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.settings import REPO_ROOT

DEFAULT_MODEL = "digits-xattn"
COMMITTED = REPO_ROOT / "onnx_models"
CHROMIUM = os.environ.get("MMSERVE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # A fake microphone (a beep) that needs no permission prompt: the recording test uses it.
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
]
START_TIMEOUT_S = 120.0


@pytest.fixture(scope="session")
def web_model_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if (COMMITTED / DEFAULT_MODEL / "1" / "manifest.json").is_file():
        return COMMITTED
    from tests.service.tiny_model import build_tiny_model

    root = tmp_path_factory.mktemp("web-models")
    build_tiny_model(root, DEFAULT_MODEL)
    return root


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def service_url(web_model_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log_path = tmp_path_factory.mktemp("web-service") / "service.log"
    command = [
        sys.executable, "-m", "service", "serve",
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--model-dir", str(web_model_root), "--feature-threads", "1",
    ]  # fmt: skip
    env = os.environ | {"PYTHONPATH": str(REPO_ROOT)}
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(url, process, log_path)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_until_ready(url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the service exited with {process.returncode}:\n{log_path.read_text()}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    pytest.fail(f"the service was not ready in {START_TIMEOUT_S} s:\n{log_path.read_text()}")


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (scripts/setup.sh dev)"
    )
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no chromium at {CHROMIUM} (apt-get install chromium, or MMSERVE_CHROMIUM)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
