"""ONNX Runtime sessions: provider choice, thread pools, and error translation.

Thread pools are set deliberately. The service runs one worker process per core, each doing
its own decoding and features in threads; ONNX Runtime's default intra-op pool (one thread per
core, spinning between runs) would then fight those threads and the other workers for the same
cores. So by default each session gets one intra-op and one inter-op thread and no spinning.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from service.errors import InferenceFailed

# Most capable first; "auto" picks the available ones in this order (CPU always last).
_PREFERENCE = (
    "TensorrtExecutionProvider",
    "CUDAExecutionProvider",
    "ROCMExecutionProvider",
    "CoreMLExecutionProvider",
    "DmlExecutionProvider",
    "CPUExecutionProvider",
)
# TensorRT compiles engines per shape on first use: minutes, so "auto" does not pick it.
_AUTO_SKIP = {"TensorrtExecutionProvider"}


def resolve_providers(requested: list[str]) -> list[str]:
    """Turn the settings' provider list into the list to hand ONNX Runtime.

    ``["auto"]`` means every available accelerator in preference order, then CPU. Explicit
    names must be available in this onnxruntime build, else ValueError names the missing one.
    """
    available = ort.get_available_providers()
    if not requested or requested == ["auto"]:
        chosen = [p for p in _PREFERENCE if p in available and p not in _AUTO_SKIP]
        return chosen or ["CPUExecutionProvider"]
    missing = [p for p in requested if p not in available]
    if missing:
        raise ValueError(
            f"execution provider(s) {missing} not available in this onnxruntime build; "
            f"available: {available}"
        )
    return list(requested)


def session_options(intra_op_threads: int, inter_op_threads: int) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = inter_op_threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Spinning threads burn the core the event loop and the batch threads need.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return options


class ModelSession:
    """One loaded ``model.onnx`` with the providers it actually got."""

    def __init__(
        self,
        path: Path,
        *,
        providers: list[str],
        intra_op_threads: int = 1,
        inter_op_threads: int = 1,
    ) -> None:
        self.path = path
        self._session = ort.InferenceSession(
            str(path),
            sess_options=session_options(intra_op_threads, inter_op_threads),
            providers=providers,
        )
        self.providers_in_use: list[str] = list(self._session.get_providers())
        self.input_names = [i.name for i in self._session.get_inputs()]
        self.output_names = [o.name for o in self._session.get_outputs()]

    def run(
        self, feeds: dict[str, np.ndarray], output_names: list[str] | None = None
    ) -> dict[str, np.ndarray]:
        names = output_names or self.output_names
        try:
            results = self._session.run(names, feeds)
        except (
            Exception
        ) as exc:  # onnxruntime raises its own pybind types (Fail, InvalidArgument...)
            raise InferenceFailed(f"ONNX Runtime failed: {exc}") from exc
        return dict(zip(names, results, strict=True))
