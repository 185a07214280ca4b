"""GPU tests: marked ``gpu`` and skipped, with the reason, where CUDA does not really start.

"Available" is not enough: ``onnxruntime-gpu`` lists ``CUDAExecutionProvider`` on a machine
without a driver and then runs on the CPU. So the check opens a session on a bundled model
and looks at the providers it got (``service.runtime.providers`` explains the fallback).
"""

from __future__ import annotations

import functools
from pathlib import Path

import onnxruntime as ort
import pytest

from service.manifest import load_manifest
from service.runtime import providers as ep
from service.runtime.session import ModelSession
from service.settings import REPO_ROOT, Runtime

CUDA_FIRST = ["CUDAExecutionProvider", "CPUExecutionProvider"]
MODELS = REPO_ROOT / "onnx_models"


@functools.cache
def cuda_problem() -> str | None:
    """Why CUDA cannot run here, or None when a session really gets it."""
    if ep.CUDA not in ort.get_available_providers():
        return f"no CUDAExecutionProvider in this onnxruntime build ({ep.build_description()})"
    folder = next(MODELS.glob("*/*/manifest.json")).parent
    try:
        ModelSession.open(folder / load_manifest(folder).model_file, Runtime(providers=CUDA_FIRST))
    except ep.ProviderUnavailable as exc:
        return str(exc)
    return None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).parent == Path(__file__).parent:
            item.add_marker(pytest.mark.gpu)
            if (problem := cuda_problem()) is not None:
                item.add_marker(pytest.mark.skip(reason=f"CUDA unavailable: {problem}"))
