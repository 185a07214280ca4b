"""ONNX Runtime sessions: thread pools, the providers they got, and error translation.

Which providers to ask for, and what to do when ONNX Runtime quietly drops one, is
:mod:`service.runtime.providers`; :meth:`ModelSession.open` applies it. One session per model
and worker process: the worker's batch thread(s) share it (``InferenceSession.run`` is
thread-safe), on the CPU and on the GPU alike.

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
from service.runtime import providers as ep
from service.settings import Runtime


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
        providers: list[ep.ProviderSpec],
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
        names = [p if isinstance(p, str) else p[0] for p in providers]
        self.execution = ep.ExecutionInfo(names, self.providers_in_use)
        self.output_names = [o.name for o in self._session.get_outputs()]

    @classmethod
    def open(cls, path: Path, runtime: Runtime) -> ModelSession:
        """The session the settings ask for: see :mod:`service.runtime.providers`.

        Raises :class:`~service.runtime.providers.ProviderUnavailable` when an explicitly
        named provider is not in this build or did not start.
        """
        plan = ep.plan_providers(runtime)
        if ep.CUDA in plan.names:
            ep.preload_cuda_libraries()
        session = cls(
            path,
            providers=plan.providers,
            intra_op_threads=runtime.intra_op_threads,
            inter_op_threads=runtime.inter_op_threads,
        )
        session.execution = ep.check(plan, session.providers_in_use, runtime)
        return session

    @property
    def on_gpu(self) -> bool:
        return self.execution.on_gpu

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
