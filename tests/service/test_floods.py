"""Floods of hostile requests leave bounded traces: in ``/metrics`` and in the log.

A real ``serve --workers 2`` (so the metrics are merged from the multiprocess folder, and each
worker limits its own log) with the default log level.
"""

from __future__ import annotations

import io
import random
import socket
import string
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf

from tests.service.live import LiveServer, live_server

RANDOM_REQUESTS = 10_000
BAD_REQUESTS = 1_000


@pytest.fixture(scope="module")
def metrics_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("metrics")


@pytest.fixture(scope="module")
def server(
    model_root: Path, metrics_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    log_path = tmp_path_factory.mktemp("log") / "server.log"
    env = {"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    with live_server(model_root, log_path, env, workers=2, ready_path="/readyz") as live:
        deadline = time.monotonic() + 60  # /readyz answered by one worker: wait for both
        while live.log().count("Application startup complete") < 2:
            assert time.monotonic() < deadline, live.log()
            time.sleep(0.05)
        yield live


def random_name(rng: random.Random) -> str:
    alphabet = string.ascii_letters + string.digits + "-_."
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 200)))


def random_request(rng: random.Random) -> tuple[str, str]:
    name, other = random_name(rng), random_name(rng)
    return rng.choice(
        [
            ("GET", f"/v2/models/{name}/ready"),
            ("GET", f"/v2/models/{name}/versions/{other}/ready"),
            ("GET", f"/v2/models/{name}"),
            ("POST", f"/v1/models/{name}/predict"),
            ("GET", f"/v1/models/{name}"),
            ("GET", f"/{name}/{other}"),
        ]
    )


def send_all(url: str, requests: list[tuple[str, str]]) -> set[int]:
    def run(chunk: list[tuple[str, str]]) -> set[int]:
        with httpx.Client(base_url=url, timeout=30) as client:
            return {
                client.request(method, path, data={"text": "seven"}).status_code
                if method == "POST"
                else client.request(method, path).status_code
                for method, path in chunk
            }

    chunks = [requests[i::4] for i in range(4)]
    with ThreadPoolExecutor(4) as pool:
        return set().union(*pool.map(run, chunks))


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.iterdir())


def test_requests_naming_random_models_do_not_grow_the_metrics(
    server: LiveServer, metrics_dir: Path
) -> None:
    rng = random.Random(13)
    # Each kind once (the series for "_unknown" and "unmatched" appear), then the flood.
    warm_up = [random_request(random.Random(seed)) for seed in range(200)]
    send_all(server.url, warm_up)
    before = httpx.get(server.url + "/metrics").content
    folder_before = folder_bytes(metrics_dir)

    statuses = send_all(server.url, [random_request(rng) for _ in range(RANDOM_REQUESTS)])

    after = httpx.get(server.url + "/metrics").content
    assert all(400 <= status < 500 for status in statuses), statuses
    assert len(after) - len(before) < 1024, (len(before), len(after))
    assert folder_bytes(metrics_dir) == folder_before
    assert b'model="_unknown"' in after
    assert httpx.get(server.url + "/readyz").status_code == 200


def bad_mp3(rng: random.Random) -> bytes | None:
    if "MP3" not in sf.available_formats():
        return None
    buffer = io.BytesIO()
    sf.write(buffer, np.sin(np.arange(16000) / 5).astype(np.float32), 16000, format="MP3")
    data = bytearray(buffer.getvalue())
    for at in range(400 + rng.randrange(50), len(data), 97):  # corrupt frames, keep the start
        data[at] = rng.randrange(256)
    return bytes(data)


def garbage(url: str) -> None:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"GARBAGE\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 400")


def test_a_thousand_bad_requests_log_fewer_than_twenty_lines(server: LiveServer) -> None:
    rng = random.Random(7)
    mp3s = [mp3 for mp3 in (bad_mp3(rng) for _ in range(5)) if mp3 is not None]
    long_boundary = {"content-type": "multipart/form-data; boundary=" + "b" * 300}
    lines_before = server.log().count("\n")
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for i in range(BAD_REQUESTS):
            kind = i % 4
            if kind == 0:
                garbage(server.url)
            elif kind == 1 and mp3s:
                response = client.post("/v1/predict", files={"audio": ("a.mp3", mp3s[i % 5])})
                assert response.status_code < 500, response.text
            elif kind == 2:
                response = client.post("/v1/predict", content=b"--x", headers=long_boundary)
                assert response.status_code == 400, response.text
            else:
                response = client.post("/v2/models/nope/infer", content=b"{")
                assert 400 <= response.status_code < 500, response.text
    log = server.log()
    added = log.count("\n") - lines_before
    assert added < 20, log[-5000:]
    assert "similar messages are suppressed" in log
    if mp3s:  # libmpg123's own lines came through logging, limited
        assert "native library" in log
