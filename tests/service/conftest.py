"""Fixtures that build real things: the app with its lifespan over the committed models.

``client`` serves ``onnx_models/`` (the committed, trained models) through the real app, lifespan
included. Where the trained models are not committed yet, a model with random weights and the
same contract (``tiny_model.py``) stands in under the name ``digits-xattn``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.features.audio import audio_features
from service.features.image import image_features
from service.features.text import encode_text, load_tokenizer
from service.manifest import AudioRecipe, ImageRecipe, Manifest, TextRecipe, load_manifest
from service.settings import LOOPBACK_NAMES, REPO_ROOT, Settings
from tests.service import media
from tests.service.tiny_model import build_tiny_model

DEFAULT_MODEL = "digits-xattn"
TEST_CLIENT_HOST = "testserver"
COMMITTED = REPO_ROOT / "onnx_models"


@pytest.fixture(scope="session")
def model_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if (COMMITTED / DEFAULT_MODEL / "1" / "manifest.json").is_file():
        return COMMITTED
    root = tmp_path_factory.mktemp("models")
    build_tiny_model(root, DEFAULT_MODEL)
    return root


@pytest.fixture(scope="session")
def model_folder(model_root: Path) -> Path:
    versions = sorted((model_root / DEFAULT_MODEL).iterdir())
    return versions[-1]


def make_settings(model_dir: Path, **overrides: object) -> Settings:
    # One worker process: the machine's cores are shared with other test runs. Two batch
    # threads per model (the default is one), so these apps also run batches side by side.
    base: dict[str, object] = {
        "model_dir": model_dir,
        "workers": 1,
        "runtime": {"feature_threads": 2, "providers": ["CPUExecutionProvider"]},
        # TestClient sends "Host: testserver"; real servers in tests are reached on loopback.
        "allowed_hosts": [TEST_CLIENT_HOST, *LOOPBACK_NAMES],
    }
    return Settings.model_validate(base | overrides)


@pytest.fixture(scope="session")
def client(model_root: Path) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(model_root))) as test_client:
        yield test_client


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def serve_subprocess(
    model_root: Path, env: Mapping[str, str] | None = None, workers: int = 1
) -> Iterator[str]:
    """``python -m service serve`` in a subprocess on a free port; yields its base URL."""
    port = _free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MMSERVE_")}
    command = [
        sys.executable, "-m", "service", "serve",
        "--port", str(port), "--workers", str(workers),
        "--model-dir", str(model_root), "--log-level", "warning",
    ]  # fmt: skip
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=clean | dict(env or {}))
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


@pytest.fixture(scope="session")
def server(model_root: Path) -> Iterator[str]:
    """The service in a subprocess with default settings, one worker."""
    with serve_subprocess(model_root) as base:
        yield base


class DirectModel:
    """The model run by ONNX Runtime directly, on features computed by the feature functions."""

    def __init__(self, folder: Path) -> None:
        self.manifest: Manifest = load_manifest(folder)
        self.session = ort.InferenceSession(
            str(folder / self.manifest.model_file), providers=["CPUExecutionProvider"]
        )
        text = self.manifest.modalities.text
        self.tokenizer = load_tokenizer(folder / text.tokenizer_dir) if text else None

    def feeds(self, uploads: Mapping[str, bytes | str]) -> dict[str, np.ndarray]:
        manifest = self.manifest
        feeds: dict[str, np.ndarray] = {}
        presence = np.zeros((1, len(manifest.modality_order)), dtype=np.float32)
        for j, modality in enumerate(manifest.modality_order):
            recipe = manifest.recipe(modality)
            value = uploads.get(modality)
            presence[0, j] = value is not None
            if isinstance(recipe, TextRecipe):
                assert self.tokenizer is not None
                if isinstance(value, str):
                    ids, mask = encode_text(value, self.tokenizer, recipe)
                else:  # absent text: one pad token, mask 1 (see service/manifest.py)
                    ids, mask = np.zeros(1, np.int64), np.ones(1, np.int64)
                feeds[recipe.input_ids], feeds[recipe.attention_mask] = ids[None], mask[None]
                continue
            shape = [int(d) for d in manifest.input_spec(recipe.input).shape[1:]]
            array = np.zeros(shape, dtype=np.float32)
            if isinstance(value, bytes) and isinstance(recipe, ImageRecipe):
                array = image_features(value, recipe, max_pixels=40_000_000)
            elif isinstance(value, bytes) and isinstance(recipe, AudioRecipe):
                array = audio_features(value, recipe, max_seconds=30.0)
            feeds[recipe.input] = array[None]
        feeds[manifest.presence_input] = presence
        return feeds

    def run(self, uploads: Mapping[str, bytes | str]) -> dict[str, np.ndarray]:
        names = [o.name for o in self.session.get_outputs()]
        results = self.session.run(names, self.feeds(uploads))
        return {name: value[0] for name, value in zip(names, results, strict=True)}


@pytest.fixture(scope="session")
def direct(model_folder: Path) -> DirectModel:
    return DirectModel(model_folder)


@pytest.fixture(scope="session")
def speech_seven(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    wav = media.speak("seven", tmp_path_factory.mktemp("speech"))
    if wav is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng) to speak test audio")
    return wav


def multipart(uploads: Mapping[str, bytes | str]) -> list[tuple[str, tuple[str | None, bytes]]]:
    """``uploads`` as TestClient ``files=``: text as a plain field, bytes as named files."""
    return [
        (name, (None, value.encode()) if isinstance(value, str) else (f"{name}.bin", value))
        for name, value in uploads.items()
    ]
