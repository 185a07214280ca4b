"""Which ONNX Runtime execution providers a session asks for, and what it really got.

ONNX Runtime does not fail when the CUDA provider cannot start (no driver, a missing
``libcudnn.so.9``, a CPU-only wheel): it logs a line and runs the whole graph on the CPU. So a
session's providers are checked *after* it is created, and the difference is reported:

- ``auto`` (the default) asks for every accelerator of this build, in preference order, then
  the CPU; when none is in the build or none started, the model serves on the CPU and the
  reason is kept (``GET /v1/models/{m}`` → ``execution.fallback_reason``) and logged once per
  process;
- an explicit list is a requirement: a named provider missing from the build, or one that did
  not start, fails that model's load with the reason (``/readyz`` and ``GET /v1/models``
  ``failed[]`` name it). Whoever names ``CUDAExecutionProvider`` wants the GPU or nothing.
"""

from __future__ import annotations

import ctypes
import functools
import logging
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import onnxruntime as ort

from service.settings import Cuda, Runtime

log = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
# Most capable first; "auto" picks the available ones in this order (CPU always last).
_PREFERENCE = (
    "TensorrtExecutionProvider",
    CUDA,
    "ROCMExecutionProvider",
    "CoreMLExecutionProvider",
    "DmlExecutionProvider",
    CPU,
)
# TensorRT compiles engines per shape on first use: minutes, so "auto" does not pick it.
# Azure is a remote-call provider that every wheel lists; it runs no graph nodes.
_AUTO_SKIP = {"TensorrtExecutionProvider", "AzureExecutionProvider"}
GPU_PROVIDERS = frozenset({"TensorrtExecutionProvider", CUDA, "ROCMExecutionProvider"})
INSTALL_HINT = "install the GPU build: pip install 'mmserve[gpu]' (docs/gpu.md)"

ProviderSpec = str | tuple[str, dict[str, Any]]


class ProviderUnavailable(RuntimeError):
    """An explicitly requested execution provider is not in this build or did not start."""


@dataclass(frozen=True)
class ExecutionInfo:
    """What was asked for and what a session got; the ``execution`` of ``/v1/models/{m}``."""

    providers_requested: list[str]
    providers_in_use: list[str]
    fallback_reason: str | None = None
    device_id: int | None = None

    @property
    def on_gpu(self) -> bool:
        return any(p in GPU_PROVIDERS for p in self.providers_in_use)


@dataclass(frozen=True)
class ProviderPlan:
    """The providers to hand ONNX Runtime, or why there is nothing better than the CPU."""

    requested: list[str]
    providers: list[ProviderSpec]
    auto: bool
    reason: str | None = None  # set when auto found no accelerator in this build

    @property
    def names(self) -> list[str]:
        return [p if isinstance(p, str) else p[0] for p in self.providers]


def cuda_provider_options(cuda: Cuda) -> dict[str, Any]:
    """The settings' CUDA section as ONNX Runtime's CUDA provider options (strings and ints)."""
    options: dict[str, Any] = {
        "device_id": cuda.device_id,
        "arena_extend_strategy": cuda.arena_extend_strategy,
        "cudnn_conv_algo_search": cuda.cudnn_conv_algo_search,
        "do_copy_in_default_stream": int(cuda.do_copy_in_default_stream),
        "use_tf32": int(cuda.use_tf32),
    }
    if cuda.gpu_mem_limit_bytes is not None:
        options["gpu_mem_limit"] = cuda.gpu_mem_limit_bytes
    return options


def _with_options(name: str, runtime: Runtime) -> ProviderSpec:
    return (name, cuda_provider_options(runtime.cuda)) if name == CUDA else name


def plan_providers(runtime: Runtime, available: list[str] | None = None) -> ProviderPlan:
    """Turn ``runtime.providers`` into the list for ONNX Runtime (raises for explicit misses)."""
    warn_if_both_builds()
    available = ort.get_available_providers() if available is None else available
    requested = list(runtime.providers) or ["auto"]
    if requested == ["auto"]:
        chosen = [p for p in _PREFERENCE if p in available and p not in _AUTO_SKIP and p != CPU]
        reason = None
        if not chosen:
            reason = (
                f"no GPU execution provider in this onnxruntime build ({build_description()}; "
                f"available: {', '.join(available)}); {INSTALL_HINT}"
            )
        specs = [_with_options(p, runtime) for p in chosen] + [CPU]
        return ProviderPlan(requested, specs, auto=True, reason=reason)
    missing = [p for p in requested if p not in available]
    if missing:
        hint = f"; {INSTALL_HINT}" if any(p in GPU_PROVIDERS for p in missing) else ""
        raise ProviderUnavailable(
            f"execution provider(s) {', '.join(missing)} not in this onnxruntime build "
            f"({build_description()}; available: {', '.join(available)}){hint}"
        )
    return ProviderPlan(requested, [_with_options(p, runtime) for p in requested], auto=False)


def build_description() -> str:
    """``onnxruntime-gpu 1.31.1`` or ``onnxruntime 1.32.0``: the distribution(s) behind the module.

    ``onnxruntime`` and ``onnxruntime-gpu`` install the same ``onnxruntime`` package; with both
    installed, whichever was installed last owns the files, so both names are reported.
    """
    names = installed_distributions()
    found = ", ".join(f"{name} {version}" for name, version in names.items())
    return found or f"onnxruntime {ort.__version__}"


def installed_distributions() -> dict[str, str]:
    found: dict[str, str] = {}
    for name in ("onnxruntime", "onnxruntime-gpu"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


@functools.cache
def warn_if_both_builds() -> None:
    if len(installed_distributions()) > 1:
        log.warning(
            "both onnxruntime and onnxruntime-gpu are installed: they share the onnxruntime "
            "package, and the one in use is %s from %s; keep one (docs/gpu.md)",
            ort.__version__,
            Path(ort.__file__).parent,
        )


@functools.cache
def preload_cuda_libraries() -> None:
    """Load the CUDA and cuDNN libraries of the ``nvidia-*`` wheels (e.g. torch's) once.

    ``onnxruntime.preload_dlls`` (1.21+) finds them in site-packages, which the dynamic
    loader does not search; without it the CUDA provider fails to start and ONNX Runtime
    silently runs on the CPU. On a CPU build it does nothing.
    """
    preload = getattr(ort, "preload_dlls", None)
    if preload is None:
        return
    try:
        preload()
    except Exception as exc:  # a broken nvidia wheel must not stop a CPU fallback
        log.warning("onnxruntime.preload_dlls failed: %s", exc)


def first_load_error(libraries: list[str]) -> str | None:
    """The dynamic loader's message for the first library that does not load, else None."""
    for library in libraries:
        try:
            ctypes.CDLL(library)
        except OSError as exc:
            return str(exc)
    return None


def diagnose_cuda() -> str:
    """Why the CUDA provider did not start, as precisely as the dynamic loader can say."""
    problems = []
    if (driver := first_load_error(["libcuda.so.1"])) is not None:
        problems.append(f"no NVIDIA driver ({driver})")
    # Loading the provider's own library names the first CUDA/cuDNN library it cannot find.
    capi = Path(ort.__file__).parent / "capi"
    cuda = capi / "libonnxruntime_providers_cuda.so"
    if cuda.is_file():
        try:
            ctypes.CDLL(str(capi / "libonnxruntime_providers_shared.so"), mode=ctypes.RTLD_GLOBAL)
        except OSError:
            pass  # the next load names the problem
        if (library := first_load_error([str(cuda)])) is not None:
            problems.append(
                f"the CUDA provider's libraries do not load ({library}; the CUDA 13 and cuDNN 9 "
                "wheels come with pip install 'mmserve[gpu]')"
            )
    if not problems:
        return "the CUDA provider did not start (its libraries load; see onnxruntime's log)"
    return "; ".join(problems) + " (docs/gpu.md)"


def fallback_reason(plan: ProviderPlan, in_use: list[str]) -> str | None:
    """Why a session runs without an accelerator it asked for; None when it got them all."""
    if plan.reason is not None:
        return plan.reason
    lost = [p for p in plan.names if p not in in_use]
    if not lost:
        return None
    why = diagnose_cuda() if CUDA in lost else "it did not start (see onnxruntime's log above)"
    return f"{', '.join(lost)} requested but not in use: {why}"


@functools.cache
def log_once(reason: str, *, lost: bool) -> None:
    """One log line per distinct reason and process, not one per model.

    A warning when an accelerator of this build did not start; information only when the
    build has none (every CPU deployment would otherwise start with a warning).
    """
    log.log(logging.WARNING if lost else logging.INFO, "serving on the CPU: %s", reason)


def check(plan: ProviderPlan, in_use: list[str], runtime: Runtime) -> ExecutionInfo:
    """The session's :class:`ExecutionInfo`; raises when an explicit request was not met."""
    reason = fallback_reason(plan, in_use)
    if reason is not None and not plan.auto:
        raise ProviderUnavailable(reason)
    if reason is not None:
        log_once(reason, lost=plan.reason is None)
    device = runtime.cuda.device_id if CUDA in in_use else None
    return ExecutionInfo(plan.requested, list(in_use), reason, device)
