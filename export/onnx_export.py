"""One fused ONNX graph per model, the ORT-vs-PyTorch parity check, the int8 variant.

The graph is exported with the TorchScript-based exporter (``dynamo=False``): it handles the
``transformers`` BERT cleanly with a dynamic batch and token axis (the dynamo exporter names
an internal node ``embedding`` and collides with our output name). Opset 17.

Parity runs real test rows through both PyTorch and ONNX Runtime for batch sizes 1 and 8
and every non-empty modality subset (14 cases) and records the largest absolute difference
over all outputs. The batch-invariance check runs each row alone and inside a mixed batch
(other subsets, longer padding) and records the largest difference; the service relies on
both being tiny.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from export.dataset import SUBSETS, Pools, Rows, assemble
from export.evaluate import Runner, ort_runner, torch_runner

OPSET = 17
INPUT_NAMES = ["image", "audio", "input_ids", "attention_mask", "presence"]
OUTPUT_NAMES = ["digit_probs", "consistent_probs", "contributions", "embedding"]
DYNAMIC_AXES: dict[str, dict[int, str]] = {
    "image": {0: "batch"},
    "audio": {0: "batch"},
    "input_ids": {0: "batch", 1: "tokens"},
    "attention_mask": {0: "batch", 1: "tokens"},
    "presence": {0: "batch"},
    **{name: {0: "batch"} for name in OUTPUT_NAMES},
}


def export_graph(
    model: nn.Module,
    example: dict[str, np.ndarray],
    path: Path,
    *,
    input_names: list[str] | None = None,
    output_names: list[str] | None = None,
    dynamic_axes: dict[str, dict[int, str]] | None = None,
    opset: int = OPSET,
) -> Path:
    """Export ``model`` (eval mode) called with ``example`` (ordered as ``input_names``)."""
    import warnings

    input_names = input_names or list(example)
    model.eval()
    args = tuple(torch.from_numpy(example[n]) for n in input_names)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python-side shape maths
        torch.onnx.export(
            model,
            args,
            str(path),
            input_names=input_names,
            output_names=output_names or OUTPUT_NAMES,
            dynamic_axes=dynamic_axes if dynamic_axes is not None else DYNAMIC_AXES,
            opset_version=opset,
            dynamo=False,
            do_constant_folding=True,
        )
    import onnx

    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    return path


def max_abs_diff(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    return max(float(np.max(np.abs(a[k].astype(np.float64) - b[k]))) for k in a)


def parity(model: nn.Module, path: Path, pools: Pools, rows: Rows) -> tuple[float, int]:
    """Max |ORT - PyTorch| over batch sizes 1 and 8 x every modality subset; (diff, cases)."""
    ort_run, torch_run = ort_runner(path), torch_runner(model)
    worst, cases = 0.0, 0
    for batch in (1, 8):
        for presence in SUBSETS:
            pres = np.tile(np.asarray(presence, dtype=np.float32), (batch, 1))
            inputs = assemble(pools, rows.index[:batch], pres)
            worst = max(worst, max_abs_diff(ort_run(inputs), torch_run(inputs)))
            cases += 1
    return worst, cases


def batch_invariance(run: Runner, pools: Pools, rows: Rows, n: int = 14) -> float:
    """Max difference between each row run alone and the same row inside a batch that mixes
    every subset (so text padding and absent modalities vary around it)."""
    presence = np.asarray([SUBSETS[i % len(SUBSETS)] for i in range(n)], dtype=np.float32)
    together = run(assemble(pools, rows.index[:n], presence))
    worst = 0.0
    for i in range(n):
        alone = run(assemble(pools, rows.index[i : i + 1], presence[i : i + 1]))
        worst = max(worst, max_abs_diff({k: v[i : i + 1] for k, v in together.items()}, alone))
    return worst


def quantize_int8(src: Path, dst: Path) -> Path:
    """Dynamic int8 quantisation of weights (MatMul/Gemm; activations quantised at run time)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(src), str(dst), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"]
    )
    return dst
