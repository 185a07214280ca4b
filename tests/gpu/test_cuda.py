"""On a GPU: CUDA agrees with the CPU on every bundled model and modality subset, and the
service serves with ``CUDAExecutionProvider`` in use (with the GPU batch size).

Skipped elsewhere with the reason (``conftest.py``); ``scripts/gpu/run_on_device.sh`` runs
these on the device.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from scripts.gpu.parity import BATCH_SIZES, TOLERANCE, compare_model
from service.app import create_app
from service.manifest import load_manifest
from service.repository import scan
from service.settings import Runtime
from tests.gpu.conftest import CUDA_FIRST, MODELS
from tests.service.conftest import DEFAULT_MODEL, make_settings, multipart
from tools.bench.uploads import make_uploads


@pytest.mark.parametrize("folder", scan(MODELS), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_cuda_matches_cpu_for_every_modality_subset(folder: Path) -> None:
    result = compare_model(folder, Runtime(providers=CUDA_FIRST), make_uploads())
    assert result["providers_in_use"][0] == "CUDAExecutionProvider"
    every = len(load_manifest(folder).modality_order)
    assert len(result["cases"]) == len(BATCH_SIZES) * (2**every - 1)
    worst = max(result["cases"], key=lambda case: case["max"])
    assert result["max_abs_diff"] <= TOLERANCE, worst


def test_service_answers_on_cuda() -> None:
    uploads: dict[str, bytes | str] = {k: v for k, v in make_uploads().as_fields().items()}
    answers = {}
    for providers in (CUDA_FIRST, ["CPUExecutionProvider"]):
        settings = make_settings(MODELS, runtime={"providers": providers})
        with TestClient(create_app(settings)) as client:
            detail = client.get(f"/v1/models/{DEFAULT_MODEL}").json()
            response = client.post("/v1/predict", files=multipart(uploads))
        assert response.status_code == 200, response.text
        answers[providers[0]] = response.json()
        if providers == CUDA_FIRST:
            assert detail["execution"]["providers_in_use"][0] == "CUDAExecutionProvider"
            assert detail["execution"]["fallback_reason"] is None
            assert detail["execution"]["device_id"] == 0
            assert detail["batching"]["max_batch_size"] == 64  # batching.gpu_max_batch_size
    on_gpu, on_cpu = answers["CUDAExecutionProvider"], answers["CPUExecutionProvider"]
    for task, prediction in on_cpu["tasks"].items():
        assert on_gpu["tasks"][task]["label"] == prediction["label"]
        assert np.isclose(
            on_gpu["tasks"][task]["probability"], prediction["probability"], atol=TOLERANCE
        )
