"""Execution providers: ``auto``'s fallback, explicit requests, the CUDA settings.

These run on any machine. On a CPU-only onnxruntime build (CI), ``auto`` must serve on the
CPU and say why; a request naming CUDA must fail that model's load with the reason. The GPU
side is ``tests/gpu/`` (marker ``gpu``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import onnxruntime as ort
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from service.app import create_app
from service.manifest import load_manifest
from service.runtime import providers as ep
from service.runtime.session import ModelSession
from service.settings import Runtime, Settings
from tests.service.conftest import DEFAULT_MODEL, make_settings, multipart

CPU_ONLY_BUILD = not any(p in ep.GPU_PROVIDERS for p in ort.get_available_providers())
cpu_only_build = pytest.mark.skipif(
    not CPU_ONLY_BUILD, reason="this onnxruntime has a GPU provider (tests/gpu covers it)"
)


def _one_model(model_folder: Path, tmp_path: Path) -> Path:
    """A repository holding only the default model (a symlink: nothing copied)."""
    root = tmp_path / "models"
    (root / DEFAULT_MODEL).mkdir(parents=True)
    (root / DEFAULT_MODEL / model_folder.name).symlink_to(model_folder)
    return root


@cpu_only_build
def test_auto_on_a_cpu_build_serves_on_cpu_and_says_why(
    model_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ep.log_once.cache_clear()
    settings = make_settings(model_root, runtime={"providers": ["auto"]})
    with caplog.at_level(logging.INFO, logger=ep.log.name):
        with TestClient(create_app(settings)) as client:
            body = client.get(f"/v1/models/{DEFAULT_MODEL}").json()
            answer = client.post("/v1/predict", files=multipart({"text": "seven"}))
    execution = body["execution"]
    assert execution["providers_requested"] == ["auto"]
    assert execution["providers_in_use"] == ["CPUExecutionProvider"]
    assert "no GPU execution provider in this onnxruntime build" in execution["fallback_reason"]
    assert "mmserve[gpu]" in execution["fallback_reason"]
    assert execution["device_id"] is None
    assert execution["onnxruntime"].startswith("onnxruntime ")
    assert body["execution_providers"] == ["CPUExecutionProvider"]
    assert answer.status_code == 200
    # Every model fell back for the same reason: one log line, not one per model.
    lines = [r for r in caplog.records if "serving on the CPU" in r.getMessage()]
    assert len(lines) == 1 and lines[0].levelno == logging.INFO
    assert len(load_manifest_names(model_root)) > 1


def load_manifest_names(root: Path) -> list[str]:
    return [p.name for p in root.iterdir() if p.is_dir()]


def test_explicit_cpu_has_no_fallback_reason(model_folder: Path) -> None:
    manifest = load_manifest(model_folder)
    runtime = Runtime(providers=["CPUExecutionProvider"])
    session = ModelSession.open(model_folder / manifest.model_file, runtime)
    assert session.execution.providers_in_use == ["CPUExecutionProvider"]
    assert session.execution.fallback_reason is None
    assert not session.on_gpu


@cpu_only_build
def test_explicit_cuda_that_is_missing_fails_the_load_with_the_reason(
    model_folder: Path, tmp_path: Path
) -> None:
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    settings = make_settings(
        _one_model(model_folder, tmp_path),
        runtime={"providers": providers},
        default_model=DEFAULT_MODEL,
    )
    with TestClient(create_app(settings)) as client:
        ready = client.get("/readyz")
        failed = client.get("/v1/models").json()["failed"]
        predict = client.post("/v1/predict", files=multipart({"text": "seven"}))
    assert ready.status_code == 503
    assert "CUDAExecutionProvider not in this onnxruntime build" in ready.text
    assert [f["name"] for f in failed] == [DEFAULT_MODEL]
    assert "mmserve[gpu]" in failed[0]["reason"]
    assert predict.status_code == 503
    assert "CUDAExecutionProvider" in predict.json()["error"]["message"]


def test_auto_asks_for_cuda_with_its_options_when_the_build_has_it() -> None:
    runtime = Runtime.model_validate({"cuda": {"device_id": 1, "gpu_mem_limit_bytes": 2**30}})
    available = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    plan = ep.plan_providers(runtime, available)
    assert plan.names == ["CUDAExecutionProvider", "CPUExecutionProvider"]  # no TensorRT
    assert plan.providers[0] == (
        "CUDAExecutionProvider",
        {
            "device_id": 1,
            "arena_extend_strategy": "kNextPowerOfTwo",
            "cudnn_conv_algo_search": "EXHAUSTIVE",
            "do_copy_in_default_stream": 1,
            "use_tf32": 1,
            "gpu_mem_limit": 2**30,
        },
    )
    assert plan.reason is None


def test_a_cuda_provider_that_did_not_start_is_a_fallback_or_an_error() -> None:
    """ONNX Runtime's silent fallback, as ``get_providers()`` reports it after creation."""
    available = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    auto = ep.plan_providers(Runtime(), available)
    info = ep.check(auto, ["CPUExecutionProvider"], Runtime())
    assert info.fallback_reason is not None
    assert info.fallback_reason.startswith("CUDAExecutionProvider requested but not in use")
    assert info.providers_in_use == ["CPUExecutionProvider"] and not info.on_gpu
    explicit = Runtime(providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    with pytest.raises(ep.ProviderUnavailable, match="CUDAExecutionProvider requested"):
        ep.check(ep.plan_providers(explicit, available), ["CPUExecutionProvider"], explicit)
    started = ep.check(auto, ["CUDAExecutionProvider", "CPUExecutionProvider"], Runtime())
    assert started.fallback_reason is None and started.on_gpu and started.device_id == 0


@cpu_only_build
def test_the_diagnosis_names_what_the_loader_could_not_find() -> None:
    # No GPU build here: the provider library is absent, so the driver or nothing is named.
    reason = ep.diagnose_cuda()
    assert reason.startswith(("no NVIDIA driver (libcuda.so.1", "the CUDA provider did not"))
    assert ep.first_load_error(["libmmserve-does-not-exist.so.1"]) is not None
    assert ep.first_load_error([]) is None


@pytest.mark.skipif(CPU_ONLY_BUILD, reason="needs onnxruntime-gpu (pip install 'mmserve[gpu]')")
def test_a_gpu_build_whose_cuda_does_not_start_falls_back_with_the_loader_reason(
    model_folder: Path,
) -> None:
    """onnxruntime-gpu on a machine without a driver or CUDA libraries: ONNX Runtime runs on
    the CPU without an error; the service notices and asks the dynamic loader why."""
    manifest = load_manifest(model_folder)
    session = ModelSession.open(model_folder / manifest.model_file, Runtime())
    if session.on_gpu:
        pytest.skip("CUDA starts on this machine (tests/gpu covers it)")
    reason = session.execution.fallback_reason
    assert reason is not None
    assert reason.startswith("CUDAExecutionProvider requested but not in use: ")
    assert "cannot open shared object file" in reason or "did not start" in reason
    explicit = Runtime(providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    with pytest.raises(ep.ProviderUnavailable, match="requested but not in use"):
        ModelSession.open(model_folder / manifest.model_file, explicit)


def test_gpu_batch_size_applies_only_on_a_gpu(model_folder: Path) -> None:
    manifest = load_manifest(model_folder).batching
    defaults = Settings(model_dir=model_folder).batching
    assert defaults.for_model(manifest, on_gpu=True).max_batch_size == 64
    assert defaults.for_model(manifest, on_gpu=False).max_batch_size == manifest.max_batch_size
    explicit = Settings.model_validate({"batching": {"max_batch_size": 8}}).batching
    assert explicit.for_model(manifest, on_gpu=True).max_batch_size == 8
    manifest_only = Settings.model_validate({"batching": {"gpu_max_batch_size": None}}).batching
    assert manifest_only.for_model(manifest, on_gpu=True).max_batch_size == manifest.max_batch_size


def test_overrides_keep_the_manifest_wait_unless_set(model_folder: Path) -> None:
    manifest = load_manifest(model_folder).batching
    kept = Settings(model_dir=model_folder).batching.for_model(manifest, on_gpu=False)
    assert kept.max_wait_ms == manifest.max_wait_ms
    zero = Settings.model_validate({"batching": {"max_wait_ms": 0, "max_queue": 7}}).batching
    overridden = zero.for_model(manifest, on_gpu=False)
    assert (overridden.max_wait_ms, overridden.max_queue) == (0, 7)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("auto,CPUExecutionProvider", "'auto' cannot be combined"),
        ("cuda", "unknown provider name"),
        ("CPUExecutionProvider,CPUExecutionProvider", "named twice"),
    ],
)
def test_provider_names_are_validated(
    monkeypatch: pytest.MonkeyPatch, value: str, message: str
) -> None:
    monkeypatch.setenv("MMSERVE_RUNTIME__PROVIDERS", value)
    with pytest.raises(ValidationError, match=message):
        Settings()


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("MMSERVE_RUNTIME__CUDA__DEVICE_ID", "-1"),
        ("MMSERVE_RUNTIME__CUDA__GPU_MEM_LIMIT_BYTES", "0"),
        ("MMSERVE_RUNTIME__CUDA__ARENA_EXTEND_STRATEGY", "kSometimes"),
        ("MMSERVE_RUNTIME__CUDA__CUDNN_CONV_ALGO_SEARCH", "FAST"),
        ("MMSERVE_BATCHING__GPU_MAX_BATCH_SIZE", "0"),
    ],
)
def test_cuda_settings_are_validated(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError, match=variable.split("__")[-1].lower()):
        Settings()


def test_cuda_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MMSERVE_RUNTIME__PROVIDERS", "CUDAExecutionProvider,CPUExecutionProvider")
    monkeypatch.setenv("MMSERVE_RUNTIME__CUDA__DEVICE_ID", "2")
    monkeypatch.setenv("MMSERVE_RUNTIME__CUDA__CUDNN_CONV_ALGO_SEARCH", "HEURISTIC")
    monkeypatch.setenv("MMSERVE_RUNTIME__CUDA__USE_TF32", "false")
    monkeypatch.setenv("MMSERVE_BATCHING__GPU_MAX_BATCH_SIZE", "128")
    settings = Settings()
    options = ep.cuda_provider_options(settings.runtime.cuda)
    assert settings.runtime.providers == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert options["device_id"] == 2 and options["cudnn_conv_algo_search"] == "HEURISTIC"
    assert options["use_tf32"] == 0 and "gpu_mem_limit" not in options
    assert settings.batching.gpu_max_batch_size == 128
