"""After a burst of worst-case allowed uploads each worker gives its memory back.

A real ``serve --workers 2``; RSS of each worker from ``/proc``. Without the trimming thread
of ``service.allocator`` the same burst left each worker 1.5-2 GB above its baseline.
"""

from __future__ import annotations

import io
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from tests.service.live import LiveServer, live_server

pytestmark = pytest.mark.slow

MODELS = ("digits-concat", "digits-gated", "digits-mean", "digits-xattn")
SIDE = 6000  # 36 Mpx
# The default decode limits refuse these images before decoding (tests/service/
# test_hostile_decode.py); a deployment may raise them, and this test is about what the
# allocator keeps after the heaviest decodes, so the server here allows them.
ALLOW_HEAVY = {
    "MMSERVE_LIMITS__MAX_IMAGE_PIXELS": "40000000",
    "MMSERVE_LIMITS__MAX_IMAGE_DECODED_BYTES": "160000000",
    "MMSERVE_LIMITS__MAX_AUDIO_SAMPLES": "6000000",
}
GIVE_BACK_MB = 100


def rss_mb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
    raise AssertionError(f"no VmRSS for {pid}")


def worker_pids(server: LiveServer) -> list[int]:
    pid = server.process.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return sorted(
        int(c) for c in children if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()
    )


def uploads() -> list[dict[str, tuple[str, bytes]]]:
    rgba = Image.new("RGBA", (SIDE, SIDE))
    rgba.paste((10, 200, 30, 128), (0, 0, SIDE // 2, SIDE))
    sixteen = Image.fromarray((np.indices((SIDE, SIDE))[0] % 65536).astype(np.uint16))
    rng = np.random.default_rng(0)
    clip = (rng.standard_normal((48000 * 30, 2)) * 0.1).astype(np.float32)
    files = []
    for image in (rgba, sixteen):
        buffer = io.BytesIO()
        image.save(buffer, "PNG")
        files.append({"image": ("big.png", buffer.getvalue())})
    buffer = io.BytesIO()
    sf.write(buffer, clip, 48000, format="FLAC")
    files.append({"audio": ("long.flac", buffer.getvalue())})
    return files


def test_each_worker_returns_near_its_baseline_after_a_burst(
    model_root: Path, tmp_path: Path
) -> None:
    cases = uploads()
    log = tmp_path / "server.log"
    with live_server(model_root, log, env=ALLOW_HEAVY, workers=2, ready_path="/readyz") as s:
        deadline = time.monotonic() + 60
        while len(worker_pids(s)) < 2 or s.log().count("Application startup complete") < 2:
            assert time.monotonic() < deadline, s.log()
            time.sleep(0.1)
        for _ in range(4):
            assert httpx.post(s.url + "/v1/predict", data={"text": "seven"}).status_code == 200
        workers = worker_pids(s)
        baseline = {pid: rss_mb(pid) for pid in workers}
        peak = dict(baseline)

        def send(i: int) -> int:
            url = f"{s.url}/v1/models/{MODELS[i % len(MODELS)]}/predict"
            return httpx.post(url, files=cases[i % len(cases)], timeout=120).status_code

        with ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(send, i) for i in range(8)]
            while not all(f.done() for f in futures):
                peak = {pid: max(peak[pid], rss_mb(pid)) for pid in workers}
                time.sleep(0.05)
        assert [f.result() for f in futures] == [200] * 8
        time.sleep(1.0)
        after = {pid: rss_mb(pid) for pid in workers}
    print(f"\nRSS MB baseline {baseline}, peak {peak}, after {after}")
    assert max(peak[pid] - baseline[pid] for pid in workers) > 300, "the burst was not heavy"
    for pid in workers:
        assert after[pid] - baseline[pid] < GIVE_BACK_MB, (baseline, peak, after)
