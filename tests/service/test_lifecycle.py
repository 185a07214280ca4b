"""The drain sequence of service.lifecycle, timed on a real server process.

SIGTERM turns readiness off at once while requests are still served, the listener closes
after the grace period, a request in flight still gets its answer, and the process exits 0.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import REPO_ROOT
from tests.service.conftest import make_settings
from tools.ports import free_port

GRACE_S = 1.0


@pytest.fixture
def server() -> Iterator[tuple[subprocess.Popen[str], str]]:
    port = free_port()
    command = [sys.executable, "-m", "tests.service.slow_app", str(port), str(GRACE_S), "10"]
    process = subprocess.Popen(
        command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.05)
    else:
        process.kill()
        pytest.fail(f"the test server did not start: {process.communicate()[0]}")
    yield process, url
    if process.poll() is None:
        process.kill()
    process.communicate()  # reaps it and closes the pipe


def test_sigterm_drains_then_exits_zero(server: tuple[subprocess.Popen[str], str]) -> None:
    process, url = server
    with ThreadPoolExecutor(1) as pool:
        in_flight = pool.submit(httpx.get, f"{url}/slow?s={GRACE_S + 1.0}", timeout=10)
        time.sleep(0.2)  # the slow request is in the server before the signal
        process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        assert httpx.get(f"{url}/readyz", timeout=2).status_code == 503
        assert httpx.get(f"{url}/slow?s=0", timeout=2).status_code == 200  # still serving

        time.sleep(GRACE_S)  # the grace period is over: the listener is closed
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{url}/slow?s=0", timeout=2)

        answer = in_flight.result()
    assert answer.status_code == 200 and answer.json() == {"slept": GRACE_S + 1.0}
    log = process.communicate(timeout=10)[0]
    assert process.returncode == 0
    assert "closing the listener with 1 request(s) in flight" in log


def test_second_signal_skips_the_grace_period(server: tuple[subprocess.Popen[str], str]) -> None:
    process, url = server
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    assert process.wait(10) == 0
    assert time.monotonic() - started < GRACE_S


def test_the_app_is_unready_but_serving_while_it_drains(model_root: Path) -> None:
    app = create_app(make_settings(model_root))
    with TestClient(app) as client:
        assert client.get("/readyz").json()["status"] == "ok"
        app.state.lifecycle.begin_drain()  # what DrainingServer does on SIGTERM
        response = client.get("/readyz")
        assert response.status_code == 503
        assert response.json()["status"] == "draining"
        assert client.post("/v1/predict", files={"text": (None, b"seven")}).status_code == 200


def test_a_draining_replica_closes_each_connection_after_its_response(
    client: TestClient,
) -> None:
    lifecycle = client.app.state.lifecycle  # type: ignore[attr-defined]
    assert client.get("/healthz").headers.get("connection") != "close"
    lifecycle.draining = True
    try:
        response = client.get("/healthz")
        assert response.status_code == 200 and response.headers["connection"] == "close"
    finally:
        lifecycle.draining = False
