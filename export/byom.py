"""Bring your own model: any ``torch.nn.Module`` -> a servable ``onnx_models/<name>/<version>``.

Steps (``export_model``):

1. put the module in eval mode and run it on ``example_inputs`` (a dict, in the order of the
   module's ``forward`` arguments);
2. export one ONNX graph (TorchScript exporter, opset 17) with a dynamic ``batch`` axis on
   every input and output, plus a dynamic ``tokens`` axis on 2-D int64 inputs;
3. check ONNX Runtime against PyTorch on the example batch and on its first row alone
   (and on ``parity_inputs`` if given): the largest absolute difference must be at most
   ``tolerance`` (default 1e-4), else ``ParityError``;
4. copy side files (e.g. the tokenizer folder) and write ``manifest.json``: graph inputs and
   outputs are read from the exported graph, everything else comes from ``manifest_fields``
   (name, version, modality_order, presence_input, modalities recipes, tasks, ...), and the
   result is validated by ``service.manifest.Manifest``.

The module must return a tensor or a tuple of tensors, in the order of ``output_names``.
The service feeds absent modalities as zeros (text: one pad token, mask 1) and a presence
vector; a module that should answer from any subset of modalities must mask with it.

Command line: ``python -m export byom --factory pkg.module:function --out DIR`` where the
function returns a :class:`ByomSpec` (see ``export/examples/tiny_clip.py``).
"""

from __future__ import annotations

import importlib
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from export.build import library_versions
from export.evaluate import ort_runner
from export.onnx_export import OPSET, export_graph, max_abs_diff
from service.manifest import MANIFEST_FILENAME, Manifest, TensorSpec, write_manifest

_ONNX_DTYPES: dict[int, str] = {
    onnx.TensorProto.FLOAT: "float32",
    onnx.TensorProto.FLOAT16: "float16",
    onnx.TensorProto.INT64: "int64",
    onnx.TensorProto.INT32: "int32",
    onnx.TensorProto.BOOL: "bool",
}


class ParityError(RuntimeError):
    """ONNX Runtime disagrees with PyTorch by more than the tolerance."""


@dataclass
class ByomSpec:
    """Everything ``export_model`` needs; what a ``--factory`` function returns."""

    module: nn.Module
    example_inputs: dict[str, Any]
    manifest_fields: dict[str, Any]
    output_names: list[str]
    side_files: dict[str, Path] = field(default_factory=dict)
    dynamic_axes: dict[str, dict[int, str]] | None = None


def _numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def default_dynamic_axes(
    inputs: Mapping[str, np.ndarray], outputs: Sequence[str]
) -> dict[str, dict[int, str]]:
    """``batch`` on axis 0 of everything; ``tokens`` on axis 1 of 2-D integer inputs."""
    axes: dict[str, dict[int, str]] = {}
    for name, arr in inputs.items():
        axes[name] = {0: "batch"}
        if arr.ndim == 2 and np.issubdtype(arr.dtype, np.integer):
            axes[name][1] = "tokens"
    for name in outputs:
        axes[name] = {0: "batch"}
    return axes


def tensor_specs(values: Sequence[onnx.ValueInfoProto]) -> list[TensorSpec]:
    """Manifest tensor specs from graph inputs/outputs (named dims stay strings)."""
    specs = []
    for v in values:
        t = v.type.tensor_type
        if t.elem_type not in _ONNX_DTYPES:
            raise ValueError(f"graph tensor {v.name} has an unsupported dtype {t.elem_type}")
        shape: list[int | str] = [d.dim_param or d.dim_value for d in t.shape.dim]
        specs.append(TensorSpec(name=v.name, dtype=_ONNX_DTYPES[t.elem_type], shape=shape))
    return specs


def _torch_outputs(
    module: nn.Module, inputs: Mapping[str, np.ndarray], names: Sequence[str]
) -> dict[str, np.ndarray]:
    with torch.no_grad():
        out = module(*[torch.from_numpy(np.ascontiguousarray(v)) for v in inputs.values()])
    outs = (out,) if isinstance(out, torch.Tensor) else tuple(out)
    if len(outs) != len(names):
        raise ValueError(
            f"module returned {len(outs)} outputs but {len(names)} output_names were given"
        )
    return {n: _numpy(o) for n, o in zip(names, outs, strict=True)}


def export_model(
    module: nn.Module,
    example_inputs: Mapping[str, Any],
    manifest_fields: Mapping[str, Any],
    out_dir: Path,
    *,
    output_names: Sequence[str],
    side_files: Mapping[str, Path] | None = None,
    dynamic_axes: dict[str, dict[int, str]] | None = None,
    parity_inputs: Sequence[Mapping[str, Any]] = (),
    tolerance: float = 1e-4,
    opset: int = OPSET,
) -> Manifest:
    """Export ``module`` into the servable folder ``out_dir``; returns the written manifest.

    ``manifest_fields`` holds every ``Manifest`` field except ``inputs``, ``outputs`` and
    ``provenance`` (``fusion`` defaults to "custom"); ``side_files`` maps a name inside
    ``out_dir`` to a file or folder to copy there (e.g. ``{"tokenizer": Path(...)}``).
    """
    module.eval()
    example = {k: np.ascontiguousarray(_numpy(v)) for k, v in example_inputs.items()}
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = out_dir / str(manifest_fields.get("model_file", "model.onnx"))
    axes = dynamic_axes or default_dynamic_axes(example, output_names)
    export_graph(
        module,
        example,
        onnx_path,
        input_names=list(example),
        output_names=list(output_names),
        dynamic_axes=axes,
        opset=opset,
    )
    run = ort_runner(onnx_path)
    cases = [example, {k: v[:1] for k, v in example.items()}]
    cases += [{k: np.ascontiguousarray(_numpy(v)) for k, v in c.items()} for c in parity_inputs]
    worst = 0.0
    for case in cases:
        worst = max(worst, max_abs_diff(run(case), _torch_outputs(module, case, output_names)))
    if worst > tolerance:
        raise ParityError(f"ONNX Runtime differs from PyTorch by {worst:.3g} > {tolerance:g}")
    for name, src in (side_files or {}).items():
        dst = out_dir / name
        if src.is_dir():
            shutil.copytree(src, dst, dirs_exist_ok=True)
        else:
            shutil.copy2(src, dst)
        make_readable(dst)
    graph = onnx.load(str(onnx_path)).graph
    provenance = {
        "created_by": "mmserve export byom",
        "created_at": datetime.now(UTC).replace(microsecond=0).isoformat(),
        "opset": opset,
        "libraries": library_versions(),
        "parity_max_abs_diff": float(f"{worst:.3g}"),
        "parity_cases": len(cases),
        **dict(manifest_fields.get("provenance", {})),
    }
    fields = {k: v for k, v in manifest_fields.items() if k != "provenance"}
    fields.setdefault("fusion", "custom")
    manifest = Manifest.model_validate(
        {
            **fields,
            "model_file": onnx_path.name,
            "inputs": [s.model_dump() for s in tensor_specs(graph.input)],
            "outputs": [s.model_dump() for s in tensor_specs(graph.output)],
            "provenance": provenance,
        }
    )
    write_manifest(manifest, out_dir)
    return manifest


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def make_readable(path: Path) -> None:
    """Give a copied side file or folder the modes a new file would get (0644/0755 under the
    usual umask 022).

    ``copytree`` and ``copy2`` copy the source's modes, and a side folder made with
    ``tempfile.mkdtemp`` is 0700: the model folder would then be readable by its creator only,
    and a server running as another user (the container's ``mmserve``) could not load it.
    """
    mask = _umask()
    paths = [path, *path.rglob("*")] if path.is_dir() else [path]
    for p in paths:
        if p.is_symlink():
            continue
        p.chmod((0o777 if p.is_dir() else 0o666) & ~mask)


def load_factory(ref: str) -> ByomSpec:
    """``"package.module:function"`` -> the ``ByomSpec`` the function returns."""
    module_name, _, func = ref.partition(":")
    if not func:
        raise ValueError(f"--factory wants 'package.module:function', got {ref!r}")
    spec = getattr(importlib.import_module(module_name), func)()
    if not isinstance(spec, ByomSpec):
        raise TypeError(f"{ref} returned {type(spec).__name__}, expected ByomSpec")
    return spec


def export_spec(spec: ByomSpec, out_dir: Path, tolerance: float = 1e-4) -> Manifest:
    """``export_model`` on a ``ByomSpec``."""
    return export_model(
        spec.module,
        spec.example_inputs,
        spec.manifest_fields,
        out_dir,
        output_names=spec.output_names,
        side_files=spec.side_files,
        dynamic_axes=spec.dynamic_axes,
        tolerance=tolerance,
    )


__all__ = [
    "MANIFEST_FILENAME",
    "ByomSpec",
    "ParityError",
    "export_model",
    "export_spec",
    "load_factory",
]
