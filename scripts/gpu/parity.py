"""CUDA vs CPU outputs for every bundled model and every modality subset.

Each model is opened twice with the service's own :meth:`ModelSession.open` (CPU only, and the
providers under test), fed the same batches of real uploads' features (``extract_row`` on the
benchmark's PNG, WAV and text, for each non-empty subset of the model's modalities, at batch
1 and 16), and every output's largest absolute difference is recorded.

    python -m scripts.gpu.parity --providers CUDAExecutionProvider,CPUExecutionProvider \\
        --out parity.json

When CUDA is over the tolerance with TF32 on, the run is repeated with it off (``tf32_off`` in
the JSON). With ``--providers CPUExecutionProvider`` it compares the CPU with itself
(differences 0): the way to run the whole script on a machine without a GPU.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from service.features.text import load_tokenizer
from service.manifest import Modality, load_manifest
from service.repository import scan
from service.runtime.rows import collate
from service.runtime.session import ModelSession
from service.settings import REPO_ROOT, Limits, Runtime
from tools.bench.model import InProcessModel
from tools.bench.uploads import Uploads, make_uploads

TOLERANCE = 1e-3
BATCH_SIZES = (1, 16)
CPU_ONLY = ["CPUExecutionProvider"]


def subsets(order: list[Modality]) -> list[tuple[Modality, ...]]:
    """Every non-empty subset of the model's modalities, in the manifest's order."""
    return [c for k in range(1, len(order) + 1) for c in itertools.combinations(order, k)]


def open_model(model_dir: Path, runtime: Runtime) -> InProcessModel:
    manifest = load_manifest(model_dir)
    text = manifest.modalities.text
    tokenizer = load_tokenizer(model_dir / text.tokenizer_dir) if text is not None else None
    session = ModelSession.open(model_dir / manifest.model_file, runtime)
    return InProcessModel(manifest, tokenizer, session, Limits())


def max_abs_diff(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, float]:
    return {
        name: float(np.max(np.abs(a[name].astype(np.float64) - b[name].astype(np.float64))))
        for name in a
    }


def compare_model(model_dir: Path, runtime: Runtime, uploads: Uploads) -> dict[str, Any]:
    """One model: per subset and batch size, each output's max |accelerator - CPU|."""
    reference = open_model(model_dir, Runtime(providers=CPU_ONLY))
    candidate = open_model(model_dir, runtime)
    fields = uploads.as_fields()
    cases: list[dict[str, Any]] = []
    worst = 0.0
    for subset in subsets(reference.manifest.modality_order):
        row = reference.features({m: fields[m] for m in subset})
        for size in BATCH_SIZES:
            feeds = collate([row] * size, reference.manifest)
            diffs = max_abs_diff(reference.session.run(feeds), candidate.session.run(feeds))
            worst = max(worst, *diffs.values())
            cases.append(
                {"modalities": list(subset), "batch": size, "max_abs_diff": diffs,
                 "max": max(diffs.values())}
            )  # fmt: skip
    return {
        "model": f"{reference.manifest.name}/{reference.manifest.version}",
        "providers_in_use": candidate.session.providers_in_use,
        "max_abs_diff": worst,
        "passed": worst <= TOLERANCE,
        "cases": cases,
    }


def run(model_root: Path, runtime: Runtime) -> dict[str, Any]:
    uploads = make_uploads()
    models = [compare_model(folder, runtime, uploads) for folder in scan(model_root)]
    return {
        "tolerance": TOLERANCE,
        "providers": runtime.providers,
        "use_tf32": runtime.cuda.use_tf32,
        "audio_source": uploads.audio_source,
        "max_abs_diff": max(m["max_abs_diff"] for m in models),
        "passed": all(m["passed"] for m in models),
        "models": models,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--providers", default="CUDAExecutionProvider,CPUExecutionProvider")
    parser.add_argument("--model-dir", type=Path, default=REPO_ROOT / "onnx_models")
    parser.add_argument("--no-tf32", action="store_true", help="CUDA matrix products in fp32")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    runtime = Runtime.model_validate(
        {"providers": args.providers, "cuda": {"use_tf32": not args.no_tf32}}
    )
    result = run(args.model_dir, runtime)
    if (
        not result["passed"]
        and runtime.cuda.use_tf32
        and "CUDAExecutionProvider" in runtime.providers
    ):
        # Over the tolerance: the same with TF32 off says whether TF32 is the cause.
        fp32 = runtime.model_copy(
            update={"cuda": runtime.cuda.model_copy(update={"use_tf32": False})}
        )
        result["tf32_off"] = run(args.model_dir, fp32)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    for model in result["models"]:
        print(
            f"parity {model['model']}: max |diff| {model['max_abs_diff']:.2e} on "
            f"{','.join(model['providers_in_use'])} ({'ok' if model['passed'] else 'OVER'})",
            file=sys.stderr,
        )
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
