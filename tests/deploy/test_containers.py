"""The image users run, built with the project's Dockerfile and run as the k8s pod runs it.

Built by ``scripts/containers.sh`` (podman, base images from Debian's packages), then run as
its non-root user on a read-only root filesystem with only /tmp writable. Every bundled model
must answer exactly as the app does in-process; a model exported with the documented
``python -m export byom`` command is served from a read-only mount; the HEALTHCHECK passes;
SIGTERM drains and the process exits 0. Skipped, with the reason, where podman cannot run.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import REPO_ROOT, Settings
from tests.deploy import podman
from tests.service import media

pytestmark = [pytest.mark.container, pytest.mark.slow]

MAX_IMAGE_BYTES = 450_000_000
# Measured 1.3-2.0 s on the 2-core build machine (docs/deployment.md); the bound leaves room
# for a busy CI machine while still catching a start-up that imports what it should not.
MAX_READY_S = 10.0
ATOL = 1e-6
# Never in the image: training and export stacks, and librosa's JIT chain (the service has
# librosa's mel formula in numpy).
ABSENT = ("torch", "transformers", "onnx", "librosa", "numba", "llvmlite", "sklearn", "pip")


def uploads() -> dict[str, tuple[str | None, bytes]]:
    wav = media.encode_audio(media.tone(), 16000, "WAV", "PCM_16")
    return {
        "image": ("digit.png", media.png()),
        "audio": ("tone.wav", wav),
        "text": (None, b"seven"),
    }


def in_process_answers(model_dir: Path, files: dict[str, Any]) -> dict[str, Any]:
    """Model name -> the app's own answer in this process (the reference for the image)."""
    answers = {}
    settings = Settings(model_dir=model_dir, allowed_hosts=["testserver"])
    with TestClient(create_app(settings)) as client:
        for model in client.get("/v1/models").json()["models"]:
            name = model["name"]
            response = client.post(f"/v1/models/{name}/predict", files=files)
            assert response.status_code == 200, response.text
            answers[name] = response.json()
    return answers


def assert_same_answer(got: dict[str, Any], want: dict[str, Any]) -> None:
    assert got["tasks"].keys() == want["tasks"].keys()
    for task, expected in want["tasks"].items():
        have = got["tasks"][task]
        assert have["label"] == expected["label"], task
        probs = {i["label"]: i["probability"] for i in have["top_k"]}
        for item in expected["top_k"]:
            assert probs[item["label"]] == pytest.approx(item["probability"], abs=ATOL), task


@pytest.fixture(scope="module")
def served(image: str) -> Iterator[tuple[podman.Container, float]]:
    start = time.monotonic()
    container = podman.run(image)
    try:
        podman.wait_ready(container)
        ready_s = time.monotonic() - start
        print(f"podman run -> /readyz 200 in {ready_s:.2f} s")
        yield container, ready_s
    finally:
        container.remove()


def test_image_is_small_and_holds_only_the_serving_runtime(image: str) -> None:
    size = int(podman.podman("image", "inspect", "--format", "{{.Size}}", image))
    print(f"image size {size / 1e6:.0f} MB")
    assert size <= MAX_IMAGE_BYTES
    probe = f"import importlib.util as u; print([m for m in {ABSENT!r} if u.find_spec(m)])"
    found = podman.podman("run", "--rm", "--network", "none", image, "python", "-c", probe)
    assert found == "[]"


def test_ready_quickly(served: tuple[podman.Container, float]) -> None:
    _, ready_s = served
    assert ready_s <= MAX_READY_S


def test_every_bundled_model_answers_as_in_process(
    served: tuple[podman.Container, float],
) -> None:
    container, _ = served
    files = uploads()
    reference = in_process_answers(REPO_ROOT / "onnx_models", files)
    listed = httpx.get(f"{container.url}/v1/models", timeout=10).json()["models"]
    assert sorted(m["name"] for m in listed) == sorted(reference) != []
    for name, want in reference.items():
        response = httpx.post(f"{container.url}/v1/models/{name}/predict", files=files, timeout=30)
        assert response.status_code == 200, response.text
        assert_same_answer(response.json(), want)


def test_runs_as_its_user_on_a_read_only_root(served: tuple[podman.Container, float]) -> None:
    container, _ = served
    assert podman.podman("exec", container.name, "id", "-u") == "10001"
    for path in ("/app/service/x", "/opt/venv/x", "/x"):
        denied = subprocess.run(
            ["podman", "exec", container.name, "touch", path],
            env=podman.environment(),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert denied.returncode != 0 and "Read-only file system" in denied.stderr, path
    podman.podman("exec", container.name, "touch", "/tmp/uploads-spill-here")


def test_healthcheck_passes_when_ready(served: tuple[podman.Container, float]) -> None:
    container, _ = served
    (inspected,) = json.loads(podman.podman("image", "inspect", podman.IMAGE))
    # Only the docker image format keeps HEALTHCHECK (scripts/containers.sh builds with it).
    assert inspected["Healthcheck"]["Test"] == ["CMD", "python", "-m", "service.healthcheck"]
    # Health checks run on a timer only under systemd; `healthcheck run` runs the same command.
    podman.podman("healthcheck", "run", container.name)


def test_sigterm_drains_in_flight_work_and_exits_0(image: str) -> None:
    container = podman.run(image, env={"MMSERVE_SHUTDOWN_GRACE_S": "0.5"})
    try:
        podman.wait_ready(container)
        results: list[int] = []

        def client() -> None:
            # Requests back to back, before, during and after the stop, until the closed
            # listener refuses one: that one was never accepted.
            with httpx.Client(timeout=30) as http:
                for _ in range(2000):
                    try:
                        response = http.post(f"{container.url}/v1/predict", files=uploads())
                        results.append(response.status_code)
                    except httpx.TransportError:
                        results.append(-1)
                        return

        thread = threading.Thread(target=client)
        thread.start()
        time.sleep(0.3)
        start = time.monotonic()
        podman.podman("stop", "--time", "40", container.name, timeout=60)
        stop_s = time.monotonic() - start
        thread.join(timeout=60)
        print(f"podman stop -> exited in {stop_s:.2f} s; {len(results) - 1} answered first")
        assert podman.exit_code(container.name) == 0, container.logs()
        # The load ran through the stop: it ended on a refusal, after only 200s.
        assert results[-1] == -1 and len(results) > 5, results
        assert set(results[:-1]) == {200}, results
        assert stop_s < 40  # drained, not killed at the stop timeout
    finally:
        container.remove()


@pytest.fixture(scope="module")
def byo_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model folder made by the documented command (docs/export.md), nothing else."""
    root = tmp_path_factory.mktemp("byo")
    out = root / "tiny-clip" / "1"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "export",
            "byom",
            "--factory",
            "export.examples.tiny_clip:tiny_clip",
            "--out",
            str(out),
        ],
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
        timeout=600,
    )
    # The container's user (10001) is not this test's: it must read what the export wrote.
    # pytest makes its folders 0700, and export/byom.py copies the tokenizer folder with
    # mkdtemp's mode 0700 (to be fixed there; then only the folders' own modes need this).
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            os.chmod(Path(dirpath) / name, 0o755)
        for name in filenames:
            path = Path(dirpath) / name
            os.chmod(path, path.stat().st_mode | stat.S_IRGRP | stat.S_IROTH)
    os.chmod(root, 0o755)
    return root


def test_byo_model_is_served_from_a_read_only_mount(image: str, byo_models: Path) -> None:
    files = {"image": ("digit.png", media.png()), "text": (None, b"a photo of the number seven")}
    (want,) = in_process_answers(byo_models, files).values()
    container = podman.run(
        image, volumes=[f"{byo_models}:/models:ro"], env={"MMSERVE_MODEL_DIR": "/models"}
    )
    try:
        podman.wait_ready(container)
        listed = httpx.get(f"{container.url}/v1/models", timeout=10).json()["models"]
        assert [m["name"] for m in listed] == ["tiny-clip"]
        response = httpx.post(
            f"{container.url}/v1/models/tiny-clip/predict", files=files, timeout=30
        )
        assert response.status_code == 200, response.text
        assert_same_answer(response.json(), want)
    finally:
        container.remove()


def test_the_image_needs_a_key_unless_open_access_is_asked_for(image: str) -> None:
    refused = subprocess.run(
        ["podman", "run", "--rm", "--network", "none", image],
        env=podman.environment(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert refused.returncode == 2, refused.stderr
    assert "no API key is set" in refused.stderr, refused.stderr
    key = "container-test-key-0123456789"
    container = podman.run(image, env={"MMSERVE_API_KEYS": f"ci={key}"}, anonymous=False)
    try:
        podman.wait_ready(container)
        files = {"text": (None, "seven")}
        url = f"{container.url}/v1/predict"
        assert httpx.post(url, files=files, timeout=30).status_code == 401
        answer = httpx.post(url, files=files, headers={"X-API-Key": key}, timeout=30)
        assert answer.status_code == 200, answer.text
    finally:
        container.remove()
