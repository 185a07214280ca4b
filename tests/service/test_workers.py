"""``serve --workers N``: one SO_REUSEPORT socket per worker, every worker drains on SIGTERM,
and workers never outlive their supervisor (service/workers.py)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from service.settings import REPO_ROOT
from tools.ports import free_port

pytestmark = pytest.mark.slow


def _start(model_root: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMSERVE_")}
    env["MMSERVE_SHUTDOWN_GRACE_S"] = "1"
    command = [sys.executable, "-m", "service", "serve", "--port", str(port), "--workers", "2",
               "--model-dir", str(model_root), "--log-level", "warning"]  # fmt: skip
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    pytest.fail("two workers did not become ready within 60 s")


def _worker_pids(supervisor: int) -> set[int]:
    children = Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split()
    return {int(pid) for pid in children if "spawn_main" in _cmdline(int(pid))}


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    return (
        Path(f"/proc/{pid}").exists()
        and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()
    )


def test_each_worker_listens_and_all_drain_on_sigterm(model_root: Path) -> None:
    process, url = _start(model_root)
    try:
        workers = _worker_pids(process.pid)
        assert len(workers) == 2
        # Fresh connections are spread by the kernel over both workers' sockets.
        for _ in range(20):
            assert httpx.post(f"{url}/v1/predict", data={"text": "seven"}).status_code == 200
        metrics = httpx.get(f"{url}/metrics").text  # merged over both workers
        assert (
            'mmserve_requests_total{endpoint="/v1/predict",model="digits-xattn",status="200"} 20.0'
            in metrics
        )  # noqa: E501

        process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        readiness = [httpx.get(f"{url}/readyz", timeout=2) for _ in range(4)]
        assert {r.status_code for r in readiness} == {503}  # every worker is draining
        assert httpx.post(f"{url}/v1/predict", data={"text": "one"}).status_code == 200
        assert process.wait(timeout=30) == 0
        assert not any(_alive(pid) for pid in workers)
    finally:
        if process.poll() is None:
            process.kill()


def test_workers_do_not_outlive_a_killed_supervisor(model_root: Path) -> None:
    process, url = _start(model_root)
    workers = _worker_pids(process.pid)
    process.kill()
    process.wait()
    deadline = time.monotonic() + 15  # notice (1 s) + grace (1 s) + drain
    while time.monotonic() < deadline and any(_alive(pid) for pid in workers):
        time.sleep(0.2)
    assert not any(_alive(pid) for pid in workers)
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{url}/readyz", timeout=1)


def test_a_busy_port_is_refused_not_shared(model_root: Path) -> None:
    # SO_REUSEPORT alone would let a second server join the port and take half its traffic.
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        command = [sys.executable, "-m", "service", "serve", "--port", str(port),
                   "--workers", "2", "--model-dir", str(model_root)]  # fmt: skip
        result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "cannot listen on 127.0.0.1" in result.stderr
