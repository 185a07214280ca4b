"""A killed worker comes back listening only once warm; a crash loop backs off and shows.

Real ``serve --workers 2`` processes, workers killed with SIGKILL (as the OOM killer does).
"Listening" is read from the kernel (``/proc/net/tcp``: sockets in LISTEN on the port), and
"warm" from the worker's own log line, written after its lifespan loaded every model.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.service.live import LiveServer, live_server

pytestmark = pytest.mark.slow

WARM = "Application startup complete"


@pytest.fixture
def server(model_root: Path, tmp_path: Path) -> Iterator[LiveServer]:
    with live_server(model_root, tmp_path / "server.log", workers=2, ready_path="/readyz") as s:
        deadline = time.monotonic() + 60  # /readyz answered from one worker: wait for both
        while s.log().count(WARM) < 2 or listeners(s) < 2:
            assert time.monotonic() < deadline, s.log()
            time.sleep(0.05)
        yield s


def worker_pids(server: LiveServer) -> set[int]:
    pid = server.process.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return {int(child) for child in children if "spawn_main" in cmdline(int(child))}


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def listeners(server: LiveServer) -> int:
    port = f"{int(server.url.rsplit(':', 1)[1]):04X}"
    lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return sum(
        1 for line in lines if line.split()[1].endswith(":" + port) and line.split()[3] == "0A"
    )


def metric(server: LiveServer, name: str) -> float:
    text = httpx.get(server.url + "/metrics").text
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert match is not None, text[-2000:]
    return float(match.group(1))


class Load:
    """Predicts on a new connection each, so the kernel picks a listener for every one."""

    def __init__(self, url: str, threads: int = 2) -> None:
        self.url = url
        self.ok = 0
        self.failed: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run) for _ in range(threads)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                response = httpx.post(self.url + "/v1/predict", data={"text": "seven"}, timeout=30)
            except httpx.TransportError as exc:
                self.failed.append(repr(exc))
                continue
            if response.status_code == 200:
                self.ok += 1
            else:
                self.failed.append(f"{response.status_code} {response.text[:200]}")


def test_a_killed_worker_comes_back_listening_only_once_warm(server: LiveServer) -> None:
    [victim, *_] = sorted(worker_pids(server))
    assert listeners(server) == 2
    warm_before = server.log().count(WARM)
    early: list[tuple[int, int]] = []  # (listeners, warm lines) seen while not yet warm
    with Load(server.url) as load:
        time.sleep(1.0)
        os.kill(victim, signal.SIGKILL)
        deadline, dropped = time.monotonic() + 90, False
        while time.monotonic() < deadline:
            count, warm = listeners(server), server.log().count(WARM)
            dropped = dropped or count == 1  # the killed worker's socket is gone
            if dropped and count == 2 and warm == warm_before:
                early.append((count, warm))
            if dropped and count == 2 and warm > warm_before:
                break
            time.sleep(0.02)
        else:
            pytest.fail(f"the worker did not come back:\n{server.log()[-3000:]}")
        time.sleep(1.0)
    assert victim not in worker_pids(server) and len(worker_pids(server)) == 2
    assert not early, "a new worker listened before its models were loaded"
    # Only what was in flight on the killed worker (one per load thread at most) is lost.
    assert load.ok > 0 and len(load.failed) <= 2, load.failed
    assert metric(server, "mmserve_worker_restarts_total") == 1.0
    ready = httpx.get(server.url + "/readyz")
    assert ready.status_code == 200 and ready.json()["worker_restarts_last_minute"] == 1


def test_a_worker_that_keeps_dying_at_start_is_restarted_ever_more_slowly(
    server: LiveServer,
) -> None:
    gaps = []
    [victim, *_] = sorted(worker_pids(server))
    for _ in range(3):  # each replacement killed as soon as it exists, before it can load
        survivors = worker_pids(server) - {victim}
        os.kill(victim, signal.SIGKILL)
        killed = time.monotonic()
        while not (new := worker_pids(server) - survivors - {victim}):
            assert time.monotonic() < killed + 60, server.log()
            time.sleep(0.01)
        gaps.append(time.monotonic() - killed)
        [victim] = new
    # Back-off: 1, 2 then 4 s (service.workers.restart_delay), each at least that long.
    for gap, expected in zip(gaps, (1, 2, 4), strict=True):
        assert expected * 0.95 <= gap < expected + 3, gaps
    for delay in (1, 2, 4):
        assert f"starting a new one in {delay} s" in server.log()
    deadline = time.monotonic() + 90
    while httpx.get(server.url + "/readyz").status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    ready = httpx.get(server.url + "/readyz").json()
    assert ready["worker_restarts_last_minute"] == 3, ready
    assert metric(server, "mmserve_worker_restarts_total") == 3.0
